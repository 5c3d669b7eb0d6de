"""Bad input is found before training: each case raises DataError naming the file, or is skipped and counted."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dcl_cstp_ext.data import (
    DataError,
    LoadImage2D,
    build_covid_radiography_datalist,
    build_isic2018_datalist,
    build_kvasir_seg_datalist,
    build_pediatric_cxr_datalist,
    make_demo_data,
    validate_datalist,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    roots = make_demo_data(tmp_path_factory.mktemp("demo"), seed=1, n_cls_per_class=6, n_seg=8, size=32)
    return {k: Path(v) for k, v in roots.items()}


@pytest.fixture
def demo(pristine, tmp_path) -> dict[str, Path]:
    """A private copy of the demo data that a test may damage."""
    out = {}
    for name, root in pristine.items():
        out[name] = tmp_path / root.name
        shutil.copytree(root, out[name])
    return out


def _isic(demo) -> tuple[Path, Path]:
    root = demo["isic2018"]
    return root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_image_raises_or_is_skipped(demo, caplog):
    images, _ = _isic(demo)
    bad = images / "ISIC_0000003.jpg"
    _truncate(bad)
    with pytest.raises(DataError, match="ISIC_0000003.jpg.*truncated") as err:
        build_isic2018_datalist(demo["isic2018"])
    assert err.value.problems[0][0] == str(bad)
    with caplog.at_level(logging.WARNING):
        dl = build_isic2018_datalist(demo["isic2018"], skip_invalid=True)
    assert sum(len(dl[k]) for k in ("training", "validation", "test")) == 7
    assert "ISIC_0000003.jpg" in caplog.text
    assert len(build_isic2018_datalist(demo["isic2018"], check_images=False)["training"]) + 2 == 8


def test_unreadable_image_and_mask(demo):
    covid = demo["covid_radiography"] / "COVID-19_Radiography_Dataset" / "Normal" / "images" / "Normal-2.png"
    covid.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="Normal-2.png: unreadable"):
        build_covid_radiography_datalist(demo["covid_radiography"])
    mask = demo["kvasir_seg"] / "Kvasir-SEG" / "masks" / "demo0001.jpg"
    mask.write_bytes(b"")
    with pytest.raises(DataError, match="demo0001.jpg: unreadable"):
        build_kvasir_seg_datalist(demo["kvasir_seg"])


def test_image_without_mask_and_mask_without_image(demo):
    images, masks = _isic(demo)
    (masks / "ISIC_0000002_segmentation.png").unlink()
    (images / "ISIC_0000005.jpg").unlink()
    with pytest.raises(DataError) as err:
        build_isic2018_datalist(demo["isic2018"])
    msg = str(err.value)
    assert "ISIC_0000002.jpg: image without its mask" in msg
    assert "ISIC_0000005_segmentation.png: mask without its image" in msg
    dl = build_isic2018_datalist(demo["isic2018"], skip_invalid=True)
    assert len(dl["training"]) + len(dl["validation"]) == 6
    (demo["kvasir_seg"] / "Kvasir-SEG" / "masks" / "demo0004.jpg").unlink()
    with pytest.raises(DataError, match="demo0004.jpg: image without its mask"):
        build_kvasir_seg_datalist(demo["kvasir_seg"])


def test_mask_size_differs(demo):
    _, masks = _isic(demo)
    Image.new("L", (20, 20)).save(masks / "ISIC_0000001_segmentation.png")
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg, .*ISIC_0000001_segmentation\.png: mask size"):
        build_isic2018_datalist(demo["isic2018"])


def test_a_tiny_image_is_refused(demo):
    """Issue #23: a 1 x 1 "image" (a broken export) no longer trains or infers silently."""
    images, _ = _isic(demo)
    Image.new("RGB", (1, 1)).save(images / "ISIC_0000002.jpg")
    with pytest.raises(DataError, match=r"ISIC_0000002\.jpg: image of 1 x 1 pixels, below the 8-pixel minimum side"):
        build_isic2018_datalist(demo["isic2018"])


def test_an_exif_turned_image_whose_mask_is_drawn_turned_is_named(demo):
    """Issue #23: the EXIF orientation is named when it explains a mask of swapped width and height."""
    images, masks = _isic(demo)
    stored = Image.new("RGB", (40, 24))
    exif = stored.getexif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    stored.save(images / "ISIC_0000001.jpg", exif=exif)
    Image.new("L", (24, 40)).save(masks / "ISIC_0000001_segmentation.png")  # drawn on the turned view
    with pytest.raises(DataError, match=r"mask size \(24, 40\) differs from image size \(40, 24\) \(w, h\); the image "
                                        r"carries EXIF orientation 6"):
        build_isic2018_datalist(demo["isic2018"])


def test_empty_wrong_or_missing_folders(demo, tmp_path):
    images = demo["covid_radiography"] / "COVID-19_Radiography_Dataset" / "Lung_Opacity" / "images"
    shutil.rmtree(images)
    images.mkdir()
    with pytest.raises(DataError, match="Lung_Opacity/images: no images"):
        build_covid_radiography_datalist(demo["covid_radiography"])
    shutil.rmtree(images.parent)
    with pytest.raises(DataError, match="Lung_Opacity: class folder missing"):
        build_covid_radiography_datalist(demo["covid_radiography"])
    with pytest.raises(DataError, match="no ISIC2018_Task1-2_Training_Input"):
        build_isic2018_datalist(demo["kvasir_seg"])
    with pytest.raises(DataError, match="does not exist"):
        build_kvasir_seg_datalist(tmp_path / "nowhere")
    shutil.rmtree(_isic(demo)[1])
    with pytest.raises(DataError, match="ground-truth folder missing"):
        build_isic2018_datalist(demo["isic2018"])


def test_unknown_class_folder(demo, tmp_path):
    extra = demo["covid_radiography"] / "COVID-19_Radiography_Dataset" / "Tuberculosis" / "images"
    extra.mkdir(parents=True)
    with pytest.raises(DataError, match=r"unknown class folder\(s\) \['Tuberculosis'\]"):
        build_covid_radiography_datalist(demo["covid_radiography"])
    for folder in ("NORMAL", "PNEUMONIA", "COVID"):
        (tmp_path / "chest_xray" / "train" / folder).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "chest_xray" / "train" / folder / "person1_bacteria_1.jpeg")
    with pytest.raises(DataError, match=r"chest_xray/train: unknown class folder\(s\) \['COVID'\]"):
        build_pediatric_cxr_datalist(tmp_path)


def test_pneumonia_type_not_in_file_name(tmp_path):
    for name in ("NORMAL/IM-1.jpeg", "PNEUMONIA/person1_bacteria_1.jpeg", "PNEUMONIA/person2_virus_2.jpeg"):
        (tmp_path / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8)).save(tmp_path / "train" / name)
    Image.new("L", (8, 8)).save(tmp_path / "train" / "PNEUMONIA" / "person3_9.jpeg")
    assert len(build_pediatric_cxr_datalist(tmp_path, num_classes=2, val_fraction=0)["training"]) == 4
    with pytest.raises(DataError, match="person3_9.jpeg: cannot tell bacterial from viral"):
        build_pediatric_cxr_datalist(tmp_path, num_classes=3)
    dl = build_pediatric_cxr_datalist(tmp_path, num_classes=3, val_fraction=0, skip_invalid=True)
    assert sorted(it["label"] for it in dl["training"]) == [0, 1, 2]


def test_listed_kvasir_id_without_files(demo):
    (demo["kvasir_seg"] / "train.txt").write_text("demo0000\ndemo0001\nghost_id\n")
    with pytest.raises(DataError, match="ghost_id: listed id has no image/mask pair"):
        build_kvasir_seg_datalist(demo["kvasir_seg"])


def test_validate_datalist_report(demo, tmp_path):
    images, masks = _isic(demo)
    items = [
        {"image": str(p), "label": str(masks / f"{p.stem}_segmentation.png")} for p in sorted(images.glob("*.jpg"))
    ]
    items += [
        {"image": str(tmp_path / "missing.png"), "label": 0},
        {"image": str(images / "ISIC_0000000.jpg"), "label": 1.5},
    ]
    _truncate(images / "ISIC_0000006.jpg")
    with pytest.raises(DataError) as err:
        validate_datalist(items)
    assert {Path(f).name for f, _ in err.value.problems} == {"missing.png", "ISIC_0000000.jpg", "ISIC_0000006.jpg"}
    kept, report = validate_datalist(items, skip_invalid=True, num_workers=3)
    assert (len(kept), report.checked, report.n_skipped) == (7, 10, 3)
    assert report.to_dict()["n_skipped"] == 3 and "file not found" in report.skipped[1][1]
    kept, report = validate_datalist(items, check_images=False, skip_invalid=True)
    assert report.n_skipped == 2  # without decoding, only existence and label type are checked


def test_loader_names_a_broken_file(demo):
    bad = demo["kvasir_seg"] / "Kvasir-SEG" / "images" / "demo0002.jpg"
    _truncate(bad)
    with pytest.raises(DataError, match="demo0002.jpg"):
        LoadImage2D()(bad)
