"""Built-in demo data: deterministic bytes, official layouts read back by the readers; loading benchmark."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcl_cstp_ext.data import build_datalist, detect_dataset, make_demo_data
from dcl_cstp_ext.data.bench_loading import bench_loading

SMALL = {"n_cls_per_class": 4, "n_seg": 5, "size": 48}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    make_demo_data(tmp_path / "a", seed=7, **SMALL)
    make_demo_data(tmp_path / "b", seed=7, **SMALL)
    make_demo_data(tmp_path / "c", seed=8, **SMALL)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b and len(a) == 4 * 4 + 2 * 5 * 2 + 2  # images, pairs, ATTRIBUTION.txt and the marker
    images = [k for k in a if k.endswith((".png", ".jpg"))]
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in images)


def test_layouts_are_read_back(tmp_path):
    roots = make_demo_data(tmp_path, seed=0, n_cls_per_class=5, n_seg=10, size=64)
    assert {k: detect_dataset(v) for k, v in roots.items()} == {k: k for k in roots}
    covid = build_datalist("covid_radiography", roots["covid_radiography"])
    assert Counter(it["class_name"] for it in covid["training"] + covid["validation"]) == dict.fromkeys(
        covid["class_names"], 5
    )
    grey = Image.open(covid["training"][0]["image"])
    assert grey.mode == "L" and grey.size == (64, 64)
    isic = build_datalist("isic2018", roots["isic2018"])
    kvasir = build_datalist("kvasir_seg", roots["kvasir_seg"])
    for dl in (isic, kvasir):
        assert len(dl["training"]) + len(dl["validation"]) == 10
    item = isic["training"][0]
    assert Image.open(item["image"]).size == (64, 48) and Image.open(item["image"]).mode == "RGB"
    assert set(np.unique(np.asarray(Image.open(item["label"])))) <= {0, 255}
    widths = {Image.open(it["image"]).size[0] for it in kvasir["training"] + kvasir["validation"]}
    assert len(widths) > 3 and min(widths) >= 60 and max(widths) <= 80  # varied sizes, 0.94-1.25 x size
    masks = [np.asarray(Image.open(it["label"]).convert("L")) for it in kvasir["training"]]
    assert all(0.005 < (m >= 128).mean() < 0.6 for m in masks)  # a polyp in every image


def test_rerun_replaces_demo_but_never_foreign_folders(tmp_path):
    make_demo_data(tmp_path / "d", seed=0, **SMALL)
    make_demo_data(tmp_path / "d", seed=0, n_cls_per_class=2, n_seg=3, size=32)
    assert len(list((tmp_path / "d").rglob("*.png"))) == 4 * 2 + 3
    (tmp_path / "x" / "isic2018").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        make_demo_data(tmp_path / "x", **SMALL)


def test_bench_loading_smoke(tmp_path):
    roots = make_demo_data(tmp_path, seed=0, **SMALL)
    res = bench_loading(roots["kvasir_seg"], image_size=32, epochs=3, batch_size=2, num_workers=0)
    assert res["dataset"] == "kvasir_seg" and res["n_items"] == 5 and res["n_batches"] == 3
    assert res["decode_s_per_batch"] > 0 and res["cached_s_per_batch"] > 0 and res["cache_mb"] > 0


def test_bench_loading_command_line_writes_json(tmp_path, capsys):
    from dcl_cstp_ext.data.bench_loading import main

    roots = make_demo_data(tmp_path, seed=0, **SMALL)
    out = tmp_path / "res" / "loading.json"
    main([str(roots["kvasir_seg"]), "--image-size", "32", "--epochs", "2", "--batch-size", "2", "--num-workers", "0",
          "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["n_items"] == 5 and res["environment"]["packages"]["torch"] and "wrote" in capsys.readouterr().out
