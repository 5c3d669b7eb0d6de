"""The pipeline report: ``report.md`` and a self-contained ``report.html`` (pictures embedded) from a run folder.

Everything shown is read from files the stages wrote; nothing is computed twice except the 2-D embedding of
real vs synthetic features (the paper's Fig. 6), made here from the DCL-CsTP encoder.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path

import numpy as np

__all__ = ["write_report", "collect_results", "finished_runs", "PAPER_RESULTS"]

logger = logging.getLogger("dcl_cstp.pipeline")

#: the paper's numbers (METHOD.md), per task: method -> metric -> value (percent; HD in pixels)
PAPER_RESULTS = {
    "pneumonia_cls": {
        "_note": "COVID-19 Radiography 4-class, ResNet-50, ACC / REC / PRE %",
        "ImageNet-supervised": {"accuracy": 94.89, "recall": 94.81, "precision": 95.74},
        "simclr": {"accuracy": 95.21, "recall": 95.89, "precision": 95.80},
        "mocov2": {"accuracy": 95.27, "recall": 95.92, "precision": 95.83},
        "simsiam": {"accuracy": 95.33, "recall": 96.01, "precision": 96.12},
        "dcl_cstp": {"accuracy": 95.65, "recall": 96.33, "precision": 96.50},
        "dcl_cstp_syn": {"accuracy": 95.90, "recall": 96.69, "precision": 96.74},
    },
    "isic_seg": {
        "_note": "ISIC 2018, U-Net + ResNet-50, Dice / IoU % and HD",
        "simclr": {"dice": 88.29, "iou": 79.87, "hd": 35.68},
        "mocov2": {"dice": 88.32, "iou": 79.96, "hd": 35.75},
        "simsiam": {"dice": 88.45, "iou": 80.08, "hd": 35.06},
        "dcl_cstp": {"dice": 88.72, "iou": 80.90, "hd": 34.89},
        "dcl_cstp_syn": {"dice": 89.73, "iou": 81.24, "hd": 34.06},
        "dcl_cstp_synonly": {"dice": 88.49},  # the synthetic-ratio table's "synthetic only" row
    },
    "kvasir_seg": {
        "_note": "Kvasir-SEG, U-Net + ResNet-50, Dice / IoU % (read off a plot, approximate)",
        "supervised": {"dice": 80.2, "iou": 71.1},
        "simclr": {"dice": 81.3},
        "mocov2": {"dice": 81.5},
        "simsiam": {"dice": 82.0},
        "dcl_cstp": {"dice": 82.50, "iou": 73.8},
    },
}

#: metrics shown per task kind: (name in the table, keys to look for in metrics.json, percent?)
METRICS = {
    "classification": [
        ("accuracy", ("accuracy", "acc"), True),
        ("recall", ("macro_recall", "recall_macro", "recall"), True),
        ("precision", ("macro_precision", "precision_macro", "precision"), True),
        ("roc_auc", ("roc_auc_macro_ovr", "roc_auc", "auc", "macro_auc"), True),
    ],
    "segmentation": [
        ("dice", ("dice", "mean_dice"), True),
        ("iou", ("iou", "mean_iou", "jaccard"), True),
        ("hd", ("hd", "hausdorff", "hausdorff_distance"), False),
        ("hd95", ("hd95", "hausdorff95"), False),
    ],
}


# ---------------------------------------------------------------- reading results
def _find_metric(metrics: dict, keys: tuple[str, ...]) -> float | None:
    """A scalar for any of ``keys`` at the top level or under a summary-like key (``{"dice": {"mean": x}}`` too)."""
    pools = [metrics] + [metrics[k] for k in ("summary", "mean", "metrics", "overall") if isinstance(metrics.get(k), dict)]
    for pool in pools:
        for key in keys:
            value = pool.get(key)
            if isinstance(value, dict):
                value = value.get("mean")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def _evaluations(run: Path) -> list[tuple[str, str, str, Path]]:
    """``(init, fraction, seed, metrics.json)`` of every evaluated fine-tuning,
    ``finetune/<init>/lf<fraction>/seed<seed>/evaluate/metrics.json``."""
    return [(p.parts[-5], p.parts[-4].removeprefix("lf"), p.parts[-3].removeprefix("seed"), p)
            for p in sorted(run.glob("finetune/*/lf*/seed*/evaluate/metrics.json"))]


def collect_results(run: Path, kind: str) -> dict:
    """``{init: {fraction: {metric: [value per seed]}}}`` from ``finetune/*/lf*/seed*/evaluate/metrics.json``."""
    out: dict = {}
    for init, fraction, _, path in _evaluations(run):
        metrics = json.loads(path.read_text())
        row = out.setdefault(init, {}).setdefault(fraction, {})
        for name, keys, _ in METRICS[kind]:
            value = _find_metric(metrics, keys)
            if value is not None:
                row.setdefault(name, []).append(value)
    return out


def finished_runs(run: Path) -> dict[str, list[str]]:
    """The initialisations, label fractions and seeds of every evaluated fine-tuning under ``run``, sorted."""
    found = _evaluations(run)
    return {
        "inits": sorted({e[0] for e in found}, key=_init_order),
        "fractions": sorted({e[1] for e in found}, key=float, reverse=True),
        "seeds": sorted({e[2] for e in found}, key=int),
    }


def _init_order(init: str) -> tuple[int, str]:
    """Table order: random, the baselines, DCL-CsTP, + synthetic (ratios), then the ablations."""
    from .pipeline import ABLATIONS, INITIALISATIONS

    order = list(INITIALISATIONS) + list(ABLATIONS)
    if init in order:
        return order.index(init), init
    return (order.index("dcl_cstp_syn"), init) if init.startswith("dcl_cstp_syn") else (len(order), init)


def _fmt(values: list[float], percent: bool) -> str:
    if not values:
        return "-"
    arr = np.asarray(values) * (100.0 if percent and max(abs(v) for v in values) <= 1.0 else 1.0)
    if len(arr) == 1:
        return f"{arr[0]:.2f}"
    return f"{arr.mean():.2f} ± {arr.std(ddof=1):.2f}"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- figures
def _plot_pretrain_curves(run: Path, fig_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {p.parts[-3]: _read_jsonl(p) for p in sorted(run.glob("pretrain/*/eval/metrics.jsonl"))}
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, rows in runs.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r.get("train_loss", math.nan) for r in rows], label=name)
        axes[1].plot(epochs, [r.get("train_z_std", math.nan) for r in rows], label=name)
        knn = [(r["epoch"], r["knn_accuracy"]) for r in rows if "knn_accuracy" in r]
        if knn:
            axes[2].plot(*zip(*knn), marker="o", label=name)
    for ax, title in zip(axes, ("pre-training loss", "collapse signal z_std (1 = spread, 0 = collapsed)",
                                "k-NN monitor accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = fig_dir / "pretrain_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_finetune_curves(run: Path, fig_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, val_curves = {}, {}
    for p in sorted(run.glob("finetune/*/lf*/seed*/train/metrics.jsonl")):
        name = f"{p.parts[-5]} {p.parts[-4]} {p.parts[-3]}"
        curves[name] = _read_jsonl(p)
        val_curves[name] = _read_jsonl(p.with_name("val_metrics.jsonl"))
    if not any(curves.values()):
        return None
    val_keys = sorted({k for rows in val_curves.values() for r in rows for k in r if k.startswith("val_")})
    fig, axes = plt.subplots(1, 1 + bool(val_keys), figsize=(6 + 6 * bool(val_keys), 4), squeeze=False)
    # one colour per initialisation and label fraction, one line style per seed: the comparison reads at a glance
    groups = sorted({name.rsplit(" ", 1)[0] for name in curves}, key=lambda g: (_init_order(g.split()[0]), g))
    seeds = sorted({name.rsplit(" ", 1)[1] for name in curves})
    for name, rows in curves.items():
        group, seed = name.rsplit(" ", 1)
        style = {"color": plt.get_cmap("tab10")(groups.index(group) % 10),
                 "linestyle": ("-", "--", ":", "-.")[seeds.index(seed) % 4], "label": name}
        axes[0, 0].plot([r["epoch"] for r in rows], [r.get("train_loss", math.nan) for r in rows], **style)
        if val_keys:
            pts = [(r["epoch"], r[val_keys[0]]) for r in val_curves[name] if val_keys[0] in r]
            if pts:
                axes[0, 1].plot(*zip(*pts), marker="o", markersize=4, **style)
    axes[0, 0].set_title("fine-tuning loss")
    if val_keys:
        axes[0, 1].set_title(f"validation {val_keys[0].removeprefix('val_')}")
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = fig_dir / "finetune_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _embedding_plot(run: Path, fig_dir: Path, max_per_source: int = 300) -> Path | None:
    """t-SNE of DCL-CsTP pooled features of real training images vs kept synthetic images (paper Fig. 6)."""
    encoder_path = run / "pretrain" / "dcl_cstp" / "models" / "encoder.pt"
    kept_dir = run / "ldm" / "curation" / "curated"
    info_path = encoder_path.with_suffix(".json")
    # the run's split (older runs: the copy the pre-training wrote)
    split = next(iter([*sorted(run.glob("splits/*.json")), *run.glob("pretrain/dcl_cstp/eval/datalist.json")]), None)
    if not (encoder_path.is_file() and kept_dir.is_dir() and info_path.is_file() and split):
        return None
    if not any(p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in kept_dir.iterdir()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from monai.data import DataLoader, Dataset
    from sklearn.manifold import TSNE

    from ..data import build_folder_datalist, read_datalist, unlabelled_preprocess
    from ..engines import extract_features
    from ..networks import ResNetEncoder2D, load_encoder

    info = json.loads(info_path.read_text())
    encoder = load_encoder(ResNetEncoder2D(info["backbone"], info["in_channels"]), encoder_path)
    rng = np.random.default_rng(0)
    real = [{"image": it["image"]} for it in read_datalist(split)["training"]]
    synth = build_folder_datalist(kept_dir, check_images=False)["training"]
    groups = {}
    for name, items in (("real", real), ("synthetic", synth)):
        items = [items[i] for i in rng.permutation(len(items))[:max_per_source]]
        loader = DataLoader(Dataset(items, unlabelled_preprocess(info.get("image_size", 64), info["in_channels"])),
                            batch_size=32, num_workers=0)
        with torch.no_grad():
            groups[name] = extract_features(encoder, loader, "cpu", label_key=None)[0].numpy()
    feats = np.concatenate(list(groups.values()))
    perplexity = float(min(30, max(2, (len(feats) - 1) // 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(feats)
    fig, ax = plt.subplots(figsize=(6, 5))
    start = 0
    for (name, f), color in zip(groups.items(), ("tab:blue", "tab:orange")):
        ax.scatter(xy[start : start + len(f), 0], xy[start : start + len(f), 1], s=10, alpha=0.7, c=color,
                   label=f"{name} ({len(f)})")
        start += len(f)
    ax.set_title("t-SNE of DCL-CsTP features: real vs synthetic")
    ax.legend()
    fig.tight_layout()
    path = fig_dir / "embedding_real_vs_synthetic.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- rendering
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


# ---------------------------------------------------------------- the report
def _stage_times(run: Path) -> list[list[str]]:
    rows = []
    for done in sorted(run.rglob("DONE.json"), key=lambda p: p.stat().st_mtime):
        rec = json.loads(done.read_text())
        rows.append([rec["stage"], f"{rec['seconds']:.0f}"])
    return rows


def _first(run: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(run.glob(pattern))
        if found:
            return found[-1]
    return None


def write_report(run: str | Path) -> Path:
    """Write ``report.md`` and ``report.html`` for the pipeline run in ``run``; returns the Markdown path."""
    from .presets import task_spec

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
    for fraction in fractions:
        doc.h(3, f"{float(fraction):.0%} of the training labels (mean ± std over seeds; % except distances)")
        rows = [[init, str(max(len(v) for v in per[fraction].values()))]
                + [_fmt(per[fraction].get(n, []), percent[n]) for n in names]
                for init, per in sorted(results.items(), key=lambda kv: _init_order(kv[0])) if fraction in per]
        doc.table(["initialisation", "seeds"] + names, rows)
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
    doc.img(_embedding_plot(run, fig_dir), "real vs synthetic images in the DCL-CsTP feature space (t-SNE)")
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
    doc.img(_plot_pretrain_curves(run, fig_dir), "pre-training: loss, collapse signal, k-NN monitor")
    doc.img(_plot_finetune_curves(run, fig_dir), "fine-tuning curves")

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
    doc.table(["stage", "seconds"], _stage_times(run))

    md_path = run / "report.md"
    md_path.write_text(doc.markdown())
    (run / "report.html").write_text(doc.html(f"DCL-CsTP report: {task}"))
    logger.info(f"report: {md_path} and {run / 'report.html'}")
    return md_path
