"""The pictures of a pipeline run's report: pre-training and fine-tuning curves, and real vs synthetic images in
the DCL-CsTP feature space (t-SNE, the paper's Fig. 6). matplotlib and scikit-learn load when a picture is made."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from ..data import build_folder_datalist, read_datalist, unlabelled_preprocess
from ..engines import extract_features
from ..networks import ResNetEncoder2D, load_encoder
from .pipeline_results import finetune_curves, first_validation_metric, paired_curve_gap, read_jsonl

__all__ = ["plot_embedding", "plot_finetune_curves", "plot_pretrain_curves"]

logger = logging.getLogger("dcl_cstp.pipeline")


def plot_pretrain_curves(run: Path, fig_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {p.parts[-3]: read_jsonl(p) for p in sorted(run.glob("pretrain/*/eval/metrics.jsonl"))}
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return None
    titles = ["pre-training loss", "collapse signal z_std (1 = spread, 0 = collapsed)", "k-NN monitor accuracy"]
    with_bank = any("train_bank_gap" in r for rows in runs.values() for r in rows)
    if with_bank:  # the momentum methods' memory-bank staleness (METHOD.md, "Memory bank at small data")
        titles.append("memory-bank staleness bank_gap (0 = a fair bank)")
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 4))
    for name, rows in runs.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r.get("train_loss", math.nan) for r in rows], label=name)
        axes[1].plot(epochs, [r.get("train_z_std", math.nan) for r in rows], label=name)
        knn = [(r["epoch"], r["knn_accuracy"]) for r in rows if "knn_accuracy" in r]
        if knn:
            axes[2].plot(*zip(*knn), marker="o", label=name)
        if with_bank and any("train_bank_gap" in r for r in rows):
            axes[3].plot(epochs, [r.get("train_bank_gap", math.nan) for r in rows], label=name)
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = fig_dir / "pretrain_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_finetune_curves(run: Path, fig_dir: Path) -> Path | None:
    """Fine-tuning loss and the first validation metric, each initialisation and label fraction as its mean over
    seeds (band: lowest to highest seed), and each initialisation minus random init per epoch, paired by seed: how
    far ahead a pre-trained start is along the fine-tuning, and whether random init catches up."""
    losses = finetune_curves(run, "metrics.jsonl", "train_loss")
    val_key = first_validation_metric(run)
    vals = finetune_curves(run, "val_metrics.jsonl", val_key) if val_key else {}
    if not losses and not vals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaps = {g: gap for g in vals if (gap := paired_curve_gap(vals, g)) is not None}
    panels = [("fine-tuning loss (mean over seeds)", losses)]
    if vals:
        metric = val_key.removeprefix("val_")
        panels.append((f"validation {metric} (mean over seeds; band: lowest to highest)", vals))
    fig, axes = plt.subplots(1, len(panels) + bool(gaps), figsize=(6 * (len(panels) + bool(gaps)), 4), squeeze=False)
    groups = list(dict.fromkeys([*losses, *vals]))
    inits = list(dict.fromkeys(g[0] for g in groups))
    fractions = list(dict.fromkeys(g[1] for g in groups))

    def style(group: tuple[str, str], seeds: list[str]) -> dict:
        # one colour per initialisation, one line style per label fraction
        return {"color": plt.get_cmap("tab10")(inits.index(group[0]) % 10),
                "linestyle": ("-", "--", ":", "-.")[fractions.index(group[1]) % 4],
                "label": f"{group[0]} {100 * float(group[1]):g}% ({len(seeds)} seed{'s' * (len(seeds) > 1)})"}

    for ax, (title, curves) in zip(axes[0], panels):
        for group, c in curves.items():
            ax.plot(c["epochs"], c["values"].mean(0), **style(group, c["seeds"]))
            if len(c["seeds"]) > 1:
                ax.fill_between(c["epochs"], c["values"].min(0), c["values"].max(0), alpha=0.12,
                                color=style(group, c["seeds"])["color"])
        ax.set_title(title, fontsize=10)
    if gaps:
        ax = axes[0, -1]
        ax.axhline(0, color="grey", linewidth=0.8)
        for group, (epochs, gap, seeds) in gaps.items():
            ax.plot(epochs, 100 * gap, **style(group, seeds))
        ax.set_title(f"{metric} minus random init's, paired by seed (points)", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = fig_dir / "finetune_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_embedding(run: Path, fig_dir: Path, max_per_source: int = 300) -> Path | None:
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
    from sklearn.manifold import TSNE


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
