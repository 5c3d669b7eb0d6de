"""NIfTI (``.nii``, ``.nii.gz``), read with nibabel, holds a 2-D slice: data of shape (X, Y), (X, Y, 1) or
(X, Y, 1, ..., 3) for colour. **Convention: array axis 0 is the image column (x), axis 1 the image row (y)**,
as MONAI's PIL reader and ITK/SimpleITK store a 2-D picture, so the slice is transposed to rows first
(``image[r, c] = data[c, r]``) and never flipped or resampled by its affine. The scaling (``scl_slope`` /
``scl_inter``) is applied; then a display range ``cal_min`` < ``cal_max`` is mapped to [0, 1] when set, else
integer data holding only 0 and 1 (a label mask) is kept as is, uint8 data is divided by 255, float data
already in [0, 1] is kept, and anything else is min-max scaled per image. :func:`save_mask` writes a mask
of a NIfTI input back the same way (transposed, uint8 0 / 1) with the input's affine (qform and sform).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["nifti_slice", "read_nifti"]


def nifti_slice(path: str | Path):
    """``(nibabel image, data as float64 (X, Y) or (X, Y, 3))``; :class:`DataError` if not a 2-D slice."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise DataError.in_file(path, f"unreadable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if data.dtype.names:  # RGB24 / RGBA32 structured voxels
        data = np.stack([data[c] for c in ("R", "G", "B")], axis=-1)
    shape = data.shape
    rest = [s for s in shape[3:] if s != 1]
    if len(shape) < 2 or (len(shape) > 2 and shape[2] != 1) or rest not in ([], [3]):
        msg = f"not a 2-D image: data shape {shape} (expected (X, Y), (X, Y, 1) or (X, Y, 1, ..., 3))"
        raise DataError.in_file(path, msg)
    data = data.reshape(shape[0], shape[1], *rest)
    return img, data


def read_nifti(path: str | Path) -> np.ndarray:
    """Read a 2-D NIfTI slice, transposed to rows first (see the module docstring for the convention)."""
    img, raw = nifti_slice(path)
    hdr = img.header
    slope, inter = hdr.get_slope_inter()
    data = raw.astype(np.float64)
    if slope is not None:
        data = data * slope + (inter or 0.0)
    cal_min, cal_max = float(hdr.get("cal_min", 0) or 0), float(hdr.get("cal_max", 0) or 0)
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    if cal_max > cal_min:
        data = (data - cal_min) / (cal_max - cal_min)
    elif np.issubdtype(raw.dtype, np.integer) and not scaled and set(np.unique(raw).tolist()) <= {0, 1}:
        pass  # a 0 / 1 label mask
    elif raw.dtype == np.uint8 and not scaled:
        data = data / 255.0
    elif not (np.issubdtype(raw.dtype, np.floating) and data.min() >= 0.0 and data.max() <= 1.0):
        lo, hi = float(data.min()), float(data.max())
        data = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    data = np.clip(data, 0.0, 1.0)
    # (X, Y[, 3]) -> (C, H=Y, W=X)
    out = data.T[None] if data.ndim == 2 else data.transpose(2, 1, 0)
    return out.astype(np.float32)
