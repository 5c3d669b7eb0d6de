"""Finding bad input before training starts: missing, unreadable or truncated images (any accepted format),
mismatched masks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .errors import DataError, Problem
from .formats import image_size

__all__ = ["MIN_SIDE", "ValidationReport", "exif_orientation", "probe_image", "raise_or_skip", "validate_datalist"]

logger = logging.getLogger(__name__)

#: the smallest side, in pixels, of an image that is taken as a picture (a 1 x 1 "image" is a broken export)
MIN_SIDE = 8
#: EXIF orientations that turn a stored image by 90 degrees on display (its width and height swap)
_EXIF_TURNED = {5, 6, 7, 8}


@dataclass
class ValidationReport:
    """What :func:`validate_datalist` checked and what it skipped (one ``(file, reason)`` per skipped item)."""

    checked: int = 0
    skipped: list[Problem] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "n_skipped": self.n_skipped, "skipped": [list(p) for p in self.skipped]}


def raise_or_skip(problems: Sequence[Problem], skip_invalid: bool, context: str = "invalid input data") -> None:
    """Raise a :class:`DataError` listing ``problems``, or (``skip_invalid``) log each one as a warning."""
    if not problems:
        return
    if not skip_invalid:
        raise DataError.from_problems(problems, context)
    for f, m in problems:
        logger.warning("skipping %s: %s", f, m)
    logger.warning("%s: skipped %d item(s)", context, len(problems))


def probe_image(path: str | Path, decode: bool = True) -> tuple[tuple[int, int] | None, str | None]:
    """Open an image of any accepted format, read its ``(width, height)`` and (``decode``) decode it fully to
    catch truncation (DICOM: also multi-frame and non-image files; NIfTI: anything but a 2-D slice).

    JPEGs are decoded at reduced DCT scale (``draft``), which still reads every byte but is several times
    faster. Returns ``(size, None)`` or ``(None, error message)``.
    """

    try:
        size = image_size(path, decode)
    except DataError as exc:
        return None, exc.problems[0][1] if exc.problems else str(exc)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
        return None, f"unreadable or truncated image ({type(exc).__name__}: {exc})"
    if size[0] <= 0 or size[1] <= 0:
        return None, f"empty image of size {size}"
    if min(size) < MIN_SIDE:
        return None, f"image of {size[0]} x {size[1]} pixels, below the {MIN_SIDE}-pixel minimum side"
    return size, None


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of a JPEG / TIFF / PNG (1, upright as stored, when there is none). Images are
    read as stored, so a photo whose camera marked it turned shows turned on screen but not to the model."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - not a PIL format, or no readable EXIF
        return 1


def _check_item(item: Mapping[str, Any], check_images: bool, image_key: str, label_key: str) -> list[Problem]:
    image = item.get(image_key)
    if not isinstance(image, str | Path):
        return [(repr(dict(item))[:200], f"item has no '{image_key}' path")]
    label = item.get(label_key)
    if label is not None and (isinstance(label, bool) or not isinstance(label, int | str | Path)):
        return [(str(image), f"'{label_key}' must be an int class index or a mask path, got {label!r}")]
    mask = label if isinstance(label, str | Path) else None
    files = [image] if mask is None else [image, mask]
    missing = [(str(f), "file not found") for f in files if not os.path.isfile(f)]
    if missing or not check_images:
        return missing
    (img_size, img_err), (mask_size, mask_err) = probe_image(image), (probe_image(mask) if mask else (None, None))
    problems = [(str(f), e) for f, e in ((image, img_err), (mask, mask_err)) if e]
    if not problems and mask is not None and img_size != mask_size:
        message = f"mask size {mask_size} differs from image size {img_size} (w, h)"
        turned = exif_orientation(image)
        if turned in _EXIF_TURNED and mask_size == img_size[::-1]:
            message += (f"; the image carries EXIF orientation {turned} (shown turned by 90 degrees, read as "
                        "stored), so its mask looks drawn on the turned view: store the image upright (e.g. PIL's "
                        "ImageOps.exif_transpose) or turn the mask back")
        problems.append((f"{image}, {mask}", message))
    return problems


def validate_datalist(
    items: Iterable[Mapping[str, Any]],
    check_images: bool = True,
    skip_invalid: bool = False,
    num_workers: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[list[dict[str, Any]], ValidationReport]:
    """Check every item of a datalist before training starts.

    Checks that the image (and the mask, when ``item[label_key]`` is a path) exists; with ``check_images``
    also that each decodes completely (no truncation) and that a mask has its image's size. Files are
    checked in a thread pool (PIL releases the GIL while decoding). Any accepted format (PNG / JPEG, DICOM,
    NIfTI; see :mod:`dcl_cstp_ext.data.formats`) may be mixed.

    Returns ``(kept_items, report)``. Raises :class:`DataError` naming every bad file unless
    ``skip_invalid``, in which case bad items are logged, counted in the report and left out.
    """
    items = [dict(it) for it in items]
    workers = num_workers or min(8, (os.cpu_count() or 1) + 2)
    check = partial(_check_item, check_images=check_images, image_key=image_key, label_key=label_key)
    if workers > 1 and len(items) > 16:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(check, items, chunksize=16))
    else:
        results = [check(it) for it in items]
    kept = [it for it, probs in zip(items, results) if not probs]
    problems = [p for probs in results for p in probs]
    report = ValidationReport(checked=len(items))
    raise_or_skip(problems, skip_invalid, "invalid datalist items")
    report.skipped = [
        (str(it.get(image_key)), "; ".join(f"{f}: {m}" for f, m in probs)) for it, probs in zip(items, results) if probs
    ]
    return kept, report
