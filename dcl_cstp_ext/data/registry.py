"""One entry point for every data set: ``build_datalist(name, dataset_dir)`` and layout detection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .covid_radiography import build_covid_radiography_datalist, find_covid_root
from .errors import DataError
from .folder import build_folder_datalist
from .formats import image_stem
from .isic2018 import build_isic2018_datalist, find_isic_root
from .kvasir_seg import build_kvasir_seg_datalist, find_kvasir_root
from .layout import as_dir, list_images
from .pediatric_cxr import build_pediatric_cxr_datalist, find_pediatric_root
from .splits import Datalist, subsample_labels

__all__ = ["DATASETS", "DATASET_KINDS", "build_datalist", "detect_dataset"]

DATASETS: dict[str, Callable[..., Datalist]] = {
    "covid_radiography": build_covid_radiography_datalist,
    "pediatric_cxr": build_pediatric_cxr_datalist,
    "isic2018": build_isic2018_datalist,
    "kvasir_seg": build_kvasir_seg_datalist,
    "folder": build_folder_datalist,
}
#: what each data set is for: its labels make it a classification or a segmentation set, or none (unlabelled)
DATASET_KINDS = {
    "covid_radiography": "classification",
    "pediatric_cxr": "classification",
    "isic2018": "segmentation",
    "kvasir_seg": "segmentation",
    "folder": "unlabelled",
}
# Most specific first: COVID class folders also hold images/ + masks/, like Kvasir-SEG.
_DETECTORS = (
    ("covid_radiography", find_covid_root),
    ("isic2018", find_isic_root),
    ("kvasir_seg", find_kvasir_root),
    ("pediatric_cxr", find_pediatric_root),
)


#: folder names and file-name endings that mark masks, not images (a plain folder of them is refused)
MASK_FOLDERS = frozenset({"masks", "mask", "labels", "label", "groundtruth", "ground_truth", "gt", "annotations",
                          "segmentations"})
MASK_ENDINGS = ("_mask", "_segmentation", "_seg", "_gt")


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def looks_like_mask(path: Path, root: Path) -> bool:
    """Whether ``path`` (below ``root``) reads as a mask: in a :data:`MASK_FOLDERS` folder or named like one."""
    folders = [p.lower() for p in path.relative_to(root).parts[:-1]]
    return any(f in MASK_FOLDERS or f.endswith(MASK_ENDINGS) for f in folders) or \
        image_stem(path).lower().endswith(MASK_ENDINGS)


def detect_dataset(dataset_dir: str | Path) -> str:
    """Name of the data set laid out under ``dataset_dir`` (its root or a parent up to two levels up):
    one of :data:`DATASETS`; ``"folder"`` for any other folder holding images.

    Refused with a :class:`DataError` that says what was found: a folder holding several data sets (their roots
    apart; a more specific layout found first wins over a reading of the same files, as COVID class folders
    holding ``images/`` + ``masks/``), and a plain folder whose images include masks
    (:func:`looks_like_mask`)."""
    matches: list[tuple[str, Path]] = []
    for name, find in _DETECTORS:
        try:
            root = find(dataset_dir)
        except DataError:
            if matches:  # a less specific reading of files already recognised
                continue
            raise
        if root is not None and not any(_nested(Path(root), r) for _, r in matches):
            matches.append((name, Path(root)))
    if len(matches) > 1:
        found = "; ".join(f"{name} at {root}" for name, root in matches)
        raise DataError(f"{dataset_dir}: holds several data sets ({found}); point dataset_dir at one of them")
    if matches:
        return matches[0][0]
    top = as_dir(dataset_dir)
    images = list_images(top, recursive=True)
    if not images:
        raise DataError(f"{dataset_dir}: no known data set layout and no images found")
    masks = [p for p in images if looks_like_mask(p, top)]
    if masks:
        raise DataError(
            f"{dataset_dir}: no known data set layout, and {len(masks)} of its {len(images)} images look like masks "
            f"(e.g. {masks[0]}); for segmentation lay the pairs out as images/ + masks/ (Kvasir-SEG style), for "
            "unlabelled images point dataset_dir at a folder of images only"
        )
    return "folder"


def build_datalist(
    dataset: str,
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    label_fraction: float = 1.0,
    options: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Datalist:
    """Build the datalist of ``dataset`` (a :data:`DATASETS` name, or ``"auto"`` to detect it) found under
    ``dataset_dir``; ``options`` and ``kw`` go to the data set's builder (fractions, ``num_classes``,
    ``skip_invalid``, ...: a bundle passes its ``datalist_kwargs`` as ``options``). ``label_fraction`` < 1 keeps
    that fraction of the training labels (:func:`~dcl_cstp_ext.data.subsample_labels`, seeded by ``seed``)."""
    name = detect_dataset(dataset_dir) if dataset == "auto" else dataset
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'auto' or one of {sorted(DATASETS)}")
    datalist = DATASETS[name](dataset_dir, seed=seed, split_file=split_file, **{**(options or {}), **kw})
    return subsample_labels(datalist, label_fraction, seed=seed)
