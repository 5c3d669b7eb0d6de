"""ISIC 2018 Task 1 reader: ``ISIC2018_Task1-2_<Part>_Input/ISIC_x.jpg`` + ``ISIC2018_Task1_<Part>_GroundTruth``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .errors import DataError
from .formats import image_stem
from .layout import find_root, list_images, pair_files, stems
from .splits import Datalist, resolve_datalist, split_with_official
from .validation import raise_or_skip, validate_datalist

__all__ = ["ISIC_PARTS", "build_isic2018_datalist", "find_isic_root", "isic_folders"]

logger = logging.getLogger(__name__)

ISIC_PARTS = {"training": "Training", "validation": "Validation", "test": "Test"}
_IMAGE = re.compile(r"^ISIC_\d+$")
_MASK = re.compile(r"^ISIC_\d+_segmentation$")


def isic_folders(root: Path, part: str) -> tuple[Path, Path]:
    """``(input_dir, ground_truth_dir)`` of a release part (``Training``, ``Validation`` or ``Test``)."""
    return root / f"ISIC2018_Task1-2_{part}_Input", root / f"ISIC2018_Task1_{part}_GroundTruth"


def find_isic_root(dataset_dir: str | Path) -> Path | None:
    """The folder holding the ``ISIC2018_Task1-2_*_Input`` folders."""
    return find_root(dataset_dir, lambda d: any(isic_folders(d, p)[0].is_dir() for p in ISIC_PARTS.values()))


def _part_items(root: Path, part: str, skip_invalid: bool) -> list[dict] | None:
    in_dir, gt_dir = isic_folders(root, part)
    if not in_dir.is_dir():
        return None
    if not gt_dir.is_dir():
        if part == "Training":
            raise DataError(f"{gt_dir}: ground-truth folder missing for {in_dir}")
        logger.warning("%s: no ground truth, the %s images are not used", gt_dir, part)
        return None
    images = stems(p for p in list_images(in_dir) if _IMAGE.match(image_stem(p)))
    masks = stems((p for p in list_images(gt_dir) if _MASK.match(image_stem(p))), "_segmentation")
    if not images:
        raise DataError(f"{in_dir}: no ISIC_xxxxxxx.jpg images found")
    pairs, problems = pair_files(images, masks)
    raise_or_skip(problems, skip_invalid, f"ISIC 2018 {part}")
    return [{"image": str(i), "label": str(m)} for i, m in pairs]


def build_isic2018_datalist(
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    official_val_as_test: bool = False,
    check_images: bool = True,
    skip_invalid: bool = False,
) -> Datalist:
    """Datalist of ISIC 2018 Task 1 (lesion segmentation); items ``{"image": jpg, "label": mask_png}``.

    The release's ``Validation`` / ``Test`` parts (with ground truth) are the validation / test splits when
    present; a missing one is split (seeded) out of ``Training``. ``official_val_as_test`` makes the official
    validation part the test split, as in the paper (2,594 train / 100 validation-as-test). Non-image
    files (``LICENSE.txt``, ``ATTRIBUTION.txt``) and ``*_superpixels.png`` are ignored.
    """
    root = find_isic_root(dataset_dir)
    if root is None:
        raise DataError(
            f"{dataset_dir}: no ISIC2018_Task1-2_Training_Input / ISIC2018_Task1_Training_GroundTruth found"
        )

    def create() -> Datalist:
        pools: dict[str, list[dict]] = {}
        for split, part in ISIC_PARTS.items():
            items = _part_items(root, part, skip_invalid)
            if items is not None:
                pools[split], _ = validate_datalist(items, check_images, skip_invalid)
        if "training" not in pools:
            raise DataError(f"{root}: ISIC2018_Task1-2_Training_Input missing")
        if official_val_as_test and "validation" in pools and "test" not in pools:
            pools["test"] = pools.pop("validation")
        return split_with_official(pools, seed, val_fraction, test_fraction, stratify=None)

    meta = {"dataset": "isic2018", "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return resolve_datalist(split_file, root, create, check_images, skip_invalid, None, meta)
