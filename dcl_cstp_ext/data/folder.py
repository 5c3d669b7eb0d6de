"""Unlabelled image folders (e.g. synthetic images) and the real + synthetic pre-training union."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .layout import as_dir, list_images
from .splits import Datalist, resolve_datalist, split_items
from .validation import validate_datalist

__all__ = ["build_folder_datalist", "build_pretrain_datalist"]

logger = logging.getLogger(__name__)


def build_folder_datalist(
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    recursive: bool = True,
    check_images: bool = True,
    skip_invalid: bool = False,
) -> Datalist:
    """Datalist of every image under ``dataset_dir`` (recursive by default), items ``{"image": path}``;
    everything is ``"training"`` unless validation / test fractions are given (seeded split)."""
    root = as_dir(dataset_dir)

    def create() -> Datalist:
        files = list_images(root, recursive=recursive)
        if not files:
            raise DataError(f"{root}: no images (.png, .jpg, ...) found")
        items, _ = validate_datalist([{"image": str(p)} for p in files], check_images, skip_invalid)
        return split_items(items, {"validation": val_fraction, "test": test_fraction}, seed, stratify=None)

    meta = {"dataset": "folder", "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return resolve_datalist(split_file, root, create, check_images, skip_invalid, None, meta)


def build_pretrain_datalist(
    real: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    synthetic: Sequence[Mapping[str, Any]] | str | Path | None = None,
    ratio: float = 0.0,
    seed: int = 0,
    synthetic_only: bool = False,
) -> list[dict[str, Any]]:
    """Unlabelled pre-training items: the real training images plus ``ratio`` x as many synthetic ones.

    ``real`` is a list of items or a datalist (its ``"training"`` split is used); ``synthetic`` a list of
    items or a folder of images. The number of synthetic images is ``round(ratio * len(real))``, capped by
    what exists (with a warning), drawn without replacement by ``seed`` (the paper's ratios: 0, 0.1, 0.5, 1).
    ``synthetic_only`` returns all synthetic images and no real one. Items: ``{"image", "source"}`` with
    ``source`` ``"real"`` or ``"synthetic"``; real first, each part sorted by path.
    """
    if ratio < 0:
        raise ValueError(f"ratio must be >= 0, got {ratio}")
    real_items = real["training"] if isinstance(real, Mapping) else real
    reals = sorted(({"image": str(it["image"]), "source": "real"} for it in real_items), key=lambda it: it["image"])
    if synthetic is None:
        synths: list[dict[str, Any]] = []
    elif isinstance(synthetic, str | Path):
        synths = build_folder_datalist(synthetic, check_images=False)["training"]
    else:
        synths = list(synthetic)
    synths = sorted(({"image": str(it["image"]), "source": "synthetic"} for it in synths), key=lambda it: it["image"])
    if synthetic_only:
        if not synths:
            raise DataError("synthetic-only pre-training needs synthetic images, none given")
        return synths
    wanted = int(np.floor(ratio * len(reals) + 0.5))
    n = min(wanted, len(synths))
    if n < wanted:
        logger.warning("synthetic ratio %.3g asks for %d synthetic images, only %d exist", ratio, wanted, len(synths))
    chosen = np.sort(np.random.default_rng(seed).choice(len(synths), size=n, replace=False)) if n else []
    return reals + [synths[i] for i in chosen]
