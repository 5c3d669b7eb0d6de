"""Write encoder embeddings of a set of images (NumPy + CSV) for inspection: :class:`EmbeddingWriter`, the handler
of the ``dcl_pretrain`` inference evaluator, and :func:`save_embeddings`, the files it writes."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

__all__ = ["EmbeddingWriter", "save_embeddings"]


def save_embeddings(feats: torch.Tensor, files: Sequence[str | Mapping], output_dir: str, image_key: str = "image"
                    ) -> dict:
    """``feats (N, D)`` (one row per file, in order) -> ``embeddings.npy`` ``(N, D)``, ``embeddings.csv``
    (file, e0..eD-1) and ``embeddings.json`` (files, shape). ``files``: paths, or data-list items whose ``image_key``
    is the path. Returns the paths."""
    files = [f[image_key] if isinstance(f, Mapping) else f for f in files]
    if len(files) != feats.shape[0]:
        raise ValueError(f"{len(files)} files but {feats.shape[0]} embeddings")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    arr = feats.numpy().astype(np.float32)
    np.save(out / "embeddings.npy", arr)
    with open(out / "embeddings.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file"] + [f"e{i}" for i in range(arr.shape[1])])
        for f, row in zip(files, arr):
            writer.writerow([f] + [f"{v:.6g}" for v in row])
    (out / "embeddings.json").write_text(json.dumps({"files": list(files), "shape": list(arr.shape)}, indent=1))
    print(f"wrote {arr.shape[0]} embeddings of width {arr.shape[1]} to {out}")
    return {"npy": str(out / "embeddings.npy"), "csv": str(out / "embeddings.csv")}


class EmbeddingWriter:
    """Evaluator handler: collects ``engine.state.output[pred_key]`` ``(B, D)`` of every iteration (an evaluator with
    ``decollate=False`` and an unshuffled loader, so the rows follow ``files``), L2-normalises it, and at the end
    writes :func:`save_embeddings`."""

    def __init__(self, files: Sequence[str | Mapping], output_dir: str, pred_key: str = "pred",
                 image_key: str = "image") -> None:
        self.files, self.output_dir, self.pred_key, self.image_key = files, output_dir, pred_key, image_key
        self.rows: list[torch.Tensor] = []
        self.paths: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        pred = torch.as_tensor(engine.state.output[self.pred_key]).detach().float()
        self.rows.append(F.normalize(pred.flatten(1), dim=1).cpu())

    def _write(self, engine: Engine) -> None:
        self.paths = save_embeddings(torch.cat(self.rows), self.files, self.output_dir, self.image_key)
