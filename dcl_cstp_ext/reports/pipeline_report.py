"""The pipeline report: ``report.md`` and a self-contained ``report.html`` (pictures embedded) from a run folder.

Everything shown is read from files the stages wrote; nothing is computed twice except the 2-D embedding of
real vs synthetic features (the paper's Fig. 6), made here from the DCL-CsTP encoder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..metrics.paired import signed_rank_floor
from ..pipeline.presets import task_spec
from .curation import curation_document
from .document import Document
from .pipeline_figures import plot_embedding, plot_finetune_curves, plot_pretrain_curves
from .pipeline_results import (
    METRICS,
    PAPER_RESULTS,
    RECIPE_KEYS,
    collect_by_seed,
    collect_results,
    evaluated_splits_sentence,
    finetune_recipes,
    finished_runs,
    format_values,
    init_order,
    stage_times,
)
from .pipeline_statistics import (
    CLOSE_POINTS,
    CLOSE_SEEDS,
    MIN_SEEDS,
    paired_statistics,
    statistics_tables,
    write_statistics,
)

__all__ = ["write_report"]

logger = logging.getLogger("dcl_cstp.pipeline")


def _first(run: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(run.glob(pattern))
        if found:
            return found[-1]
    return None


def _curation_section(folder: Path) -> Document:
    """The curation report (``curation.json``) as blocks; its headings start at level 1."""
    summary = json.loads((folder / "curation.json").read_text())
    try:
        return curation_document(summary, summary.get("pictures", {}), folder)
    except (KeyError, TypeError) as e:  # a summary of another version of curation
        doc = Document(folder)
        doc.heading(1, "Curation")
        doc.paragraph(f"`{folder / 'curation.json'}` could not be read as a curation summary ({e!r}); see "
                      f"`{folder / 'curation.md'}`.")
        return doc


def _statistics_section(doc: Document, run: Path, kind: str) -> None:
    """The paired comparisons first: each initialisation minus random init and minus DCL-CsTP, per seed."""
    stats = paired_statistics(collect_by_seed(run, kind), kind)
    doc.heading(2, "What pre-training changed: paired comparisons over seeds")
    if not stats:
        doc.paragraph("No comparison yet: it needs random init or DCL-CsTP and another initialisation fine-tuned "
                      "with the same seed and label fraction.")
        return
    write_statistics(run, stats)
    pairs = sorted({s["n"] for s in stats})
    floors = ", ".join(f"{signed_rank_floor(n):.3g} with {n} pair{'s' if n != 1 else ''}" for n in pairs)
    doc.paragraph(
        "A pair is one fine-tuning seed of both initialisations (the same labelled images, split and seed). Each cell "
        "is the mean of the per-seed differences in points (distances in pixels; lower is better for them) with its "
        "95% Student-t interval; **bold**: the interval is clear of 0, otherwise the difference is within the seed "
        "noise. Paired t-test and Wilcoxon signed-rank test, two-sided (the signed-rank p cannot go below "
        f"{floors}, all differences of one sign). Each pre-training ran once, so its own seed noise is not in these "
        f"intervals. The protocol asks {MIN_SEEDS} paired seeds per comparison, "
        f"{CLOSE_SEEDS} where the two are within {CLOSE_POINTS:g} point; a verdict says \"k of n seeds\" where fewer "
        "ran. All comparisons: `statistics.json`.")
    for title, header, rows in statistics_tables(stats, kind):
        doc.heading(3, title)
        doc.table(header, rows)


def _interval(cmp: dict | None) -> str:
    """``+1.7 [+0.8, +2.7]``, bold where the interval is clear of 0."""
    if not cmp:
        return ""
    text = f"{cmp['difference']:+.1f} [{cmp['low']:+.1f}, {cmp['high']:+.1f}]"
    return f"**{text}**" if cmp["low"] > 0 or cmp["high"] < 0 else text


def _frozen_section(doc: Document, run: Path) -> None:
    """The frozen-encoder probe (``probe/<init>/probe.json``): what each encoder knows before fine-tuning."""
    probes = {p.parent.name: json.loads(p.read_text()) for p in run.glob("probe/*/probe.json")}
    if not probes:
        return
    doc.heading(2, "Frozen features: what each encoder knows before fine-tuning")
    first = probes.get("random") or next(iter(probes.values()))
    scores = [k for k in ("knn_accuracy", "linear_accuracy", "dense_dice") if k in first]
    titles = {"knn_accuracy": "k-NN %", "linear_accuracy": "linear %", "dense_dice": "dense Dice %"}
    doc.paragraph(
        f"Every labelled image of the split ({first['images']}) is a query once over {first['folds']} folds; the "
        f"frozen {first['backbone']} at {first['image_size']} px predicts the {first['labels']} (majority class "
        f"{first['majority_class_accuracy']:.1f}%) by a k-NN vote and a linear probe of its pooled feature"
        + (" and the mask by a dense linear probe of its C3-C5 maps" if "dense_dice" in first else "")
        + ". Each encoder minus the random one on the same images: mean difference in points with a paired bootstrap "
        "95% interval, **bold** where it is clear of 0 (METHOD.md, \"Measuring feature quality without fine-tuning\").")
    header = ["initialisation"] + [c for k in scores for c in (titles[k], "vs random")]
    rows = [[init] + [c for k in scores for c in (f"{p[k]:.1f}", _interval(p.get(f"{k}_vs_random")))]
            for init, p in sorted(probes.items(), key=lambda kv: init_order(kv[0]))]
    doc.table(header, rows)


def write_report(run: str | Path) -> Path:
    """Write ``report.md`` and ``report.html`` for the pipeline run in ``run``; returns the Markdown path."""
    run = Path(run)
    cfg = json.loads((run / "pipeline.json").read_text())
    task, kind = cfg["task"], task_spec(cfg["task"])["kind"]
    fig_dir = run / "figures"
    fig_dir.mkdir(exist_ok=True)
    info = json.loads((run / "run_info.json").read_text())[-1] if (run / "run_info.json").is_file() else {}
    doc = Document(run)

    doc.heading(1, f"DCL-CsTP pipeline report: {task}")
    found = finished_runs(run)
    doc.paragraph(f"Preset `{cfg['preset']}`, data `{cfg['data_root']}`. This report reads every finished "
                  f"fine-tuning in this folder, whichever command made it: initialisations "
                  f"{', '.join(found['inits']) or 'none'}; label fractions {', '.join(found['fractions']) or 'none'}; "
                  f"seeds {', '.join(found['seeds']) or 'none'}. The last command asked for initialisations "
                  f"{', '.join(cfg['methods'])}, synthetic ratio {cfg['synthetic_ratio']}, label fractions "
                  f"{cfg['label_fractions']}, seeds {cfg['seeds']}.")
    versions = info.get("packages", {})
    code = info.get("code")
    doc.paragraph("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
                  + (f" (commit {code['commit'][:10]}{', with local changes' if code['dirty'] else ''})" if code else "")
                  + f"; Python {info.get('python', '?')}; {info.get('platform', '?')}; "
                  + (f"GPU {info['cuda']}" if info.get("cuda") else f"CPU only, {info.get('cpu_count', '?')} cores")
                  + f". Command: `{' '.join(info.get('argv', []))}`.")
    if cfg["preset"] == "demo":
        doc.paragraph("This is the demo preset: tiny networks and images, a few epochs, procedurally generated data. "
                      "It shows that every stage runs and what the report contains; its numbers say nothing about the "
                      "method's merit on real images. Use --preset cpu or paper on real data for that.")

    _statistics_section(doc, run, kind)
    _frozen_section(doc, run)

    doc.heading(2, "Results")
    results = collect_results(run, kind)
    names = [m[0] for m in METRICS[kind]]
    percent = {m[0]: m[2] for m in METRICS[kind]}
    fractions = sorted({f for per in results.values() for f in per}, key=float, reverse=True)
    if not results:
        doc.paragraph("No evaluation results were found (`finetune/*/lf*/seed*/evaluate/metrics.json`).")
    else:
        doc.paragraph(evaluated_splits_sentence(run))
    for fraction in fractions:
        doc.heading(3, f"{float(fraction):.0%} of the training labels (mean ± std over seeds; % except distances)")
        rows = [[init, str(max(len(v) for v in per[fraction].values()))]
                + [format_values(per[fraction].get(n, []), percent[n]) for n in names]
                for init, per in sorted(results.items(), key=lambda kv: init_order(kv[0])) if fraction in per]
        doc.table(["initialisation", "seeds"] + names, rows)
    recipes = finetune_recipes(run)
    if recipes:
        doc.heading(3, "Fine-tuning recipe per initialisation")
        doc.paragraph("Each initialisation is fine-tuned with its own recipe where the preset has one (a pre-trained "
                      "encoder may want a lower encoder learning rate: `presets/init_pretrained/<preset>.json` of the "
                      "downstream bundle); the settings below are read from each fine-tuning's own resolved config.")
        doc.table(["initialisation", *RECIPE_KEYS, "overlays"],
                  [[init, *(str(r[k]) for k in RECIPE_KEYS), ", ".join(r["overlays"])]
                   for init, r in sorted(recipes.items(), key=lambda kv: init_order(kv[0]))])
    paper = PAPER_RESULTS.get(task, {})
    if paper:
        doc.heading(3, "The paper's numbers, for reference")
        doc.paragraph(paper["_note"] + " (Ye et al., IEEE Access 2025; other data, splits and hardware).")
        cols = sorted({k for m, v in paper.items() if m != "_note" for k in v}, key=lambda k: names.index(k)
                      if k in names else 99)
        doc.table(["method"] + cols, [[m] + [f"{v[c]:.2f}" if c in v else "-" for c in cols]
                                      for m, v in paper.items() if m != "_note"])

    doc.heading(2, "Synthetic images (stage 1)")
    if not (run / "ldm").is_dir():
        doc.paragraph("Not run: no initialisation of this run needs synthetic images (add dcl_cstp_syn to --methods "
                      "or --ratios).")
    doc.image(_first(run, ["ldm/samples/contact_sheet.png", "ldm/samples/*sheet*.png"]), "synthetic samples")
    doc.image(_first(run, ["ldm/autoencoder/eval/reconstructions*.png", "ldm/autoencoder/eval/**/*recon*.png"]),
              "autoencoder: inputs | reconstructions")
    doc.image(plot_embedding(run, fig_dir), "real vs synthetic images in the DCL-CsTP feature space (t-SNE)")
    synthesis = _first(run, ["ldm/samples/synthesis.json"])
    if synthesis:
        t = json.loads(synthesis.read_text())
        doc.paragraph(f"Sampling: {t.get('num_samples')} images with `{t.get('sampler')}` at "
                      f"{t.get('num_inference_steps')} steps (batch {t.get('batch_size')}, {t.get('device')}): "
                      f"{t.get('seconds')} s, **{t.get('seconds_per_image')} s per image**; latent "
                      f"{t.get('latent_shape')}, scale factor {t.get('scale_factor'):.4g}. Per-sampler speed and "
                      "quality: `dcl-cstp bench sample`."
                      if isinstance(t.get("scale_factor"), (int, float)) else "Sampling: " + json.dumps(t)[:600])
    if (run / "ldm" / "curation" / "curation.json").is_file():
        doc.extend(_curation_section(run / "ldm" / "curation"), shift=2)

    doc.heading(2, "Training")
    doc.image(plot_pretrain_curves(run, fig_dir), "pre-training: loss, collapse signal, k-NN monitor")
    doc.image(plot_finetune_curves(run, fig_dir),
              "fine-tuning: each initialisation's mean over seeds, and its lead over random init epoch by epoch")

    doc.heading(2, "Evaluation pictures")
    best = None
    if results:
        key = names[0]
        best = max(results, key=lambda i: np.mean(next(iter(results[i].values())).get(key, [-1])))
    if best:
        if kind == "classification":
            doc.image(_first(run, [f"finetune/{best}/lf*/seed*/evaluate/*confusion*.png"]),
                      f"confusion matrix ({best})")
        else:
            doc.image(_first(run, [f"finetune/{best}/lf*/seed*/evaluate/cases.png"]),
                      f"worst and best validation cases ({best}): prediction red, truth outlined green")
            worst = sorted(run.glob(f"finetune/{best}/lf*/seed*/evaluate/worst_cases/*.png"))[:3]
            for i, path in enumerate(worst, 1):
                doc.image(path, f"worst validation case {i} ({best}): image | ground truth | prediction")

    skipped = json.loads((run / "skipped.json").read_text()) if (run / "skipped.json").is_file() else {}
    if skipped:
        doc.heading(2, "Skipped stages")
        doc.table(["stage", "reason"], [[k, v] for k, v in skipped.items()])

    doc.heading(2, "Stage times (seconds)")
    doc.table(["stage", "seconds"], stage_times(run))

    md_path = run / "report.md"
    md_path.write_text(doc.markdown())
    (run / "report.html").write_text(doc.html(f"DCL-CsTP report: {task}"))
    logger.info(f"report: {md_path} and {run / 'report.html'}")
    return md_path
