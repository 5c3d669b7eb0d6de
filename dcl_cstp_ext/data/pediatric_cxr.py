"""Pediatric chest X-ray (Kermany) reader: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import DataError
from .layout import find_root, list_images, subdirs
from .splits import Datalist, resolve_datalist, split_with_official
from .validation import raise_or_skip, validate_datalist

__all__ = ["PEDIATRIC_CLASSES", "build_pediatric_cxr_datalist", "find_pediatric_root", "pediatric_label"]

logger = logging.getLogger(__name__)

FOLDERS = ("NORMAL", "PNEUMONIA")
PARTS = {"train": "training", "val": "validation", "test": "test"}
PEDIATRIC_CLASSES = {2: ("NORMAL", "PNEUMONIA"), 3: ("normal", "bacterial", "viral")}


def find_pediatric_root(dataset_dir: str | Path) -> Path | None:
    """The folder holding ``train`` (and ``test``/``val``) with ``NORMAL``/``PNEUMONIA`` inside."""
    return find_root(dataset_dir, lambda d: any((d / s / c).is_dir() for s in PARTS for c in FOLDERS))


def pediatric_label(folder: str, file_name: str, num_classes: int = 2) -> int | None:
    """Class index from the class folder and (3 classes) the file name: ``NORMAL`` -> 0; ``PNEUMONIA`` -> 1,
    or with 3 classes ``*bacteria*`` -> 1 (bacterial), ``*virus*`` -> 2 (viral). ``None`` if undecidable."""
    if folder == "NORMAL":
        return 0
    if num_classes == 2:
        return 1
    name = file_name.lower()
    bacterial, viral = "bacteria" in name, "virus" in name
    return None if bacterial == viral else (1 if bacterial else 2)


def _part_items(part_dir: Path, num_classes: int) -> tuple[list[dict], list[tuple[str, str]]]:
    unknown = [d.name for d in subdirs(part_dir) if d.name not in FOLDERS]
    if unknown:
        raise DataError(f"{part_dir}: unknown class folder(s) {unknown}; expected {list(FOLDERS)}")
    names = PEDIATRIC_CLASSES[num_classes]
    items, problems = [], []
    for folder in FOLDERS:
        files = list_images(part_dir / folder)
        if not files:
            raise DataError(f"{part_dir / folder}: class folder missing or without images")
        for p in files:
            label = pediatric_label(folder, p.name, num_classes)
            if label is None:
                problems.append((str(p), "cannot tell bacterial from viral pneumonia by the file name"))
            else:
                items.append({"image": str(p), "label": label, "class_name": names[label]})
    return items, problems


def build_pediatric_cxr_datalist(
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    num_classes: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    use_official_val: bool = False,
    check_images: bool = True,
    skip_invalid: bool = False,
) -> Datalist:
    """Datalist of the Kermany pediatric chest X-ray set, 2 (NORMAL/PNEUMONIA) or 3 (normal/bacterial/viral)
    classes.

    The official ``test`` folder is the test split when present (else ``test_fraction`` of train). The
    official ``val`` folder (16 images in the release) joins the training pool unless ``use_official_val``;
    validation is a seeded stratified ``val_fraction`` of that pool.
    """
    if num_classes not in PEDIATRIC_CLASSES:
        raise ValueError(f"num_classes must be 2 or 3, got {num_classes}")
    root = find_pediatric_root(dataset_dir)
    if root is None or not (root / "train").is_dir():
        raise DataError(f"{dataset_dir}: no chest_xray/train/{{NORMAL,PNEUMONIA}}/ layout found")
    names = list(PEDIATRIC_CLASSES[num_classes])

    def create() -> Datalist:
        pools: dict[str, list[dict]] = {}
        for part, split in PARTS.items():
            if (root / part).is_dir():
                items, problems = _part_items(root / part, num_classes)
                raise_or_skip(problems, skip_invalid, f"chest X-ray {part}")
                pools[split], _ = validate_datalist(items, check_images, skip_invalid)
        if "validation" in pools and not use_official_val:
            pools["training"] = pools["training"] + pools.pop("validation")
        splits = split_with_official(pools, seed, val_fraction, test_fraction, stratify="label")
        return {**splits, "class_names": names}

    meta = {
        "dataset": "pediatric_cxr",
        "seed": seed,
        "num_classes": num_classes,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "use_official_val": use_official_val,
    }
    return resolve_datalist(split_file, root, create, check_images, skip_invalid, names, meta)
