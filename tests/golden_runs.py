"""Tiny runs of every bundle whose numbers must not change when the code is reorganised (issue "One house"):
the losses and metrics of a few iterations of each training workflow and of the evaluations, on the built-in data,
one thread. ``tests/golden/tiny_runs.json`` holds them as recorded before the reorganisation; to record anew (only
for a change meant to alter the numbers, said in its commit):

    python tests/golden_runs.py tests/golden/tiny_runs.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_bundle  # noqa: E402


def _last_jsonl(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[-1])


def _segmentation(tmp: Path, data: Path) -> dict:
    kw = {"backbone": "resnet18", "image_size": 32, "batch_size": 4, "val_batch_size": 8, "num_workers": 0,
          "device": "cpu", "amp": False, "dataset_dir": str(data), "ckpt_dir": str(tmp / "models"),
          "max_epochs": 2, "train#trainer#epoch_length": 3}
    wf = run_bundle("kvasir_seg", ["train.json"], output_dir=str(tmp / "eval"), **kw)
    state = wf.parser.get_parsed_content("train#trainer").state
    val = _last_jsonl(tmp / "eval" / "val_metrics.jsonl")
    run_bundle("kvasir_seg", ["train.json", "evaluate.json"], workflow_type="eval", output_dir=str(tmp / "evaluate"),
               split_file=str(tmp / "eval" / "datalist.json"), **kw)
    ev = json.loads((tmp / "evaluate" / "metrics.json").read_text())
    return {"last_loss": float(state.output[0]["loss"] if isinstance(state.output, list) else state.output["loss"]),
            "val_mean_dice": val["val_mean_dice"], "val_mean_iou": val["val_mean_iou"],
            **{f"eval_{k}": ev[k]["mean"] for k in ("dice", "iou", "hd", "hd95")}}


def _classification(tmp: Path, data: Path) -> dict:
    kw = {"backbone": "resnet18", "image_size": 32, "batch_size": 8, "num_workers": 0, "device": "cpu", "amp": False,
          "dataset_dir": str(data), "ckpt_dir": str(tmp / "models"), "max_epochs": 2,
          "train#trainer#epoch_length": 3}
    wf = run_bundle("pneumonia_cls", ["train.json"], output_dir=str(tmp / "eval"), **kw)
    state = wf.parser.get_parsed_content("train#trainer").state
    run_bundle("pneumonia_cls", ["train.json", "evaluate.json"], workflow_type="eval",
               output_dir=str(tmp / "evaluate"), split_file=str(tmp / "eval" / "datalist.json"), **kw)
    ev = json.loads((tmp / "evaluate" / "metrics.json").read_text())["summary"]
    out = state.output[0] if isinstance(state.output, list) else state.output
    return {"last_loss": float(out["loss"]), **{f"eval_{k}": ev[k] for k in
                                                ("accuracy", "macro_recall", "macro_precision", "roc_auc_macro_ovr")}}


def _pretrain(tmp: Path, data: Path, method: str) -> dict:
    wf = run_bundle("dcl_pretrain", ["train.json"], backbone="resnet18", image_size=32, batch_size=4, num_workers=0,
                    queue_size=16, monitor_max_bank=16, monitor_max_query=8, device="cpu", amp=False, method=method,
                    dataset_dir=str(data), output_dir=str(tmp / "eval"), ckpt_dir=str(tmp / "models"), max_epochs=1,
                    val_interval=1, **{"head_kwargs#dim": 32, "train#trainer#epoch_length": 3})
    out = wf.parser.get_parsed_content("train#trainer").state.output
    return {k: float(v) for k, v in out.items() if k != "lr"}


def _ldm(tmp: Path, data: Path) -> dict:
    """The autoencoder (adversarial loss from its 2nd epoch), then the denoiser on its latents."""
    kw = {"image_size": 32, "ae_channels": [8, 16, 16], "ae_num_res_blocks": 1, "ae_norm_num_groups": 8,
          "unet_channels": [16, 32], "unet_attention_levels": [False, True], "unet_num_res_blocks": 1,
          "unet_num_head_channels": 16, "unet_norm_num_groups": 8, "disc_channels": 8, "disc_num_layers": 2,
          "batch_size": 4, "num_workers": 0, "val_interval": 1,
          "val_max_items": 8, "num_show": 4, "sample_steps": 3, "device": "cpu", "amp": False,
          "dataset_dir": str(data), "ckpt_dir": str(tmp / "models"), "train#trainer#epoch_length": 2}
    ae = run_bundle("ldm_synthesis", ["train_autoencoder.json"], output_dir=str(tmp / "ae"), max_epochs=2,
                    adv_warmup_epochs=1, **kw)
    dm = run_bundle("ldm_synthesis", ["train_autoencoder.json", "train_diffusion.json"], output_dir=str(tmp / "dm"),
                    max_epochs=2, **kw)
    out = {}
    for name, wf in (("autoencoder", ae), ("diffusion", dm)):
        state = wf.parser.get_parsed_content("train#trainer").state.output
        out.update({f"{name}_{k}": float(v) for k, v in state.items() if k != "lr"})
    return out


def tiny_runs(demo: dict[str, Path], work: Path) -> dict:
    """Every number above, on the demo data ``demo`` (``make_demo_data(..., seed=0)``), one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "kvasir_seg": _segmentation(work / "seg", demo["kvasir_seg"]),
            "pneumonia_cls": _classification(work / "cls", demo["covid_radiography"]),
            **{f"dcl_pretrain_{m}": _pretrain(work / m, demo["kvasir_seg"], m) for m in ("dcl_cstp", "mocov2")},
            "ldm_synthesis": _ldm(work / "ldm", demo["kvasir_seg"]),
        }
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    from dcl_cstp_ext.data import make_demo_data

    with tempfile.TemporaryDirectory() as tmp:
        demo = {k: Path(v) for k, v in make_demo_data(str(Path(tmp) / "demo"), seed=0).items()}
        result = tiny_runs(demo, Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
