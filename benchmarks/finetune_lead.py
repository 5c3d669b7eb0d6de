"""How far ahead of random init each pre-trained start is along the fine-tuning, and whether random init catches up.

Reads a ``dcl-cstp pipeline`` run folder: every finished fine-tuning's per-epoch validation metric
(``RUN/finetune/<init>/lf<fraction>/seed<seed>/train/val_metrics.jsonl``, the metric that picks the best epoch).
For each initialisation and label fraction, the lead over random init averaged over each quarter of the schedule
(a single epoch's validation score of a run from random init swings by 10-20 points early on), and at the last
epoch, paired by seed: mean difference in points with its 95% t interval (``dcl_cstp_ext.metrics.paired``). The figure of the same curves is the report's ``figures/finetune_curves.png``.

    python benchmarks/finetune_lead.py RUN --json-path benchmarks/results/finetune_lead_kvasir10.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import fire

from dcl_cstp_ext.metrics.paired import paired_by_key
from dcl_cstp_ext.reports.pipeline_results import finetune_curves, first_validation_metric

QUARTERS = (0.25, 0.5, 0.75, 1.0)


def _span_means(curve: dict, start: int, end: int) -> dict[str, float]:
    """Seed -> the curve's mean over epochs ``start``..``end - 1`` (0-based), in points."""
    return {seed: 100 * float(values[start:end].mean()) for seed, values in zip(curve["seeds"], curve["values"])}


def lead_table(run: str | Path, metric: str | None = None) -> dict:
    """``{"metric", "rows": [{init, fraction, seeds, epochs, leads: [{first, last, mean, low, high, differences}]}]}``:
    each initialisation minus random init, in points, averaged over epochs ``first``-``last`` (each quarter of the
    schedule, then the last epoch alone)."""
    run = Path(run)
    metric = metric or first_validation_metric(run)
    if metric is None:
        raise FileNotFoundError(f"{run}: no finished fine-tuning with a val_metrics.jsonl")
    curves = finetune_curves(run, "val_metrics.jsonl", metric)
    rows = []
    for (init, fraction), own in curves.items():
        ref = curves.get(("random", fraction))
        if init == "random" or ref is None:
            continue
        seeds = [s for s in own["seeds"] if s in ref["seeds"]]
        n_epochs = min(len(own["epochs"]), len(ref["epochs"]))
        if not seeds or not n_epochs:
            continue
        ends = [max(1, round(q * n_epochs)) for q in QUARTERS]
        spans = [(start, end) for start, end in zip([0, *ends[:-1]], ends) if end > start] + [(n_epochs - 1, n_epochs)]
        leads = []
        for start, end in spans:
            c = paired_by_key(_span_means(own, start, end), _span_means(ref, start, end))
            leads.append({"first": int(own["epochs"][start]), "last": int(own["epochs"][end - 1]), "mean": c.mean,
                          "low": c.low, "high": c.high, "differences": list(c.differences)})
        rows.append({"init": init, "fraction": fraction, "seeds": seeds, "epochs": n_epochs, "leads": leads})
    return {"run": str(run), "metric": metric, "rows": rows}


def as_markdown(table: dict) -> str:
    rows = table["rows"]
    if not rows:
        return f"{table['run']}: no initialisation shares a seed with random init"
    head = [f"epochs {lead['first']}-{lead['last']}" for lead in rows[0]["leads"][:-1]]
    head.append(f"last epoch ({rows[0]['leads'][-1]['last']})")
    lines = [f"{table['metric']} minus random init's, points, averaged over each quarter of the fine-tuning and at its "
             "last epoch, paired by seed (mean [95% t interval])", "",
             "| initialisation | label fraction | pairs | " + " | ".join(head) + " |",
             "|" + "---|" * (3 + len(head))]
    for r in rows:
        cells = []
        for lead in r["leads"]:
            bold = lead["low"] > 0 or lead["high"] < 0
            text = f"{lead['mean']:+.1f}" + ("" if math.isnan(lead["low"]) else f" [{lead['low']:+.1f}, {lead['high']:+.1f}]")
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {r['init']} | {r['fraction']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(run: str, metric: str | None = None, json_path: str | None = None) -> None:
    table = lead_table(run, metric)
    print(as_markdown(table))
    if json_path:
        Path(json_path).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    fire.Fire(main)
