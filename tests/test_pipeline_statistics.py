"""The report's paired statistics: pairing by seed, points, direction of distances, the tables and the JSON."""

import json

import pytest

from dcl_cstp_ext.reports.pipeline_statistics import paired_statistics, statistics_tables, write_statistics


def _results():
    # Dice as fractions (shown in points), HD95 in pixels; seed 3 of dcl_cstp has no random partner
    return {
        "random": {"0.1": {"dice": {"0": 0.50, "1": 0.52, "2": 0.51}, "hd95": {"0": 30.0, "1": 31.0, "2": 29.0}}},
        "dcl_cstp": {"0.1": {"dice": {"0": 0.60, "1": 0.61, "2": 0.62, "3": 0.2},
                             "hd95": {"0": 20.0, "1": 22.0, "2": 21.0}}},
        "simclr": {"0.1": {"dice": {"0": 0.51, "1": 0.50, "2": 0.53}}, "1": {"dice": {"0": 0.8}}},
    }


def test_paired_by_seed_in_points_with_the_direction_of_each_metric():
    stats = paired_statistics(_results(), "segmentation")
    get = {(s["reference"], s["init"], s["metric"]): s for s in stats}
    dcl = get[("random", "dcl_cstp", "dice")]
    assert dcl["n"] == 3 and dcl["differences"] == pytest.approx([10.0, 9.0, 11.0])  # seed 3 unpaired, left out
    assert dcl["verdict"] == "better" and dcl["low"] > 0
    hd = get[("random", "dcl_cstp", "hd95")]
    assert hd["mean"] == pytest.approx(-9.0) and hd["verdict"] == "better"  # a smaller distance is better
    assert get[("random", "simclr", "dice")]["verdict"] == "within noise"
    assert get[("dcl_cstp", "simclr", "dice")]["verdict"] == "worse"
    assert get[("dcl_cstp", "random", "dice")]["mean"] == pytest.approx(-10.0)
    assert not any(s["fraction"] == "1" for s in stats)  # 100%: no reference ran there, nothing to pair


def test_tables_mark_what_is_clear_of_its_noise(tmp_path):
    stats = paired_statistics(_results(), "segmentation")
    tables = statistics_tables(stats, "segmentation")
    titles = [t[0] for t in tables]
    assert titles == ["10% of the labels: each initialisation minus random",
                      "10% of the labels: each initialisation minus dcl_cstp"]
    title, header, rows = tables[0]
    assert header[:7] == ["initialisation", "pairs", "dice: difference per seed", "dice: mean [95% CI]",
                          "paired t p", "Wilcoxon p", "verdict"]
    dcl = next(r for r in rows if r[0] == "dcl_cstp")
    assert dcl[1] == "3" and dcl[2] == "+10.00, +9.00, +11.00" and dcl[3].startswith("**+10.00 [")
    assert dcl[6] == "better" and dcl[5] == "0.25"  # three pairs: the signed-rank test cannot go below 0.25
    simclr = next(r for r in rows if r[0] == "simclr")
    assert not simclr[3].startswith("**") and simclr[6] == "within noise" and simclr[-1] == "-"  # no hd95 run
    saved = json.loads(write_statistics(tmp_path, stats).read_text())
    assert saved["references"] == ["random", "dcl_cstp"] and len(saved["comparisons"]) == len(stats)


def test_one_pair_has_no_interval_and_is_never_called_a_difference(tmp_path):
    stats = paired_statistics({"random": {"1": {"dice": {"0": 0.5}}}, "dcl_cstp": {"1": {"dice": {"0": 0.9}}}},
                              "segmentation")
    (row,) = statistics_tables(stats, "segmentation")[0][2]
    assert row[3] == "+40.00 (1 pair)" and row[4] == "n/a" and row[6] == "within noise"
    saved = json.loads(write_statistics(tmp_path, stats).read_text())  # strict JSON: no NaN
    assert saved["comparisons"][0]["low"] is None
