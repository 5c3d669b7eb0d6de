"""Readers, seeded splits, split files, layout detection and the pre-training union (small fixtures)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dcl_cstp_ext.data import (
    COVID_CLASSES,
    DataError,
    build_covid_radiography_datalist,
    build_datalist,
    build_folder_datalist,
    build_isic2018_datalist,
    build_kvasir_seg_datalist,
    build_pediatric_cxr_datalist,
    build_pretrain_datalist,
    detect_dataset,
    make_demo_data,
    read_datalist,
    split_items,
    write_datalist,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    roots = make_demo_data(tmp_path_factory.mktemp("demo"), seed=0, n_cls_per_class=10, n_seg=10, size=32)
    return {k: Path(v) for k, v in roots.items()}


def _jpeg(path: Path, size=(24, 24), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _chest_xray(root: Path, parts=("train", "test")) -> Path:
    base = root / "chest_xray"
    for part in parts:
        for i in range(5):
            _jpeg(base / part / "NORMAL" / f"IM-{i:04d}-0001.jpeg")
        for i in range(4):
            _jpeg(base / part / "PNEUMONIA" / f"person{i}_bacteria_{i}.jpeg")
            _jpeg(base / part / "PNEUMONIA" / f"person{i}_virus_{i + 10}.jpeg")
    return base


def _images(datalist, split: str) -> list[str]:
    return [it["image"] for it in datalist[split]]


def test_covid_counts_labels_and_stratified_split(demo):
    dl = build_covid_radiography_datalist(demo["covid_radiography"], seed=0)
    assert dl["class_names"] == list(COVID_CLASSES)
    assert (len(dl["training"]), len(dl["validation"]), len(dl["test"])) == (32, 8, 0)
    assert Counter(it["label"] for it in dl["validation"]) == {0: 2, 1: 2, 2: 2, 3: 2}
    for it in dl["training"] + dl["validation"]:
        assert Path(it["image"]).is_absolute() and Path(it["image"]).is_file()
        assert Path(it["image"]).parts[-3] == it["class_name"] == COVID_CLASSES[it["label"]]
    assert not set(_images(dl, "training")) & set(_images(dl, "validation"))
    json.dumps(dl)  # JSON-serialisable


def test_root_or_parent_give_the_same_datalist(demo, tmp_path):
    parent = demo["covid_radiography"]
    expected = build_covid_radiography_datalist(parent)
    assert build_covid_radiography_datalist(parent / "COVID-19_Radiography_Dataset") == expected
    nested = tmp_path / "COVID-19_Radiography_Dataset"  # a doubly extracted archive
    shutil.copytree(parent / "COVID-19_Radiography_Dataset", nested / "COVID-19_Radiography_Dataset")
    assert len(build_covid_radiography_datalist(nested)["validation"]) == len(expected["validation"])
    kv = demo["kvasir_seg"]
    assert build_kvasir_seg_datalist(kv) == build_kvasir_seg_datalist(kv / "Kvasir-SEG")


def test_split_is_seeded_and_independent_of_listing_order(demo, monkeypatch):
    root = demo["covid_radiography"]
    a = build_covid_radiography_datalist(root, seed=3)
    assert a == build_covid_radiography_datalist(root, seed=3)
    assert _images(a, "validation") != _images(build_covid_radiography_datalist(root, seed=4), "validation")
    original = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(original(self), reverse=True)))
    assert build_covid_radiography_datalist(root, seed=3) == a


def test_split_items_fractions_and_order():
    items = [{"image": f"/x/{i:03d}.png", "label": i % 2} for i in range(50)]
    parts = split_items(items[::-1], {"validation": 0.2, "test": 0.1}, seed=1)
    assert [len(parts[k]) for k in ("training", "validation", "test")] == [35, 10, 5]
    assert Counter(it["label"] for it in parts["validation"]) == {0: 5, 1: 5}
    assert parts == split_items(items, {"validation": 0.2, "test": 0.1}, seed=1)
    assert all(p == sorted(p, key=lambda it: it["image"]) for p in parts.values())
    with pytest.raises(ValueError):
        split_items(items, {"validation": 0.6, "test": 0.5})


def test_split_file_written_reused_and_relocatable(demo, tmp_path):
    data = (tmp_path / "data").resolve()
    shutil.copytree(demo["isic2018"], data)
    split_file = tmp_path / "splits" / "isic.json"
    first = build_isic2018_datalist(data, seed=0, split_file=split_file)
    stored = json.loads(split_file.read_text())
    assert stored["meta"]["seed"] == 0 and not Path(stored["training"][0]["image"]).is_absolute()
    assert build_isic2018_datalist(data, seed=99, split_file=split_file) == first  # reused, not re-split
    moved = (tmp_path / "moved").resolve()
    data.rename(moved)
    again = build_isic2018_datalist(moved, split_file=split_file)
    assert _images(again, "validation") == [p.replace(str(data), str(moved)) for p in _images(first, "validation")]
    gone = Path(again["validation"][0]["label"])
    gone.unlink()
    with pytest.raises(DataError, match=gone.name):
        build_isic2018_datalist(moved, split_file=split_file)


def test_a_reused_split_warns_when_the_data_folder_has_changed(demo, tmp_path, caplog):
    """Issue #23: 20 images added to the data folder are not silently ignored by the reused split."""
    data = (tmp_path / "data").resolve()
    shutil.copytree(demo["kvasir_seg"], data)
    split_file = tmp_path / "kvasir.json"
    first = build_kvasir_seg_datalist(data, seed=0, split_file=split_file)
    files = json.loads(split_file.read_text())["meta"]["image_files"]
    assert files == sum(1 for p in data.rglob("*") if p.suffix in {".jpg", ".png"})
    with caplog.at_level("WARNING", logger="dcl_cstp_ext.data.splits"):
        build_kvasir_seg_datalist(data, split_file=split_file)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]  # nothing changed: silent
        for i in range(10):  # 10 more image / mask pairs: 20 files
            for sub in ("images", "masks"):
                src = next((data / "Kvasir-SEG" / sub).iterdir())
                shutil.copy(src, src.with_name(f"new_{i}{src.suffix}"))
        assert build_kvasir_seg_datalist(data, split_file=split_file) == first
    n = sum(len(first[k]) for k in ("training", "validation", "test"))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{data / 'Kvasir-SEG'} holds {files + 20} image files now and held {files} when the split file {split_file} was written: "
        f"reusing that split ({n} items), so the 20 more files are not taken into account. To split afresh, delete "
        "the split file or give another split_file (a pipeline run: a new --out)."
    ]


def test_write_and_read_datalist_roundtrip(tmp_path):
    dl = {"training": [{"image": str(tmp_path / "a.png"), "label": 1}], "class_names": ["x", "y"]}
    write_datalist(tmp_path / "dl.json", dl, base_dir=tmp_path)
    assert json.loads((tmp_path / "dl.json").read_text())["training"][0]["image"] == "a.png"
    assert read_datalist(tmp_path / "dl.json") == dl


def test_pediatric_two_and_three_classes(tmp_path):
    _chest_xray(tmp_path)
    two = build_pediatric_cxr_datalist(tmp_path, seed=0, num_classes=2, val_fraction=0.25)
    assert two["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert len(two["test"]) == 13 and all("/test/" in it["image"] for it in two["test"])
    assert len(two["training"]) + len(two["validation"]) == 13
    assert Counter(it["label"] for it in two["training"] + two["validation"]) == {0: 5, 1: 8}
    three = build_pediatric_cxr_datalist(tmp_path / "chest_xray", num_classes=3)
    assert three["class_names"] == ["normal", "bacterial", "viral"]
    for it in three["training"] + three["validation"] + three["test"]:
        name = Path(it["image"]).name
        assert it["label"] == (1 if "bacteria" in name else 2 if "virus" in name else 0)
    with pytest.raises(DataError, match="class names"):
        split_file = tmp_path / "cxr.json"
        build_pediatric_cxr_datalist(tmp_path, num_classes=2, split_file=split_file)
        build_pediatric_cxr_datalist(tmp_path, num_classes=3, split_file=split_file)


def test_pediatric_train_only_and_official_val(tmp_path):
    base = _chest_xray(tmp_path, parts=("train", "val"))
    merged = build_pediatric_cxr_datalist(base, val_fraction=0.2, test_fraction=0.1)
    assert sum(len(merged[k]) for k in ("training", "validation", "test")) == 26 and merged["test"]
    official = build_pediatric_cxr_datalist(base, use_official_val=True)
    assert len(official["validation"]) == 13 and all("/val/" in p for p in _images(official, "validation"))


def test_isic_official_parts_and_ignored_files(demo, tmp_path):
    root = tmp_path / "isic"
    shutil.copytree(demo["isic2018"], root)
    (root / "ISIC2018_Task1_Training_GroundTruth" / "LICENSE.txt").write_text("x")
    Image.new("L", (32, 24)).save(root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000_superpixels.png")
    assert [len(v) for v in build_isic2018_datalist(root).values()] == [8, 2, 0]
    val_in, val_gt = root / "ISIC2018_Task1-2_Validation_Input", root / "ISIC2018_Task1_Validation_GroundTruth"
    val_in.mkdir(), val_gt.mkdir()
    for i in (100, 101, 102):
        Image.new("RGB", (32, 24)).save(val_in / f"ISIC_{i:07d}.jpg")
        Image.new("L", (32, 24)).save(val_gt / f"ISIC_{i:07d}_segmentation.png")
    dl = build_isic2018_datalist(root)
    assert (len(dl["training"]), len(dl["validation"]), len(dl["test"])) == (10, 3, 0)
    assert all(it["label"].endswith("_segmentation.png") for it in dl["training"])
    as_test = build_isic2018_datalist(root, official_val_as_test=True)
    assert (len(as_test["training"]), len(as_test["validation"]), len(as_test["test"])) == (8, 2, 3)


def test_kvasir_official_lists(demo, tmp_path):
    root = tmp_path / "kvasir"
    shutil.copytree(demo["kvasir_seg"], root)
    ids = sorted(p.stem for p in (root / "Kvasir-SEG" / "images").iterdir())
    (root / "train.txt").write_text("\n".join(ids[:6]) + "\n")
    (root / "val.txt").write_text("\n".join(ids[6:8]) + "\n\n")
    dl = build_kvasir_seg_datalist(root)  # unlisted ids[8:] form the test split
    stems = {k: [Path(p).stem for p in _images(dl, k)] for k in ("training", "validation", "test")}
    assert stems == {"training": ids[:6], "validation": ids[6:8], "test": ids[8:]}
    as_test = build_kvasir_seg_datalist(root, official_val_as_test=True)
    # val.txt becomes the test split; the unlisted ids[8:] are then listed nowhere useful and ignored
    assert [len(as_test[k]) for k in ("training", "validation", "test")] == [5, 1, 2]
    (root / "Kvasir-SEG" / "test.txt").write_text(ids[9] + ".jpg\n")
    (root / "Kvasir-SEG" / "train.txt").write_text("\n".join(ids[:8]))
    inside = build_kvasir_seg_datalist(root)  # lists inside Kvasir-SEG win over those beside it
    assert [Path(p).stem for p in _images(inside, "test")] == [ids[9]] and len(inside["validation"]) == 2


def test_folder_and_pretrain_union(demo, tmp_path):
    synth = tmp_path / "synth"
    for i in range(30):
        _jpeg(synth / f"batch{i % 3}" / f"s{i:03d}.png", value=i)
    (synth / "notes.txt").write_text("not an image")
    folder = build_folder_datalist(synth)
    assert len(folder["training"]) == 30 and set(folder["training"][0]) == {"image"}
    real = build_kvasir_seg_datalist(demo["kvasir_seg"])  # 8 training images
    for ratio, n_syn in ((0.0, 0), (0.5, 4), (1.0, 8), (10.0, 30)):
        items = build_pretrain_datalist(real, synth, ratio=ratio, seed=0)
        assert Counter(it["source"] for it in items) == Counter({"real": 8, "synthetic": n_syn})
        assert all(set(it) == {"image", "source"} for it in items)
    a = build_pretrain_datalist(real["training"], folder["training"], ratio=0.5, seed=1)
    assert a == build_pretrain_datalist(real["training"], folder["training"][::-1], ratio=0.5, seed=1)
    assert a != build_pretrain_datalist(real["training"], folder["training"], ratio=0.5, seed=2)
    only = build_pretrain_datalist(real, synth, synthetic_only=True)
    assert len(only) == 30 and {it["source"] for it in only} == {"synthetic"}


def test_detect_and_dispatch(demo, tmp_path):
    _chest_xray(tmp_path / "cxr")
    expected = {
        demo["covid_radiography"]: "covid_radiography",
        demo["isic2018"]: "isic2018",
        demo["kvasir_seg"]: "kvasir_seg",
        demo["kvasir_seg"] / "Kvasir-SEG": "kvasir_seg",
        tmp_path / "cxr": "pediatric_cxr",
        demo["covid_radiography"] / "COVID-19_Radiography_Dataset" / "Normal" / "images": "folder",
    }
    for path, name in expected.items():
        assert detect_dataset(path) == name
    auto = build_datalist("auto", demo["kvasir_seg"], seed=2)
    assert auto == build_datalist("kvasir_seg", demo["kvasir_seg"], seed=2)
    assert build_datalist("pediatric_cxr", tmp_path / "cxr", num_classes=3)["class_names"][2] == "viral"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known data set layout"):
        detect_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_datalist("mnist", tmp_path)
    assert len(build_datalist("folder", demo["isic2018"], val_fraction=0.5)["validation"]) == 10  # 10 images + 10 masks


def test_subsample_labels_is_stratified_seeded_and_leaves_evaluation_alone():
    from dcl_cstp_ext.data import subsample_labels

    train = [{"image": f"/x/{c}_{i}.png", "label": c} for c in range(3) for i in range(20 if c else 5)]
    dl = {"training": train, "validation": [{"image": "/v.png", "label": 0}], "test": []}
    a = subsample_labels(dl, 0.1, seed=1)
    b = subsample_labels(dl, 0.1, seed=1)
    assert a["training"] == b["training"] and a["validation"] == dl["validation"]
    counts = [sum(it["label"] == c for it in a["training"]) for c in range(3)]
    assert counts == [1, 2, 2]  # 10% of 5 rounds to 0 -> one kept; 10% of 20 = 2
    assert subsample_labels(dl, 0.1, seed=2)["training"] != a["training"]
    assert subsample_labels(dl, 1.0)["training"] == train
    seg = {"training": [{"image": f"/s/{i}.png", "label": f"/s/{i}_m.png"} for i in range(10)]}
    assert len(subsample_labels(seg, 0.3)["training"]) == 3
    import pytest

    with pytest.raises(ValueError):
        subsample_labels(dl, 0.0)


def test_suspicious_or_ambiguous_layouts_are_refused_naming_what_was_found(demo, tmp_path):
    """Issue #23: a Kvasir copy under another top folder name is still Kvasir (not a plain folder that trains on
    the masks); a folder of images with masks among them, and a root holding two data sets, are refused."""
    renamed = tmp_path / "renamed"
    shutil.copytree(demo["kvasir_seg"] / "Kvasir-SEG", renamed / "MyPolyps")
    assert detect_dataset(renamed) == "kvasir_seg"
    assert len(build_datalist("auto", renamed)["training"]) > 0

    shutil.copytree(demo["kvasir_seg"] / "Kvasir-SEG", renamed / "MorePolyps")
    with pytest.raises(DataError, match="several folders hold images/ and masks/ .*MorePolyps.*MyPolyps"):
        detect_dataset(renamed)

    loose = tmp_path / "loose"
    shutil.copytree(demo["kvasir_seg"] / "Kvasir-SEG" / "images", loose / "pictures")
    shutil.copytree(demo["kvasir_seg"] / "Kvasir-SEG" / "masks", loose / "extra" / "masks")
    with pytest.raises(DataError, match=r"images look like masks \(e\.g\. .*extra/masks/"):
        detect_dataset(loose)
    shutil.rmtree(loose / "extra")
    assert detect_dataset(loose) == "folder"

    both = tmp_path / "both"
    shutil.copytree(demo["kvasir_seg"], both / "kvasir")
    shutil.copytree(demo["isic2018"], both / "isic")
    with pytest.raises(DataError, match="holds several data sets .isic2018 at .*; kvasir_seg at .*point dataset_dir"):
        detect_dataset(both)
    assert detect_dataset(demo["covid_radiography"]) == "covid_radiography"  # its class folders hold images/ + masks/
