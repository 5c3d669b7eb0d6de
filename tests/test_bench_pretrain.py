"""``dcl-cstp bench pretrain``: per-method step times in their own processes, and the paired ratio to SimSiam."""

from __future__ import annotations

import json

import pytest


def test_paired_ratio_and_report(tmp_path):
    from dcl_cstp_ext.bench.pretrain import bench_pretrain

    path = tmp_path / "bench.json"
    rep = bench_pretrain(methods="dcl_cstp,simsiam", backbone="resnet18", image_size=96, batch_size=4, steps=1,
                         warmup=0, queue_size=16, bn_splits=2, threads=1, head_dim=32, paired_rounds=3,
                         json_path=str(path))
    assert json.loads(path.read_text()) == json.loads(json.dumps(rep))
    assert rep["settings"]["head_dim"] == 32 and rep["settings"]["paired_rounds"] == 3
    by_method = {r["method"]: r for r in rep["results"]}
    assert by_method["simsiam"]["step_time_vs_simsiam_paired"] == {"median": 1.0, "q1": 1.0, "q3": 1.0, "rounds": 3}
    paired = by_method["dcl_cstp"]["step_time_vs_simsiam_paired"]
    assert 0 < paired["q1"] <= paired["median"] <= paired["q3"] and paired["rounds"] == 3
    assert by_method["dcl_cstp"]["step_time_vs_simsiam"] > 0


def test_a_failing_method_is_named_not_hung():
    from dcl_cstp_ext.bench.pretrain import bench_pretrain

    with pytest.raises(RuntimeError, match="benchmark of nope failed: .*unknown method 'nope'"):
        bench_pretrain(methods="nope", image_size=32, batch_size=2, steps=1, warmup=0, threads=1)
