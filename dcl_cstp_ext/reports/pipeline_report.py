"""The pipeline report: ``report.md`` and a self-contained ``report.html`` (pictures embedded) from a run folder.

Everything shown is read from files the stages wrote; nothing is computed twice except the 2-D embedding of
real vs synthetic features (the paper's Fig. 6), made here from the DCL-CsTP encoder.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import numpy as np

from ..pipeline.presets import task_spec
from .pipeline_figures import plot_embedding, plot_finetune_curves, plot_pretrain_curves
from .pipeline_results import (
    METRICS,
    PAPER_RESULTS,
    RECIPE_KEYS,
    collect_results,
    evaluated_splits_sentence,
    finetune_recipes,
    finished_runs,
    format_values,
    init_order,
    stage_times,
)

__all__ = ["write_report"]

logger = logging.getLogger("dcl_cstp.pipeline")


class _Doc:
    """A list of blocks rendered both as Markdown and as self-contained HTML."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", header, rows))

    def img(self, path: Path | None, caption: str) -> None:
        if path is not None and Path(path).is_file():
            self.blocks.append(("img", Path(path), caption))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "---|" * len(b[1]))
                out += ["| " + " | ".join(r) + " |" for r in b[2]]
            elif b[0] == "img":
                rel = b[1].relative_to(self.root) if b[1].is_relative_to(self.root) else b[1]
                out.append(f"![{b[2]}]({rel})\n\n*{b[2]}*")
            elif b[0] == "pre":
                out.append("```\n" + b[1] + "\n```")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;"
               "text-align:right}th{background:#eee}td:first-child{text-align:left}img{max-width:100%}"
               "figure{margin:1em 0}figcaption{color:#555;font-size:90%}pre{background:#f6f6f6;padding:1em;"
               "overflow:auto}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{html.escape(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in b[1]) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b[2]]
                out.append("</table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b[2])}'>"
                           f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
            elif b[0] == "pre":
                out.append(f"<pre>{html.escape(b[1])}</pre>")
        out.append("</body></html>")
        return "\n".join(out)


def _first(run: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(run.glob(pattern))
        if found:
            return found[-1]
    return None


def write_report(run: str | Path) -> Path:
    """Write ``report.md`` and ``report.html`` for the pipeline run in ``run``; returns the Markdown path."""
    run = Path(run)
    cfg = json.loads((run / "pipeline.json").read_text())
    task, kind = cfg["task"], task_spec(cfg["task"])["kind"]
    fig_dir = run / "figures"
    fig_dir.mkdir(exist_ok=True)
    info = json.loads((run / "run_info.json").read_text())[-1] if (run / "run_info.json").is_file() else {}
    doc = _Doc(run)

    doc.h(1, f"DCL-CsTP pipeline report: {task}")
    found = finished_runs(run)
    doc.p(f"Preset `{cfg['preset']}`, data `{cfg['data_root']}`. This report reads every finished fine-tuning in "
          f"this folder, whichever command made it: initialisations {', '.join(found['inits']) or 'none'}; "
          f"label fractions {', '.join(found['fractions']) or 'none'}; seeds {', '.join(found['seeds']) or 'none'}. "
          f"The last command asked for initialisations {', '.join(cfg['methods'])}, synthetic ratio "
          f"{cfg['synthetic_ratio']}, label fractions {cfg['label_fractions']}, seeds {cfg['seeds']}.")
    versions = info.get("packages", {})
    doc.p("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
          + f"; Python {info.get('python', '?')}; {info.get('platform', '?')}; "
          + (f"GPU {info['cuda']}" if info.get("cuda") else f"CPU only, {info.get('cpu_count', '?')} cores")
          + f". Command: `{' '.join(info.get('argv', []))}`.")
    if cfg["preset"] == "demo":
        doc.p("This is the demo preset: tiny networks and images, a few epochs, procedurally generated data. It shows "
              "that every stage runs and what the report contains; its numbers say nothing about the method's merit "
              "on real images. Use --preset cpu or paper on real data for that.")

    doc.h(2, "Results")
    results = collect_results(run, kind)
    names = [m[0] for m in METRICS[kind]]
    percent = {m[0]: m[2] for m in METRICS[kind]}
    fractions = sorted({f for per in results.values() for f in per}, key=float, reverse=True)
    if not results:
        doc.p("No evaluation results were found (finetune/*/lf*/seed*/evaluate/metrics.json).")
    else:
        doc.p(evaluated_splits_sentence(run))
    for fraction in fractions:
        doc.h(3, f"{float(fraction):.0%} of the training labels (mean ± std over seeds; % except distances)")
        rows = [[init, str(max(len(v) for v in per[fraction].values()))]
                + [format_values(per[fraction].get(n, []), percent[n]) for n in names]
                for init, per in sorted(results.items(), key=lambda kv: init_order(kv[0])) if fraction in per]
        doc.table(["initialisation", "seeds"] + names, rows)
    recipes = finetune_recipes(run)
    if recipes:
        doc.h(3, "Fine-tuning recipe per initialisation")
        doc.p("Each initialisation is fine-tuned with its own recipe where the preset has one (a pre-trained encoder "
              "may want a lower encoder learning rate: `presets/init_pretrained/<preset>.json` of the downstream "
              "bundle); the settings below are read from each fine-tuning's own resolved config.")
        doc.table(["initialisation", *RECIPE_KEYS, "overlays"],
                  [[init, *(str(r[k]) for k in RECIPE_KEYS), ", ".join(r["overlays"])]
                   for init, r in sorted(recipes.items(), key=lambda kv: init_order(kv[0]))])
    paper = PAPER_RESULTS.get(task, {})
    if paper:
        doc.h(3, "The paper's numbers, for reference")
        doc.p(paper["_note"] + " (Ye et al., IEEE Access 2025; other data, splits and hardware).")
        cols = sorted({k for m, v in paper.items() if m != "_note" for k in v}, key=lambda k: names.index(k)
                      if k in names else 99)
        doc.table(["method"] + cols, [[m] + [f"{v[c]:.2f}" if c in v else "-" for c in cols]
                                      for m, v in paper.items() if m != "_note"])

    doc.h(2, "Synthetic images (stage 1)")
    if not (run / "ldm").is_dir():
        doc.p("Not run: no initialisation of this run needs synthetic images (add dcl_cstp_syn to --methods or "
              "--ratios).")
    doc.img(_first(run, ["ldm/samples/contact_sheet.png", "ldm/samples/*sheet*.png"]), "synthetic samples")
    doc.img(_first(run, ["ldm/autoencoder/eval/reconstructions*.png", "ldm/autoencoder/eval/**/*recon*.png"]),
            "autoencoder: inputs | reconstructions")
    doc.img(plot_embedding(run, fig_dir), "real vs synthetic images in the DCL-CsTP feature space (t-SNE)")
    synthesis = _first(run, ["ldm/samples/synthesis.json"])
    if synthesis:
        t = json.loads(synthesis.read_text())
        doc.p(f"Sampling: {t.get('num_samples')} images with `{t.get('sampler')}` at {t.get('num_inference_steps')} "
              f"steps (batch {t.get('batch_size')}, {t.get('device')}): {t.get('seconds')} s, "
              f"**{t.get('seconds_per_image')} s per image**; latent {t.get('latent_shape')}, scale factor "
              f"{t.get('scale_factor'):.4g}. Per-sampler speed and quality: `dcl-cstp bench sample`."
              if isinstance(t.get("scale_factor"), (int, float)) else "Sampling: " + json.dumps(t)[:600])
    curation_md = _first(run, ["ldm/curation/curation.md"])
    if curation_md:
        doc.h(3, "Curation")
        doc.pre(curation_md.read_text()[:6000])
        doc.img(_first(run, ["ldm/curation/best.png"]), "best-scored synthetic samples")
        doc.img(_first(run, ["ldm/curation/kept_vs_nearest_real.png"]),
                "kept synthetic samples beside their nearest real training image: synthetic | real")
        doc.img(_first(run, ["ldm/curation/*worst*.png"]), "worst-scored synthetic samples")
        doc.img(_first(run, ["ldm/curation/*outlier*.png"]), "dropped as outliers")

    doc.h(2, "Training")
    doc.img(plot_pretrain_curves(run, fig_dir), "pre-training: loss, collapse signal, k-NN monitor")
    doc.img(plot_finetune_curves(run, fig_dir), "fine-tuning curves")

    doc.h(2, "Evaluation pictures")
    best = None
    if results:
        key = names[0]
        best = max(results, key=lambda i: np.mean(next(iter(results[i].values())).get(key, [-1])))
    if best:
        if kind == "classification":
            doc.img(_first(run, [f"finetune/{best}/lf*/seed*/evaluate/*confusion*.png"]),
                    f"confusion matrix ({best})")
        else:
            doc.img(_first(run, [f"finetune/{best}/lf*/seed*/evaluate/cases.png"]),
                    f"worst and best validation cases ({best}): prediction red, truth outlined green")
            worst = sorted(run.glob(f"finetune/{best}/lf*/seed*/evaluate/worst_cases/*.png"))[:3]
            for i, path in enumerate(worst, 1):
                doc.img(path, f"worst validation case {i} ({best}): image | ground truth | prediction")

    skipped = json.loads((run / "skipped.json").read_text()) if (run / "skipped.json").is_file() else {}
    if skipped:
        doc.h(2, "Skipped stages")
        doc.table(["stage", "reason"], [[k, v] for k, v in skipped.items()])

    doc.h(2, "Stage times (seconds)")
    doc.table(["stage", "seconds"], stage_times(run))

    md_path = run / "report.md"
    md_path.write_text(doc.markdown())
    (run / "report.html").write_text(doc.html(f"DCL-CsTP report: {task}"))
    logger.info(f"report: {md_path} and {run / 'report.html'}")
    return md_path
