"""The bundles' numbers do not move when the code is reorganised: a few iterations of every training workflow and
the evaluations on the built-in data give the losses and metrics recorded before (``tests/golden/tiny_runs.json``,
recorded at commit 493f177, the layout before issue "One house"; ``tests/golden_runs.py`` says how to re-record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden_runs import tiny_runs

GOLDEN = Path(__file__).parent / "golden" / "tiny_runs.json"


def test_tiny_runs_match_the_recorded_numbers(tmp_path, demo_data):
    expected = json.loads(GOLDEN.read_text())
    got = tiny_runs(demo_data, tmp_path)
    assert sorted(got) == sorted(expected)
    for run, values in expected.items():
        assert sorted(got[run]) == sorted(values), run
        for key, value in values.items():
            assert got[run][key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"{run}: {key}"
