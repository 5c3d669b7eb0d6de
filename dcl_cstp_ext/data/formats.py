"""Image file formats: one reader for PNG/JPEG/BMP/TIFF (PIL), DICOM (pydicom) and NIfTI (nibabel) 2-D images,
chosen by file extension, and the matching mask writer.

Every reader returns what PNG loading returns: a channel-first float32 array in [0, 1], (1, H, W) grey or
(3, H, W) colour, rows first, the picture the way a viewer shows it (row 0 at the top, column 0 at the left).

DICOM rules: :mod:`.dicom`. NIfTI rules (2-D slices, axis 0 the image column): :mod:`.nifti`; :func:`save_mask` writes a mask
of a NIfTI input back the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .dicom import dicom_dataset, read_dicom
from .nifti import nifti_slice, read_nifti

__all__ = [
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "PIL_EXTENSIONS",
    "image_format",
    "image_size",
    "image_stem",
    "image_suffix",
    "read_image",
    "read_pil",
    "save_mask",
]

PIL_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
NIFTI_EXTENSIONS = frozenset({".nii", ".nii.gz"})
IMAGE_EXTENSIONS = PIL_EXTENSIONS | DICOM_EXTENSIONS | NIFTI_EXTENSIONS


# --------------------------------------------------------------------------------------------------- names
def image_suffix(path: str | Path) -> str:
    """The lower-case image extension of ``path``: ``".nii.gz"`` for gzipped NIfTI, else the last suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def image_stem(path: str | Path) -> str:
    """The file name without its image extension (``case1.nii.gz`` -> ``case1``, ``a.b.png`` -> ``a.b``)."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def image_format(path: str | Path) -> str:
    """``"dicom"``, ``"nifti"`` or ``"pil"`` by file extension: the one place that picks a reader."""
    suffix = image_suffix(path)
    if suffix in DICOM_EXTENSIONS:
        return "dicom"
    if suffix in NIFTI_EXTENSIONS:
        return "nifti"
    return "pil"


# --------------------------------------------------------------------------------------------------- reading
def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image as a channel-first float32 array in [0, 1], rows first: (1, H, W) grey, (3, H, W) colour.

    The reader is chosen by extension (:func:`image_format`): DICOM (:func:`read_dicom`), NIfTI
    (:func:`read_nifti`), anything else PIL (:func:`read_pil`). See the module docstring for each format's
    intensity and orientation rules.
    """
    fmt = image_format(path)
    arr = read_dicom(path) if fmt == "dicom" else read_nifti(path) if fmt == "nifti" else read_pil(path)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def read_pil(path: str | Path) -> np.ndarray:
    """Read with PIL as stored. 8-bit data is divided by 255, 16-bit (``I;16*``, ``I``) by 65535 (float ``F``
    data is clipped to [0, 1]); palette / grey+alpha / CMYK images are converted, RGBA drops its alpha."""
    with Image.open(path) as im:
        if im.mode.startswith("I;16") or im.mode in ("I", "F"):
            arr = np.asarray(im, dtype=np.float32) / (1.0 if im.mode == "F" else 65535.0)
            arr = np.clip(arr, 0.0, 1.0)
        else:
            grey = im.mode in ("1", "L", "LA", "La") or (im.mode == "P" and _palette_is_grey(im))
            arr = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _palette_is_grey(im: Image.Image) -> bool:
    pal = np.asarray(im.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return pal.size > 0 and bool(np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]))


def image_size(path: str | Path, decode: bool = True) -> tuple[int, int]:
    """``(width, height)`` of an image of any accepted format. ``decode`` reads the pixels fully (catches
    truncation); otherwise only the header is read where the format allows. Raises :class:`DataError` (DICOM /
    NIfTI problems) or the decoder's own exception (PIL)."""
    fmt = image_format(path)
    if decode or fmt == "pil":
        if fmt == "pil":
            with Image.open(path) as im:
                size = im.size
                if decode:
                    if im.format == "JPEG":
                        im.draft(im.mode, (1, 1))
                    im.load()
            return size
        arr = read_image(path)
        return int(arr.shape[2]), int(arr.shape[1])
    if fmt == "dicom":
        ds = dicom_dataset(path, stop_before_pixels=True)
        return int(ds.Columns), int(ds.Rows)
    _, data = nifti_slice(path)
    return int(data.shape[0]), int(data.shape[1])


# --------------------------------------------------------------------------------------------------- writing
def save_mask(mask: np.ndarray, source: str | Path, out_base: str | Path) -> Path:
    """Write a binary (H, W) ``mask`` of the image ``source`` beside ``out_base`` (a path without extension).

    NIfTI sources give ``<out_base>.nii.gz``: uint8 0 / 1 stored (X, Y) like the source (the transpose of the
    mask, with the source's trailing singleton axes) under the source's affine, qform and sform. Any other
    source gives ``<out_base>.png``: uint8 0 / 255. Returns the path written.
    """
    mask = np.asarray(mask).astype(bool)
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    if image_format(source) != "nifti":
        out = out_base.with_name(out_base.name + ".png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(out)
        return out
    import nibabel as nib

    src = nib.load(str(source))
    shape = src.shape
    data = mask.T.astype(np.uint8)
    if len(shape) >= 3 and shape[2] == 1:
        data = data.reshape(data.shape[0], data.shape[1], 1)
    if data.shape[:2] != tuple(shape[:2]):
        raise ValueError(f"{source}: mask {mask.shape} (H, W) does not match the NIfTI slice {shape[:2]} (X, Y)")
    out_img = nib.Nifti1Image(data, src.affine)
    hdr = src.header
    if "qform_code" in hdr:
        out_img.set_qform(src.get_qform(), code=int(hdr["qform_code"]))
        out_img.set_sform(src.get_sform(), code=int(hdr["sform_code"]))
    out_img.header.set_xyzt_units(*hdr.get_xyzt_units())
    out = out_base.with_name(out_base.name + ".nii.gz")
    nib.save(out_img, str(out))
    return out
