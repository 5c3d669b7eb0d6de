"""benchmarks/finetune_lead.py: each initialisation's lead over random init along the fine-tuning, paired by seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from finetune_lead import as_markdown, lead_table  # noqa: E402


def _write(run: Path, init: str, seed: int, dice: list[float]) -> None:
    train = run / "finetune" / init / "lf0.1" / f"seed{seed}" / "train"
    train.mkdir(parents=True)
    rows = [{"epoch": e + 1, "val_mean_dice": d, "val_mean_iou": d / 2} for e, d in enumerate(dice)]
    (train / "val_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (train / "DONE.json").write_text("{}")


def test_the_lead_is_averaged_per_quarter_and_paired_by_seed(tmp_path):
    _write(tmp_path, "random", 0, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    _write(tmp_path, "random", 1, [0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6])
    _write(tmp_path, "dcl_cstp", 0, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.8, 0.8])
    _write(tmp_path, "dcl_cstp", 1, [0.4, 0.4, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6])
    table = lead_table(tmp_path)
    assert table["metric"] == "val_mean_dice"  # the first validation metric, the one that picks the best epoch
    (row,) = table["rows"]
    assert (row["init"], row["seeds"], row["epochs"]) == ("dcl_cstp", ["0", "1"], 8)
    spans = [(lead["first"], lead["last"]) for lead in row["leads"]]
    assert spans == [(1, 2), (3, 4), (5, 6), (7, 8), (8, 8)]
    # epochs 1-2: seed 0 leads by (0.5 - 0.15) = 35 points, seed 1 by (0.4 - 0.2) = 20 points
    assert row["leads"][0]["differences"] == pytest.approx([35.0, 20.0])
    assert row["leads"][0]["mean"] == pytest.approx(27.5)
    assert row["leads"][-1]["differences"] == pytest.approx([0.0, 0.0])  # random init caught up
    # 2 pairs: sd of the differences 10.61, t(0.975, 1 df) 12.71, half-width 12.71 * 10.61 / sqrt(2) = 95.3
    assert "| dcl_cstp | 0.1 | 2 | +27.5 [-67.8, +122.8] |" in as_markdown(table)
    assert lead_table(tmp_path, "val_mean_iou")["rows"][0]["leads"][0]["mean"] == pytest.approx(13.75)


def test_a_run_without_curves_is_refused_with_its_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        lead_table(tmp_path)
