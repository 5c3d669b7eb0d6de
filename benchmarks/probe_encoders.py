"""Diagnostic: how much does a pre-trained encoder's frozen pooled feature know about the labels, compared with a
randomly initialised encoder of the same architecture? Weighted k-NN (k=20, cosine) accuracy on the validation split,
the bank being (a seeded subset of) the training split. Classification data: its classes; segmentation data (items
with a mask): lesion-size tertiles, as the pre-training monitor (``dcl_cstp_ext.engines.build_knn_monitor``).
Writes JSON.

``--protocol cv``: every labelled image of the split file (training + validation) is a query once, over 5 stratified
folds, by the weighted k-NN vote and by a linear probe on the pooled feature and, for segmentation data, by a dense
linear probe of the mask from the C3-C5 maps (per-image Dice; ``dcl_cstp_ext.engines.frozen_probe``); each encoder
is compared with the first one (``random``; another first encoder is the reference, ``*_vs_reference``) image by image: the difference with a paired bootstrap 95% interval and
a McNemar (accuracies) or Wilcoxon signed-rank (Dice) p-value. ``--stage-dice``: the dense probe also on C3, C4 and C5
alone (same grid and masks), to see at which depth two encoders' dense features differ. The encoder ``pixels`` is no
encoder: each C3 cell's own raw pixels (``dcl_cstp_ext.networks.PixelPatchEncoder``), the dense probe's floor.

    python benchmarks/probe_encoders.py --protocol cv --dataset-dir ../shared/data/isic2018 --in-channels 3 \
        --image-sizes 128 --encoders random,RUN_DIR/pretrain/simclr/models/encoder.pt --split-file RUN_DIR/splits/isic_seg.json
    python benchmarks/probe_encoders.py --dataset-dir DIR --encoders random,runs/.../encoder.pt --image-sizes 64,128 \
        --datalist-kwargs '{"num_classes": 3}' --split-file RUN_DIR/splits/pneumonia_cls.json --json-path out.json
    python benchmarks/probe_encoders.py --dataset-dir ../shared/data/kvasir-seg --in-channels 3 --image-sizes 96,128 \
        --encoders random,RUN_DIR/pretrain/dcl_cstp/models/encoder.pt --split-file RUN_DIR/splits/kvasir_seg.json
    python benchmarks/probe_encoders.py --protocol cv --dataset-dir ../shared/data/kvasir-seg --in-channels 3 \
        --image-sizes 128 --stage-dice true --encoders random,pixels,RUN_DIR/pretrain/dcl_cstp/models/encoder.pt \
        --split-file RUN_DIR/splits/kvasir_seg.json
"""

from __future__ import annotations

import json
import time

import fire
import numpy as np
from monai.data import DataLoader, Dataset

from dcl_cstp_ext.data import build_datalist, classification_preprocess
from dcl_cstp_ext.engines import build_probe_encoder, probe_encoders
from dcl_cstp_ext.engines.knn_monitor import extract_features, knn_predict
from dcl_cstp_ext.utils import environment_info


def _encoders(encoders, backbone, in_channels, seed):
    """``(name, encoder)`` for each comma-separated name: ``random`` (seeded initial weights), ``pixels`` or an
    encoder export (``dcl_cstp_ext.engines.build_probe_encoder``)."""
    for name in [e.strip() for e in encoders.split(",")] if isinstance(encoders, str) else list(encoders):
        yield name, build_probe_encoder(name, backbone, in_channels, seed)


def _write(report: dict, json_path: str | None) -> dict:
    """The report with the versions it was measured with, written to ``json_path`` if given."""
    report = {**report, "environment": environment_info()}
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return report


def _features(encoder, items, image_size, channels, batch_size=64):
    ds = Dataset(items, transform=classification_preprocess(image_size=image_size, channels=channels))
    return extract_features(encoder, DataLoader(ds, batch_size=batch_size, num_workers=0), "cpu")


def probe(dataset_dir: str, encoders: str = "random", image_sizes="64,128", backbone: str = "resnet18",
          in_channels: int = 1, max_bank: int = 2000, seed: int = 0, datalist_kwargs=None, json_path: str | None = None,
          split_file: str | None = None, protocol: str = "split", folds: int = 5, stage_dice: bool = False):
    sizes = [int(s) for s in str(image_sizes).split(",")] if not isinstance(image_sizes, (tuple, list)) else list(image_sizes)
    kw = json.loads(datalist_kwargs) if isinstance(datalist_kwargs, str) else (datalist_kwargs or {})
    dl = build_datalist("auto", dataset_dir, seed=seed, split_file=split_file, **kw)
    if protocol == "cv":  # the pipeline's probe (dcl_cstp_ext.engines.probe_encoders), at each size
        names = [e.strip() for e in encoders.split(",")] if isinstance(encoders, str) else list(encoders)
        reports = [probe_encoders(dl, names, size, backbone, in_channels, seed, folds, log=print,
                                  stage_dice=stage_dice) for size in sizes]
        return _write({"dataset_dir": dataset_dir, **{k: v for k, v in reports[0].items() if k != "results"},
                       "results": [row for r in reports for row in r["results"]]}, json_path)
    if protocol != "split":
        raise ValueError(f"unknown protocol {protocol!r}: expected 'split' or 'cv'")
    if not isinstance(dl["training"][0].get("label"), (int, np.integer)):
        return _probe_segmentation(dl, encoders, sizes, backbone, in_channels, seed, json_path, dataset_dir)
    rng = np.random.default_rng(seed)
    train = dl["training"]
    bank_items = [train[i] for i in sorted(rng.choice(len(train), size=min(max_bank, len(train)), replace=False))]
    query_items = dl["validation"]
    num_classes = int(max(it["label"] for it in train)) + 1
    results = []
    for name, enc in _encoders(encoders, backbone, in_channels, seed):
        for size in sizes:
            t0 = time.perf_counter()
            fb, lb = _features(enc, bank_items, size, in_channels)
            fq, lq = _features(enc, query_items, size, in_channels)
            pred = knn_predict(fq, fb, lb, num_classes)
            acc = float((pred == lq).float().mean())
            recalls = [float((pred[lq == c] == c).float().mean()) for c in range(num_classes) if (lq == c).any()]
            row = {"encoder": name, "image_size": size, "knn_accuracy": acc, "knn_macro_recall": float(np.mean(recalls)),
                   "bank": len(bank_items), "query": len(query_items), "seconds": round(time.perf_counter() - t0, 1)}
            print(row, flush=True)
            results.append(row)
    majority = float(np.bincount([it["label"] for it in query_items]).max() / len(query_items))
    return _write({"dataset_dir": dataset_dir, "backbone": backbone, "majority_class_accuracy": majority,
                   "results": results}, json_path)


def _probe_segmentation(dl, encoders, sizes, backbone, in_channels, seed, json_path, dataset_dir):
    from types import SimpleNamespace

    from dcl_cstp_ext.engines import build_knn_monitor

    results = []
    for name, enc in _encoders(encoders, backbone, in_channels, seed):
        for size in sizes:
            monitor = build_knn_monitor(enc, dl, size, in_channels, max_bank=len(dl["training"]),
                                        max_query=len(dl["validation"]), seed=seed)
            engine = SimpleNamespace(state=SimpleNamespace(device="cpu", metrics={}, epoch=0))
            acc, n = monitor(engine), len(dl["validation"])
            row = {"encoder": name, "image_size": size, "knn_accuracy": acc, "queries": n,
                   "binomial_se": (acc * (1 - acc) / n) ** 0.5,  # the noise of one accuracy on n queries
                   "majority_class_accuracy": engine.state.metrics["knn_chance"]}
            print(row, flush=True)
            results.append(row)
    return _write({"dataset_dir": dataset_dir, "backbone": backbone, "labels": "lesion-size tertiles",
                   "results": results}, json_path)


if __name__ == "__main__":
    fire.Fire(probe)
