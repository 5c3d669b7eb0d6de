"""DICOM (``.dcm``, ``.dicom``), read with pydicom directly (MONAI's ``PydicomReader`` applies the rescale but
neither the VOI LUT / window nor MONOCHROME1, and it transposes to (W, H)); single-frame images only:

1. the Modality LUT (``RescaleSlope`` / ``RescaleIntercept``, or a Modality LUT Sequence) is applied
   (``pydicom.pixels.apply_modality_lut``);
2. a VOI LUT Sequence or else the first ``WindowCenter`` / ``WindowWidth`` is applied
   (``pydicom.pixels.apply_voi_lut``) and its output range mapped to [0, 1];
3. without a VOI, the range the stored bit depth allows (``BitsStored``: 8 bits -> 0..255, 12 -> 0..4095,
   16 -> 0..65535; signed data symmetric around 0), passed through the modality rescale, is mapped to [0, 1]:
   8-bit data gives the same values as an 8-bit PNG, 16-bit data those of a 16-bit PNG (divided by 65535);
4. MONOCHROME1 (white = low) is inverted, so 1 is always bright (MONOCHROME2); the Presentation LUT Shape is
   not applied again (for MONOCHROME1 it only restates the inversion);
5. colour (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its palette) is divided by its bit
   depth's maximum.

Multi-frame files, files without ``PixelData`` (structured reports, presentation states, ...), and files
pydicom cannot decode raise :class:`~dcl_cstp_ext.data.errors.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["dicom_dataset", "read_dicom"]


def dicom_dataset(path: str | Path, stop_before_pixels: bool = False):
    """The pydicom dataset of an image file, or :class:`DataError` for an unreadable / non-image / multi-frame file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DataError.in_file(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from exc
    sop = ds.get("SOPClassUID")
    has_pixels = ("Rows" in ds and "Columns" in ds) if stop_before_pixels else "PixelData" in ds
    if not has_pixels:
        msg = f"DICOM file without image pixel data (SOP class {getattr(sop, 'name', sop) or 'unknown'}): not an image"
        raise DataError.in_file(path, msg)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        msg = f"multi-frame DICOM ({frames} frames): only single-frame 2-D images are supported"
        raise DataError.in_file(path, msg)
    return ds


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.BitsStored)
    if int(getattr(ds, "PixelRepresentation", 0)) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _lut_max(item) -> float:
    """Largest output of a VOI LUT item: its declared bits per entry, or fewer (at least 8) when its data uses
    fewer (a known quirk: 16 declared, 12 used)."""
    declared = int(item.LUTDescriptor[2])
    data = item.LUTData
    values = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) else np.asarray(data).ravel()
    used = max(8, int(values.max()).bit_length()) if values.size else declared
    return float(2 ** min(declared, used) - 1)


def read_dicom(path: str | Path) -> np.ndarray:
    """Read a single-frame DICOM image (see the module docstring for the intensity rules)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = dicom_dataset(path)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder plug-in, corrupt data, ...
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        msg = f"cannot decode DICOM pixel data (transfer syntax {ts}; {type(exc).__name__}: {exc})"
        raise DataError.in_file(path, msg) from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return rgb.transpose(2, 0, 1).astype(np.float32) / (65535.0 if rgb.dtype.itemsize > 1 else 255.0)
    if int(getattr(ds, "SamplesPerPixel", 1)) == 3 or arr.ndim == 3:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            msg = f"unexpected colour pixel array of shape {arr.shape}"
            raise DataError.in_file(path, msg)
        return arr.transpose(2, 0, 1).astype(np.float32) / float(2 ** int(ds.BitsStored) - 1)
    if not photometric.startswith("MONOCHROME"):
        msg = f"unsupported photometric interpretation {photometric!r} for a grey image"
        raise DataError.in_file(path, msg)
    # output range of the modality transform (PS3.3 C.11.1), as pydicom's apply_windowing computes it
    lo, hi = _stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + icpt, hi * slope + icpt
    values = apply_modality_lut(arr, ds)
    if ds.get("VOILUTSequence"):  # a LUT is indexed by integer values
        values = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        lo, hi = 0.0, _lut_max(ds.VOILUTSequence[0])
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)  # below the window -> lo, above -> hi
    else:  # no VOI: higher rescaled values are brighter, also with a negative slope
        lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        msg = f"degenerate intensity range [{lo}, {hi}]"
        raise DataError.in_file(path, msg)
    out = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out[None].astype(np.float32)
