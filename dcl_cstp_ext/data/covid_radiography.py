"""COVID-19 Radiography Database reader: ``COVID-19_Radiography_Dataset/<class>/images/*.png``, 4 classes."""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .layout import find_root, list_images, subdirs
from .splits import Datalist, resolve_datalist, split_items
from .validation import validate_datalist

__all__ = ["COVID_CLASSES", "COVID_FOLDER", "build_covid_radiography_datalist", "find_covid_root"]

COVID_FOLDER = "COVID-19_Radiography_Dataset"
COVID_CLASSES = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")  # label = index, fixed order


def find_covid_root(dataset_dir: str | Path) -> Path | None:
    """The folder holding the class folders: the shallowest folder (``dataset_dir`` or up to two levels
    down, e.g. ``COVID-19_Radiography_Dataset`` or a doubly extracted copy of it) with at least two of the
    class folders, else a folder named ``COVID-19_Radiography_Dataset``."""
    with_classes = find_root(dataset_dir, lambda d: sum((d / c).is_dir() for c in COVID_CLASSES) >= 2)
    return with_classes or find_root(dataset_dir, lambda d: d.name == COVID_FOLDER)


def _class_images(root: Path) -> list[dict]:
    unknown = [d.name for d in subdirs(root) if d.name not in COVID_CLASSES]
    if unknown:
        raise DataError(f"{root}: unknown class folder(s) {unknown}; expected exactly {list(COVID_CLASSES)}")
    items: list[dict] = []
    for label, name in enumerate(COVID_CLASSES):
        class_dir = root / name
        if not class_dir.is_dir():
            raise DataError(f"{class_dir}: class folder missing; expected {list(COVID_CLASSES)} under {root}")
        image_dir = class_dir / "images" if (class_dir / "images").is_dir() else class_dir
        files = list_images(image_dir)
        if not files:
            raise DataError(f"{image_dir}: no images found (expected {name}/images/*.png)")
        items += [{"image": str(p), "label": label, "class_name": name} for p in files]
    return items


def build_covid_radiography_datalist(
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    check_images: bool = True,
    skip_invalid: bool = False,
) -> Datalist:
    """Datalist of the COVID-19 Radiography Database with a seeded stratified split (80/20 by default).

    Items: ``{"image": path, "label": int, "class_name": str}``, labels in :data:`COVID_CLASSES` order;
    ``masks/`` folders are ignored. Returns ``{"training", "validation", "test", "class_names"}``.
    """
    root = find_covid_root(dataset_dir)
    if root is None:
        raise DataError(f"{dataset_dir}: no {COVID_FOLDER}/{{{','.join(COVID_CLASSES)}}}/images/ layout found")

    def create() -> Datalist:
        items, _ = validate_datalist(_class_images(root), check_images, skip_invalid)
        splits = split_items(items, {"validation": val_fraction, "test": test_fraction}, seed, stratify="label")
        return {**splits, "class_names": list(COVID_CLASSES)}

    meta = {"dataset": "covid_radiography", "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return resolve_datalist(split_file, root, create, check_images, skip_invalid, list(COVID_CLASSES), meta)
