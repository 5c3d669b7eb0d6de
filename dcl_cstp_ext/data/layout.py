"""Finding files on disk: image extensions, sorted listings, dataset-root search and image/mask pairing.

Images are recognised by extension (:data:`IMAGE_EXTENSIONS`: PNG, JPEG, BMP, TIFF, DICOM ``.dcm`` / ``.dicom``,
NIfTI ``.nii`` / ``.nii.gz``), formats may be mixed in one folder; a file's id (:func:`stems`) is its name
without the image extension, so ``case1.nii.gz`` and ``case1.png`` share the id ``case1``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import DataError
from .formats import IMAGE_EXTENSIONS, image_stem, image_suffix

__all__ = [
    "IMAGE_EXTENSIONS",
    "as_dir",
    "find_root",
    "is_image_file",
    "list_images",
    "pair_files",
    "stems",
    "subdirs",
]

_IGNORED_DIRS = frozenset({"__MACOSX"})


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in _IGNORED_DIRS


def is_image_file(path: Path) -> bool:
    """True for a visible regular file with an image extension (``LICENSE.txt`` and the like are not)."""
    return image_suffix(path) in IMAGE_EXTENSIONS and not _ignored(path) and path.is_file()


def as_dir(path: str | Path) -> Path:
    """Resolve ``path`` to an absolute directory, or raise :class:`DataError`."""
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise DataError(f"{p}: dataset directory does not exist or is not a directory")
    return p


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-directories of ``folder``, sorted by name (hidden ones and ``__MACOSX`` are skipped)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _ignored(p)), key=lambda p: p.name)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of ``folder`` (optionally recursive, skipping hidden folders), sorted by path."""
    if not folder.is_dir():
        return []
    if not recursive:
        return sorted(p for p in folder.iterdir() if is_image_file(p))
    out: list[Path] = []
    for p in folder.rglob("*"):
        rel_parts = p.relative_to(folder).parts
        if any(part.startswith(".") or part in _IGNORED_DIRS for part in rel_parts):
            continue
        if is_image_file(p):
            out.append(p)
    return sorted(out)


def find_root(dataset_dir: str | Path, match: Callable[[Path], bool], max_depth: int = 2) -> Path | None:
    """Breadth-first search of ``dataset_dir`` and its sub-folders (up to ``max_depth``) for a folder
    satisfying ``match``; the shallowest, then alphabetically first, match wins. ``None`` if none."""
    level = [as_dir(dataset_dir)]
    for _ in range(max_depth + 1):
        for d in level:
            if match(d):
                return d
        level = [s for d in level for s in subdirs(d)]
    return None


def pair_files(
    images: Mapping[str, Path], masks: Mapping[str, Path], what: str = "mask"
) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Pair images and masks sharing a key (sorted by key).

    Returns ``(pairs, problems)`` where ``problems`` lists ``(file, message)`` for every image without
    its mask and every mask without its image.
    """
    pairs = [(images[k], masks[k]) for k in sorted(images.keys() & masks.keys())]
    problems = [(str(images[k]), f"image without its {what}") for k in sorted(images.keys() - masks.keys())]
    problems += [(str(masks[k]), f"{what} without its image") for k in sorted(masks.keys() - images.keys())]
    return pairs, problems


def stems(paths: Iterable[Path], suffix: str = "") -> dict[str, Path]:
    """Map file stem (the name without its image extension, :func:`~dcl_cstp_ext.data.formats.image_stem`, minus
    an optional trailing ``suffix`` such as ``_segmentation``) to path."""
    out: dict[str, Path] = {}
    for p in paths:
        stem = image_stem(p)
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
        out[stem] = p
    return out
