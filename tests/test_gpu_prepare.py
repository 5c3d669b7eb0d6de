"""benchmarks/gpu/prepare.py: the GPU check's carried folder (images in the data set's layout, sizes, manifest)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from dcl_cstp_ext.data import build_datalist


def _prepare_module():
    spec = importlib.util.spec_from_file_location("gpu_prepare", REPO / "benchmarks" / "gpu" / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prepare_writes_resized_kvasir_in_its_layout_and_stays_in_budget(tmp_path, demo_data, capsys):
    prep = _prepare_module()
    out = tmp_path / "carry"
    manifest = prep.prepare(str(demo_data["kvasir_seg"]), str(out), image_size=64, wheels=False, limit=6)
    assert manifest["kvasir_pairs"] == 6 and manifest["bytes"]["total"] > 0
    assert json.loads((out / "manifest.json").read_text())["packages"]["monai"]
    images = sorted((out / "kvasir-seg" / "Kvasir-SEG" / "images").glob("*.jpg"))
    assert len(images) == 6 and Image.open(images[0]).size == (64, 64)
    mask = np.asarray(Image.open(out / "kvasir-seg" / "Kvasir-SEG" / "masks" / images[0].name).convert("L"))
    assert set(np.unique(mask >= 128)) <= {False, True} and (mask >= 128).any()
    dl = build_datalist("auto", out / "kvasir-seg", seed=0)  # the project reads it as Kvasir-SEG
    assert len(dl["training"]) + len(dl["validation"]) + len(dl.get("test", [])) == 6
    assert "total" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="budget"):
        prep.prepare(str(demo_data["kvasir_seg"]), str(out), image_size=64, wheels=False, limit=6, budget_mib=1e-4)
