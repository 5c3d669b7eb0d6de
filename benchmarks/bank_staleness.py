"""Diagnostic: is a momentum method's memory bank stale? For a finished pre-training stage (MoCo-v2, DCL-CsTP), the
saved model (encoders, momentum copies and the bank as they were at the end) meets fresh batches of its own training
views: the query of one view, the momentum key of another, and the bank.

Reported (means over ``batches`` batches): the cosine of a query to its own image's key, to this step's keys of the
other images of the batch, and to the bank's negatives; ``bank_gap`` (the second minus the third,
:func:`dcl_cstp_ext.methods.bank_gap`, what training logs as ``train_bank_gap``); how often the own key out-ranks a
fresh key of another image and a bank key; ``z_std`` of the queries. A collapsed run whose own key beats the bank
but not the fresh keys learnt to tell today's keys from the bank's, not one image from another (METHOD.md, "Memory
bank at small data").

    python benchmarks/bank_staleness.py RUN_DIR/pretrain/mocov2 --json-path out.json

``STAGE_DIR``: the stage folder of ``dcl-cstp pipeline`` (or of the bundle run with ``--output_dir STAGE_DIR/eval
--ckpt_dir STAGE_DIR/models`` and its merged ``config.json`` saved there): its ``config.json`` builds the method,
the preprocessing, the views and the data; ``models/model.pt`` holds the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np
import torch
from monai.bundle import ConfigParser

from dcl_cstp_ext.methods import MomentumMethod, bank_gap, collapse_std
from dcl_cstp_ext.utils import environment_info


def _load(stage: Path) -> tuple[ConfigParser, MomentumMethod]:
    parser = ConfigParser()
    parser.read_config(str(stage / "config.json"))
    model = parser.get_parsed_content("network_def")
    if not isinstance(model, MomentumMethod) or model.queue is None:
        raise SystemExit(f"{stage}: {type(model).__name__} has no memory bank (MoCo-v2 and DCL-CsTP have one)")
    state = torch.load(stage / "models" / "model.pt", map_location="cpu", weights_only=True)
    state = state.get("model", state)
    model.resize_queue(int(state["queue.bank"].shape[0]))
    model.load_state_dict(state)
    return parser, model.train()  # training mode: batch statistics and the split BatchNorm, as in training


@torch.no_grad()
def _batch_figures(model: MomentumMethod, query_view: torch.Tensor, key_view: torch.Tensor,
                   indices: torch.Tensor) -> dict[str, float]:
    q = torch.nn.functional.normalize(model.head(model.encode(query_view)[0]).float(), dim=1)
    k = torch.nn.functional.normalize(model.momentum_forward(key_view).float(), dim=1)
    bank = model.queue.negatives.float()
    mask = model.queue.negative_mask(indices)
    own = (q * k).sum(dim=1)
    others = ~torch.eye(q.shape[0], dtype=torch.bool)
    fresh = q @ k.t()
    to_bank = q @ bank.t()
    return {
        "cos_own_key": own.mean().item(),
        "cos_fresh_keys_of_other_images": fresh[others].mean().item(),
        "cos_bank_keys": to_bank[mask].mean().item(),
        "bank_gap": bank_gap(q, k, bank, mask).item(),
        "own_key_above_fresh_keys": (own[:, None] > fresh)[others].float().mean().item(),
        "own_key_above_bank_keys": (own[:, None] > to_bank)[mask].float().mean().item(),
        "z_std": collapse_std(q).item(),
    }


def measure(stage_dir: str, batches: int = 4, batch_size: int | None = None, seed: int = 0) -> dict:
    """The staleness of ``STAGE_DIR``'s memory bank on ``batches`` seeded batches of its training views."""
    stage = Path(stage_dir)
    parser, model = _load(stage)
    items = parser.get_parsed_content("pretrain_items")
    preprocess = parser.get_parsed_content("train#preprocessing")
    views = parser.get_parsed_content("train#augmentation")
    b = int(batch_size or parser.get_parsed_content("batch_size"))
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(items))[: batches * b]
    rows = []
    for start in range(0, len(order) - b + 1, b):
        chosen = order[start: start + b]
        samples = [views(preprocess(dict(items[i]))) for i in chosen]
        stack = {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("view1", "view2")}
        rows.append(_batch_figures(model, stack["view2"], stack["view1"], torch.as_tensor(chosen)))
    result = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    filled = int((model.queue.index != -1).sum())
    return {"stage": str(stage), "method": parser.get_parsed_content("method"), "bank_size": model.queue.size,
            "bank_filled": filled, "batches": len(rows), "batch_size": b, "seed": seed, **result}


def main(stage_dir: str, batches: int = 4, batch_size: int | None = None, seed: int = 0,
         json_path: str | None = None) -> None:
    """Print (and write to ``json_path``, with the versions) :func:`measure` of ``STAGE_DIR``."""
    report = measure(stage_dir, batches, batch_size, seed)
    print(json.dumps(report, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps({**report, "environment": environment_info()}, indent=2))


if __name__ == "__main__":
    fire.Fire(main)
