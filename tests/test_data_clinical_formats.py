"""DICOM and NIfTI 2-D images beside PNG: each loads to the array of its PNG source (same values within rounding,
same orientation), bad DICOM files are refused naming the file, formats mix in one folder, and a segmentation
inference on a NIfTI input writes a NIfTI mask with the input's affine."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_bundle
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dcl_cstp_ext.data import (
    DataError,
    LoadImage2Dd,
    build_folder_datalist,
    build_kvasir_seg_datalist,
    detect_dataset,
    inference_items,
    read_image,
    segmentation_preprocess,
    validate_datalist,
)
from dcl_cstp_ext.data.demo_data import make_cxr_image
from dcl_cstp_ext.data.formats import image_format, image_size, image_stem, save_mask
from dcl_cstp_ext.data.validation import probe_image

H, W = 40, 56  # non-square, and the chest picture is not symmetric: a transpose or flip would show
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
AFFINE = np.array([[0.7, 0, 0, -12.0], [0, 0.5, 0, 30.0], [0, 0, 2.0, 4.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def png8() -> np.ndarray:
    """A crop of a built-in demo chest X-ray, (H, W) uint8."""
    img = make_cxr_image(np.random.default_rng(3), 1, size=64)[6 : 6 + H, 4 : 4 + W]
    assert img.shape == (H, W)
    assert np.abs(img.astype(int) - img[::-1].astype(int)).mean() > 5  # not symmetric top / bottom
    assert np.abs(img.astype(int) - img[:, ::-1].astype(int)).mean() > 5  # nor left / right
    return np.ascontiguousarray(img)


def _save_png(arr: np.ndarray, path: Path) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8, **elements) -> Path:
    """Write ``stored`` ((H, W) or (frames, H, W)) as an explicit-little-endian DX file with ``elements``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DX
    ds.SOPClassUID = DX
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.set_pixel_data(stored, photometric, bits)
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored12(png: np.ndarray) -> np.ndarray:
    return np.round(png / 255.0 * 4095).astype(np.uint16)


def _window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, output in [0, 1]."""
    return np.clip((hu - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


# name: (photometric, bits, stored from the PNG, extra DICOM elements, expected from the PNG as float in [0, 1])
DICOM_CASES = {
    "mono2_8bit": ("MONOCHROME2", 8, lambda p: p, {}, lambda p: p / 255.0),
    "mono1_8bit": ("MONOCHROME1", 8, lambda p: 255 - p, {}, lambda p: p / 255.0),
    "mono2_12bit": ("MONOCHROME2", 12, _stored12, {}, lambda p: p / 255.0),
    "mono2_16bit": ("MONOCHROME2", 16, lambda p: p.astype(np.uint16) * 257, {}, lambda p: p / 255.0),
    "mono1_16bit": ("MONOCHROME1", 16, lambda p: 65535 - p.astype(np.uint16) * 257, {}, lambda p: p / 255.0),
    "mono2_12bit_rescale": (
        "MONOCHROME2", 12, _stored12, {"RescaleSlope": "0.5", "RescaleIntercept": "-1024"}, lambda p: p / 255.0,
    ),
    # a window over exactly the rescaled range of the data: the PNG again
    "mono2_12bit_rescale_window": (
        "MONOCHROME2", 12, lambda p: p.astype(np.uint16) * 16,
        {"RescaleSlope": "1", "RescaleIntercept": "-1024", "WindowCenter": "1016.5", "WindowWidth": "4081"},
        lambda p: p / 255.0,
    ),
    "mono1_12bit_rescale_window": (
        "MONOCHROME1", 12, lambda p: (255 - p.astype(np.uint16)) * 16,
        {"RescaleSlope": "1", "RescaleIntercept": "-1024", "WindowCenter": "1016.5", "WindowWidth": "4081"},
        lambda p: p / 255.0,
    ),
    # a narrower window in rescaled units (HU = 2 * stored - 1000) clips both ends
    "mono2_12bit_narrow_window": (
        "MONOCHROME2", 12, lambda p: p.astype(np.uint16) * 16,
        {"RescaleSlope": "2", "RescaleIntercept": "-1000", "WindowCenter": "3000", "WindowWidth": "3000"},
        lambda p: _window(2.0 * (p.astype(np.float64) * 16) - 1000, 3000, 3000),
    ),
    "mono2_8bit_no_window_no_rescale_16bit_alloc": ("MONOCHROME2", 8, lambda p: p.astype(np.uint16), {},
                                                    lambda p: p / 255.0),
}


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_dicom_loads_like_its_png(case, png8, tmp_path):
    photometric, bits, stored, extra, expected = DICOM_CASES[case]
    path = _dicom(tmp_path / f"{case}.dcm", stored(png8), photometric, bits, **extra)
    img = read_image(path)
    assert img.shape == (1, H, W) and img.dtype == np.float32
    want = expected(png8)
    np.testing.assert_allclose(img[0], want, atol=1.5e-4)
    assert 0.0 <= img.min() and img.max() <= 1.0
    if case == "mono2_12bit_narrow_window":
        assert (want == 0).any() and (want == 1).any() and ((want > 0) & (want < 1)).any()  # clips both ends
    else:  # the same array as the PNG read
        np.testing.assert_allclose(img, read_image(_save_png(png8, tmp_path / "src.png")), atol=1.5e-4)


def test_dicom_voi_lut_sequence(png8, tmp_path):
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 16]
    lut.add_new(0x00283006, "US", [int(v) for v in (255 - np.arange(256)) * 257])  # LUTData: inverting, 16 bits
    path = _dicom(tmp_path / "voi.dcm", png8, VOILUTSequence=[lut])
    np.testing.assert_allclose(read_image(path)[0], 1.0 - png8 / 255.0, atol=1e-6)


def test_dicom_rgb_and_pipeline(png8, tmp_path):
    rgb = np.stack([png8, 255 - png8, png8 // 2], axis=-1)
    path = _dicom(tmp_path / "rgb.dcm", rgb, "RGB", 8)
    img = read_image(path)
    assert img.shape == (3, H, W)
    np.testing.assert_allclose(img, read_image(_save_png(rgb, tmp_path / "rgb.png")), atol=1e-6)
    grey = _dicom(tmp_path / "grey.dcm", png8)
    out = LoadImage2Dd("image", channels=3)({"image": str(grey)})["image"]
    assert out.shape == (3, H, W) and tuple(out.meta["spatial_shape"]) == (H, W)
    assert image_size(grey, decode=False) == image_size(grey) == (W, H)


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, **header) -> Path:
    img = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("name", ["slice.nii", "slice.nii.gz"])
def test_nifti_slice_loads_like_its_png(name, png8, tmp_path):
    # the convention: array axis 0 is the image column (x), axis 1 the row (y), stored (X, Y) or (X, Y, 1)
    for data in (png8.T.copy(), png8.T[:, :, None].copy()):
        path = _nifti(tmp_path / name, data)
        img = read_image(path)
        assert img.shape == (1, H, W)
        np.testing.assert_array_equal(img, read_image(_save_png(png8, tmp_path / "src.png")))
        assert image_size(path, decode=False) == image_size(path) == (W, H)


def test_nifti_intensity_rules(png8, tmp_path):
    want = png8 / 255.0
    as_float = _nifti(tmp_path / "f.nii.gz", (png8.T / 255.0).astype(np.float32))
    np.testing.assert_allclose(read_image(as_float)[0], want, atol=1e-6)
    windowed = _nifti(tmp_path / "w.nii.gz", png8.T.astype(np.int16) * 4 - 100, cal_min=-100.0, cal_max=920.0)
    np.testing.assert_allclose(read_image(windowed)[0], want, atol=1e-6)
    labels = _nifti(tmp_path / "m.nii.gz", (png8.T > 128).astype(np.uint8))
    np.testing.assert_array_equal(read_image(labels)[0], (png8 > 128).astype(np.float32))
    colour = np.stack([png8, 255 - png8, png8 // 2], axis=-1)
    rgb = _nifti(tmp_path / "c.nii.gz", (colour.transpose(1, 0, 2)[:, :, None, None, :] / 255.0).astype(np.float32))
    np.testing.assert_allclose(read_image(rgb), colour.transpose(2, 0, 1) / 255.0, atol=1e-6)
    volume = _nifti(tmp_path / "v.nii.gz", np.zeros((W, H, 4), np.uint8))
    with pytest.raises(DataError, match="v.nii.gz: not a 2-D image"):
        read_image(volume)


def test_save_mask_round_trip(png8, tmp_path):
    mask = png8 > 120  # non-symmetric
    src = _nifti(tmp_path / "in.nii.gz", png8.T[:, :, None].copy())
    out = save_mask(mask, src, tmp_path / "out" / "in")
    assert out.name == "in.nii.gz"
    written = nib.load(str(out))
    assert written.shape == (W, H, 1) and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, AFFINE)
    np.testing.assert_array_equal(read_image(out)[0], mask.astype(np.float32))  # same orientation back
    png_out = save_mask(mask, _save_png(png8, tmp_path / "in.png"), tmp_path / "out" / "in_png")
    assert png_out.suffix == ".png"
    np.testing.assert_array_equal(np.asarray(Image.open(png_out)), mask.astype(np.uint8) * 255)


def test_multiframe_and_non_image_dicom_are_refused(png8, tmp_path):
    multi = _dicom(tmp_path / "multi.dcm", np.stack([png8, png8]))
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID = BASIC_TEXT_SR
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.Modality = "SR"
    sr.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    report = tmp_path / "report.dcm"
    not_dicom = tmp_path / "text.dcm"
    not_dicom.write_text("not a DICOM file")
    for path, what in ((multi, "multi-frame"), (report, "without image pixel data"), (not_dicom, "unreadable")):
        with pytest.raises(DataError, match=f"{path.name}: .*{what}"):
            read_image(path)
        with pytest.raises(DataError, match=f"{path.name}: .*{what}"):
            LoadImage2Dd("image")({"image": str(path)})
        for decode in (True, False):
            size, err = probe_image(path, decode=decode)
            assert size is None and what in err
    with pytest.raises(DataError) as info:
        validate_datalist([{"image": str(p)} for p in (multi, report)])
    assert str(multi) in str(info.value) and str(report) in str(info.value)


def _mixed(folder: Path, png8: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True)
    files = [
        _save_png(png8, folder / "a.png"),
        _dicom(folder / "b.dcm", png8),
        _nifti(folder / "c.nii.gz", png8.T.copy()),
        _nifti(folder / "d.nii", png8.T.copy()),
    ]
    (folder / "notes.txt").write_text("not an image")
    return files


def test_mixed_folder_builds_datalists(png8, tmp_path):
    files = _mixed(tmp_path / "mixed", png8)
    assert [image_format(p) for p in files] == ["pil", "dicom", "nifti", "nifti"]
    assert [image_stem(p) for p in files] == ["a", "b", "c", "d"]
    assert detect_dataset(tmp_path / "mixed") == "folder"
    items = build_folder_datalist(tmp_path / "mixed")["training"]
    assert sorted(Path(it["image"]).name for it in items) == ["a.png", "b.dcm", "c.nii.gz", "d.nii"]
    for keys in (("image",), ("image", "label")):
        assert sorted(Path(it["image"]).name for it in inference_items(tmp_path / "mixed", keys=keys)) == [
            "a.png", "b.dcm", "c.nii.gz", "d.nii"]
    loaded = [read_image(p) for p in files]
    for img in loaded[1:]:
        np.testing.assert_array_equal(img, loaded[0])


def test_mixed_formats_pair_as_images_and_masks(png8, tmp_path):
    root = tmp_path / "Kvasir-SEG"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask8 = np.where(png8 > 120, 255, 0).astype(np.uint8)
    _nifti(root / "images" / "a.nii.gz", png8.T.copy())
    _dicom(root / "images" / "b.dcm", png8)
    _save_png(png8, root / "images" / "c.png")
    _save_png(mask8, root / "masks" / "a.png")
    _save_png(mask8, root / "masks" / "b.png")
    _nifti(root / "masks" / "c.nii.gz", (mask8.T > 0).astype(np.uint8))
    datalist = build_kvasir_seg_datalist(tmp_path, val_fraction=0.0)
    pairs = sorted((Path(it["image"]).name, Path(it["label"]).name) for it in datalist["training"])
    assert pairs == [("a.nii.gz", "a.png"), ("b.dcm", "b.png"), ("c.png", "c.nii.gz")]
    chain = segmentation_preprocess(image_size=None, channels=1)
    for it in datalist["training"]:
        out = chain(it)
        np.testing.assert_array_equal(out["image"][0].numpy(), png8 / np.float32(255.0))
        np.testing.assert_array_equal(out["label"][0].numpy(), (png8 > 120).astype(np.float32))


def test_segmentation_inference_on_nifti_keeps_affine(png8, tmp_path):
    """kvasir_seg inference.json at the tiny test size, random weights: a NIfTI input gives a NIfTI mask with the
    input's affine and shape, a DICOM or PNG input a PNG mask at its own size."""
    from monai.networks.nets import FlexibleUNet

    torch.manual_seed(0)
    net = FlexibleUNet(in_channels=3, out_channels=1, backbone="resnet18", spatial_dims=2, pretrained=False)
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    nii = _nifti(inputs / "case_nii.nii.gz", png8.T[:, :, None].copy())
    _dicom(inputs / "case_dcm.dcm", png8[:33, :45].copy())
    _save_png(png8[:25], inputs / "case_png.png")
    out = tmp_path / "pred"
    run_bundle("kvasir_seg", ["inference.json"], workflow_type="infer", dataset_dir=str(inputs), output_dir=str(out),
               ckpt_dir=str(tmp_path / "models"), backbone="resnet18", image_size=32, batch_size=2, num_workers=0,
               device="cpu", amp=False)
    mask = nib.load(str(out / "masks" / "case_nii.nii.gz"))
    assert mask.shape == nib.load(str(nii)).shape == (W, H, 1)
    np.testing.assert_allclose(mask.affine, AFFINE)
    assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1}
    for stem, size in (("case_dcm", (45, 33)), ("case_png", (W, 25)), ("case_nii", (W, H))):
        with Image.open(out / "overlays" / f"{stem}.png") as im:
            assert im.size == size and im.mode == "RGB"
        if stem != "case_nii":
            with Image.open(out / "masks" / f"{stem}.png") as im:
                assert im.size == size and set(np.unique(np.asarray(im)).tolist()) <= {0, 255}
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert sorted(Path(r["mask"]).name for r in rows) == ["case_dcm.png", "case_nii.nii.gz", "case_png.png"]
