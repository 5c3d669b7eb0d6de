"""Write encoder embeddings of a set of images (NumPy + CSV) for inspection."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .knn_monitor import extract_features

__all__ = ["write_embeddings"]


def write_embeddings(
    network: torch.nn.Module, loader: Iterable, files: Sequence[str | Mapping], output_dir: str,
    device: str | torch.device = "cpu", image_key: str = "image",
) -> dict:
    """L2-normalised pooled features of every image -> ``embeddings.npy`` ``(N, D)``, ``embeddings.csv`` (file, e0..eD-1) and
    ``embeddings.json`` (files, shape). ``files`` lists the images in loader order: paths, or data-list items whose
    ``image_key`` is the path. Returns the paths."""
    files = [f[image_key] if isinstance(f, Mapping) else f for f in files]
    feats, _ = extract_features(network, loader, device, label_key=None)
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
