"""Data-loading benchmark: seconds per batch when decoding (epoch 1) and from the cache (epochs >= 2),
next to a ResNet-50 training step, so that loading can be compared with compute.

Command line: ``python -m dcl_cstp_ext.data.bench_loading DATASET_DIR [--image-size 256] [--step] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, RandFlipd

from ..utils import environment_info
from .preprocess import classification_preprocess, make_cached_dataset, segmentation_preprocess, unlabelled_preprocess
from .registry import DATASET_KINDS, build_datalist, detect_dataset

__all__ = ["bench_loading", "bench_step"]


def _epoch_seconds(loader: DataLoader) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for _ in loader:
        n += 1
    return time.perf_counter() - start, n


def bench_step(
    batch_size: int = 8, image_size: int = 256, steps: int = 3, channels: int = 3, conv1_t_stride: int = 1
) -> float:
    """Median seconds of one ResNet-50 (MONAI, 2-D) forward + backward + SGD step on random data.

    MONAI's ``resnet50`` defaults to ``conv1_t_stride=1``, i.e. 4x the activations of the torchvision
    layout (stride 2); pass ``conv1_t_stride=2`` to time the latter."""
    from monai.networks.nets import resnet50

    net = resnet50(spatial_dims=2, n_input_channels=channels, num_classes=2, conv1_t_stride=conv1_t_stride)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch_size, channels, image_size, image_size)
    y = torch.randint(0, 2, (batch_size,))
    times = []
    for i in range(steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_loading(
    dataset_dir: str | Path,
    image_size: int = 256,
    epochs: int = 2,
    batch_size: int = 8,
    num_workers: int = 2,
    dataset: str = "auto",
    step: bool = False,
) -> dict[str, Any]:
    """Time the data pipeline of ``dataset_dir`` (all splits) at ``image_size``.

    Epoch 1 runs the full chain (decode, convert, resize) through a ``DataLoader`` with ``num_workers``
    workers; then the in-memory cache is filled (``cache_fill_s``, ``num_workers`` threads) and epochs
    2..``epochs`` read from it (with a random flip, so that the cached path copies and augments as in
    training). With ``step``, a ResNet-50 step at ``batch_size`` is timed too and the ratio reported.
    """
    name = detect_dataset(dataset_dir) if dataset == "auto" else dataset
    start = time.perf_counter()
    datalist = build_datalist(name, dataset_dir)
    datalist_s = time.perf_counter() - start
    items = [it for split in ("training", "validation", "test") for it in datalist.get(split, [])]
    kind = DATASET_KINDS[name]
    if kind == "segmentation":
        chain, keys = segmentation_preprocess(image_size), ["image", "label"]
    elif kind == "classification":
        chain, keys = classification_preprocess(image_size), ["image"]
    else:
        chain, keys = unlabelled_preprocess(image_size), ["image"]
    augment = RandFlipd(keys, prob=0.5, spatial_axis=1)

    def loader(ds: Dataset) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=num_workers)

    decode_s, n_batches = _epoch_seconds(loader(Dataset(items, Compose([*chain.transforms, augment]))))
    start = time.perf_counter()
    cached = make_cached_dataset(items, chain, num_workers=num_workers, augment=augment)
    cache_fill_s = time.perf_counter() - start
    cached_s = [_epoch_seconds(loader(cached))[0] for _ in range(max(1, epochs - 1))]
    sample = cached[0]
    cache_mb = len(items) * sum(v.numel() * v.element_size() for v in sample.values() if torch.is_tensor(v)) / 2**20
    result: dict[str, Any] = {
        "dataset": name,
        "dataset_dir": str(dataset_dir),
        "n_items": len(items),
        "image_size": image_size,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "n_batches": n_batches,
        "torch_threads": torch.get_num_threads(),
        "datalist_s": round(datalist_s, 3),
        "decode_s_per_batch": round(decode_s / n_batches, 4),
        "cache_fill_s": round(cache_fill_s, 3),
        "cached_s_per_batch": round(sum(cached_s) / len(cached_s) / n_batches, 4),
        "cache_mb": round(cache_mb, 1),
    }
    if step:
        result["resnet50_step_s"] = round(bench_step(batch_size, image_size), 3)
        result["cached_over_step"] = round(result["cached_s_per_batch"] / result["resnet50_step_s"], 4)
        result["decode_over_step"] = round(result["decode_s_per_batch"] / result["resnet50_step_s"], 4)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset_dir")
    p.add_argument("--dataset", default="auto")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--step", action="store_true", help="also time a ResNet-50 training step")
    p.add_argument("--json", default=None, help="also write the result (with the versions) to this JSON file")
    a = p.parse_args(argv)
    res = bench_loading(a.dataset_dir, a.image_size, a.epochs, a.batch_size, a.num_workers, a.dataset, a.step)
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({**res, "environment": environment_info()}, indent=1, default=str))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
