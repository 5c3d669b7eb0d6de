"""``dcl-cstp bench infer``: every downstream bundle's network is exported and timed, and the report is written."""

from __future__ import annotations

import json

import torch

from dcl_cstp_ext.bench.infer import DOWNSTREAM, bench_infer


def test_bench_infer_exports_and_times_each_downstream_bundle(tmp_path):
    threads = torch.get_num_threads()
    try:
        report = bench_infer(preset="cpu", steps=2, warmup=1, threads=1, json_path=str(tmp_path / "infer.json"),
                             overrides={"image_size": 32})
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "infer.json").read_text())
    assert saved["results"] == report["results"]
    assert [r["bundle"] for r in report["results"]] == list(DOWNSTREAM)
    for r in report["results"]:
        assert r["image_size"] == 32 and r["backbone"] == "resnet18"  # the cpu preset's backbone
        assert r["eager_ms"] > 0 and r["torchscript_ms"] > 0 and r["images_per_s_torchscript"] > 0
    channels = {r["bundle"]: r["in_channels"] for r in report["results"]}
    assert channels["kvasir_seg"] == 3 and channels["isic_seg"] == 3
