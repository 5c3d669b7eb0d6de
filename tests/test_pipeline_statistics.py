"""The report's paired statistics: pairing by seed, points, direction of distances, the tables and the JSON."""

import json

import pytest

from dcl_cstp_ext.reports.pipeline_statistics import paired_statistics, seeds_asked, statistics_tables, write_statistics


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
    # simclr - random is +0.33 points: within 1 point, so the protocol asks 5 seeds where 3 ran
    assert not simclr[3].startswith("**") and simclr[6] == "within noise (3 of 5 seeds, within 1 point)"
    assert simclr[-1] == "-"  # no hd95 run
    saved = json.loads(write_statistics(tmp_path, stats).read_text())
    assert saved["references"] == ["random", "dcl_cstp"] and len(saved["comparisons"]) == len(stats)


def test_one_pair_has_no_interval_and_is_never_called_a_difference(tmp_path):
    stats = paired_statistics({"random": {"1": {"dice": {"0": 0.5}}}, "dcl_cstp": {"1": {"dice": {"0": 0.9}}}},
                              "segmentation")
    (row,) = statistics_tables(stats, "segmentation")[0][2]
    assert row[3] == "+40.00 (1 pair)" and row[4] == "n/a" and row[6] == "within noise (1 of 3 seeds)"
    saved = json.loads(write_statistics(tmp_path, stats).read_text())  # strict JSON: no NaN
    assert saved["comparisons"][0]["low"] is None


def test_the_seeds_the_protocol_asks_follow_the_gap_between_the_two_cells():
    assert [seeds_asked(d) for d in (0.0, 0.99, -0.99, 1.0, -1.5, 10.0)] == [5, 5, 5, 3, 3, 3]
    stats = paired_statistics(_results(), "segmentation")
    get = {(s["reference"], s["init"], s["metric"]): s for s in stats}
    assert get[("random", "dcl_cstp", "dice")]["seeds_asked"] == 3  # 10 points apart
    assert get[("random", "simclr", "dice")]["seeds_asked"] == 5  # 0.33 points apart
    assert get[("random", "dcl_cstp", "hd95")]["seeds_asked"] is None  # pixels: the 1-point rule is about points
    rows = statistics_tables(stats, "segmentation")[0][2]
    assert next(r for r in rows if r[0] == "dcl_cstp")[6] == "better"  # 3 pairs are what it asks: nothing added
