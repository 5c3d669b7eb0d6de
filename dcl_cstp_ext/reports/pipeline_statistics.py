"""The report's first tables: every initialisation against random init and against DCL-CsTP, paired by seed.

A pair is one fine-tuning seed of both initialisations at one label fraction (the same labelled subset, split and
seed; only the initialisation differs). Each comparison is :func:`~dcl_cstp_ext.metrics.paired_by_key` over the
seeds both have; percentages are shown in points. Written to ``statistics.json`` beside the report.

The protocol (issue #21; METHOD.md, "Comparing initialisations") asks :data:`MIN_SEEDS` paired seeds per cell and
:data:`CLOSE_SEEDS` where two cells are within :data:`CLOSE_POINTS` points of each other; each comparison of a
percentage metric carries ``seeds_asked``, and the tables say where a comparison has fewer pairs than that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..metrics import paired_by_key
from .pipeline_results import METRICS, init_order

__all__ = ["REFERENCES", "LOWER_IS_BETTER", "MIN_SEEDS", "CLOSE_SEEDS", "CLOSE_POINTS", "seeds_asked",
           "paired_statistics", "statistics_tables", "write_statistics"]

#: the initialisations every other one is compared with
REFERENCES = ("random", "dcl_cstp")
#: metrics where a smaller value is better (distances)
LOWER_IS_BETTER = ("hd", "hd95")
#: paired seeds the protocol asks per cell; more where two cells are closer than ``CLOSE_POINTS`` points
MIN_SEEDS, CLOSE_SEEDS, CLOSE_POINTS = 3, 5, 1.0


def seeds_asked(mean_difference: float) -> int:
    """Paired seeds the protocol asks for a comparison whose mean difference is ``mean_difference`` points:
    :data:`CLOSE_SEEDS` when ``|mean_difference| < CLOSE_POINTS``, else :data:`MIN_SEEDS`."""
    return CLOSE_SEEDS if abs(mean_difference) < CLOSE_POINTS else MIN_SEEDS


def _scale(values: dict[str, float], percent: bool) -> dict[str, float]:
    """Fractions in [0, 1] as points (x100) where the metric is a percentage, as the results tables show them."""
    if percent and values and max(abs(v) for v in values.values()) <= 1.0:
        return {k: 100.0 * v for k, v in values.items()}
    return dict(values)


def paired_statistics(results_by_seed: dict, kind: str, level: float = 0.95) -> list[dict]:
    """Every ``(fraction, reference, init, metric)`` comparison that has at least one pair, as dicts with the
    :class:`~dcl_cstp_ext.metrics.PairedComparison` fields, in table order. ``results_by_seed`` is
    :func:`~dcl_cstp_ext.reports.pipeline_results.collect_by_seed`'s ``{init: {fraction: {metric: {seed: v}}}}``."""
    out = []
    fractions = sorted({f for per in results_by_seed.values() for f in per}, key=float, reverse=True)
    for fraction in fractions:
        for reference in REFERENCES:
            ref = results_by_seed.get(reference, {}).get(fraction)
            if not ref:
                continue
            for init in sorted(results_by_seed, key=init_order):
                row = results_by_seed[init].get(fraction)
                if init == reference or not row:
                    continue
                for name, _, percent in METRICS[kind]:
                    if name not in row or name not in ref:
                        continue
                    c = paired_by_key(_scale(row[name], percent), _scale(ref[name], percent), level)
                    if c is not None:
                        better = c.verdict(higher_is_better=name not in LOWER_IS_BETTER)
                        out.append({"fraction": fraction, "reference": reference, "init": init, "metric": name,
                                    "verdict": better, **c.as_dict(),
                                    "seeds_asked": seeds_asked(c.mean) if percent else None})
    return out


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def _cell(s: dict) -> str:
    """``+1.23 [-0.50, +2.96]``, bold where the interval is clear of 0; the mean alone with one pair."""
    if s["n"] < 2:
        return f"{_signed(s['mean'])} (1 pair)"
    text = f"{_signed(s['mean'])} [{_signed(s['low'])}, {_signed(s['high'])}]"
    return text if s["within_noise"] else f"**{text}**"


def _verdict(s: dict) -> str:
    """The verdict, with the seeds still to run where the comparison has fewer pairs than the protocol asks."""
    asked = s.get("seeds_asked")
    if asked is None or s["n"] >= asked:
        return s["verdict"]
    why = f", within {CLOSE_POINTS:g} point" if asked == CLOSE_SEEDS else ""
    return f"{s['verdict']} ({s['n']} of {asked} seeds{why})"


def statistics_tables(stats: list[dict], kind: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` per label fraction and reference: the first metric with its per-seed differences,
    tests and verdict, then the other metrics' mean differences with their intervals."""
    names = [m[0] for m in METRICS[kind]]
    tables = []
    for fraction in dict.fromkeys(s["fraction"] for s in stats):
        for reference in REFERENCES:
            rows_here = [s for s in stats if s["fraction"] == fraction and s["reference"] == reference]
            if not rows_here:
                continue
            metrics = [n for n in names if any(s["metric"] == n for s in rows_here)]
            main, others = metrics[0], metrics[1:]
            header = ["initialisation", "pairs", f"{main}: difference per seed", f"{main}: mean [95% CI]",
                      "paired t p", "Wilcoxon p", "verdict", *(f"{m}: mean [95% CI]" for m in others)]
            rows = []
            for init in dict.fromkeys(s["init"] for s in rows_here):
                by_metric = {s["metric"]: s for s in rows_here if s["init"] == init}
                m = by_metric.get(main)
                if m is None:
                    continue
                rows.append([init, str(m["n"]), ", ".join(f"{d:+.2f}" for d in m["differences"]), _cell(m),
                             "n/a" if math.isnan(m["t_p"]) else f"{m['t_p']:.3g}", f"{m['wilcoxon_p']:.3g}",
                             _verdict(m), *(_cell(by_metric[o]) if o in by_metric else "-" for o in others)])
            title = f"{float(fraction):.0%} of the labels: each initialisation minus {reference}"
            tables.append((title, header, rows))
    return tables


def write_statistics(run: Path, stats: list[dict]) -> Path:
    """``statistics.json`` in the run folder: every comparison of :func:`paired_statistics` (``null`` where a value
    needs more pairs)."""
    path = Path(run) / "statistics.json"
    clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in s.items()} for s in stats]
    path.write_text(json.dumps({"references": list(REFERENCES), "comparisons": clean}, indent=2))
    return path
