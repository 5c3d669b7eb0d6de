"""Image file formats: one reader for PNG/JPEG/BMP/TIFF (PIL), DICOM (pydicom) and NIfTI (nibabel) 2-D images,
chosen by file extension, and the matching mask writer.

Every reader returns what PNG loading returns: a channel-first float32 array in [0, 1], (1, H, W) grey or
(3, H, W) colour, rows first, the picture the way a viewer shows it (row 0 at the top, column 0 at the left).

DICOM (``.dcm``, ``.dicom``), read with pydicom directly (MONAI's ``PydicomReader`` applies the rescale but
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

NIfTI (``.nii``, ``.nii.gz``), read with nibabel, holds a 2-D slice: data of shape (X, Y), (X, Y, 1) or
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
from PIL import Image

from .errors import DataError

__all__ = [
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "PIL_EXTENSIONS",
    "image_format",
    "image_size",
    "image_stem",
    "image_suffix",
    "read_dicom",
    "read_image",
    "read_nifti",
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
def _bad(path: str | Path, msg: str) -> DataError:
    """The error for one bad file: the message starts with the file, ``problems`` holds ``(file, msg)``."""
    return DataError(f"{path}: {msg}", [(str(path), msg)])


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


def _dicom_dataset(path: str | Path, stop_before_pixels: bool = False):
    """The pydicom dataset of an image file, or :class:`DataError` for an unreadable / non-image / multi-frame file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise _bad(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from exc
    sop = ds.get("SOPClassUID")
    has_pixels = ("Rows" in ds and "Columns" in ds) if stop_before_pixels else "PixelData" in ds
    if not has_pixels:
        msg = f"DICOM file without image pixel data (SOP class {getattr(sop, 'name', sop) or 'unknown'}): not an image"
        raise _bad(path, msg)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        msg = f"multi-frame DICOM ({frames} frames): only single-frame 2-D images are supported"
        raise _bad(path, msg)
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

    ds = _dicom_dataset(path)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder plug-in, corrupt data, ...
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        msg = f"cannot decode DICOM pixel data (transfer syntax {ts}; {type(exc).__name__}: {exc})"
        raise _bad(path, msg) from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return rgb.transpose(2, 0, 1).astype(np.float32) / (65535.0 if rgb.dtype.itemsize > 1 else 255.0)
    if int(getattr(ds, "SamplesPerPixel", 1)) == 3 or arr.ndim == 3:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            msg = f"unexpected colour pixel array of shape {arr.shape}"
            raise _bad(path, msg)
        return arr.transpose(2, 0, 1).astype(np.float32) / float(2 ** int(ds.BitsStored) - 1)
    if not photometric.startswith("MONOCHROME"):
        msg = f"unsupported photometric interpretation {photometric!r} for a grey image"
        raise _bad(path, msg)
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
        raise _bad(path, msg)
    out = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out[None].astype(np.float32)


def _nifti_slice(path: str | Path):
    """``(nibabel image, data as float64 (X, Y) or (X, Y, 3))``; :class:`DataError` if not a 2-D slice."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise _bad(path, f"unreadable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if data.dtype.names:  # RGB24 / RGBA32 structured voxels
        data = np.stack([data[c] for c in ("R", "G", "B")], axis=-1)
    shape = data.shape
    rest = [s for s in shape[3:] if s != 1]
    if len(shape) < 2 or (len(shape) > 2 and shape[2] != 1) or rest not in ([], [3]):
        msg = f"not a 2-D image: data shape {shape} (expected (X, Y), (X, Y, 1) or (X, Y, 1, ..., 3))"
        raise _bad(path, msg)
    data = data.reshape(shape[0], shape[1], *rest)
    return img, data


def read_nifti(path: str | Path) -> np.ndarray:
    """Read a 2-D NIfTI slice, transposed to rows first (see the module docstring for the convention)."""
    img, raw = _nifti_slice(path)
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
        ds = _dicom_dataset(path, stop_before_pixels=True)
        return int(ds.Columns), int(ds.Rows)
    _, data = _nifti_slice(path)
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
