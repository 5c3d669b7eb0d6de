"""The curation report: ``curation.json`` (summary + per-sample table), ``curation.md`` and its PNG grids."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .images import save_grid, save_pairs_grid

__all__ = ["write_curation_report", "curation_markdown"]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def curation_markdown(summary: Mapping[str, Any], pictures: Mapping[str, str]) -> str:
    """The human-readable report of a curation ``summary`` (see :func:`~dcl_cstp_ext.generative.curate`)."""
    c, s, m, enc = summary["counts"], summary["settings"], summary["metrics"], summary["feature_encoder"]
    lines = ["# Curation of synthetic images", ""]
    lines += [f"Kept **{c['kept']}** of {c['generated']} generated images (keep fraction {s['keep_fraction']}"
              + (f", realism threshold {s['realism_threshold']}" if s.get("realism_threshold") is not None else "")
              + f"), compared with {s['num_real']} real training images.", ""]
    lines += ["| reason | dropped |", "| --- | --- |"]
    lines += [f"| {r} | {n} |" for r, n in c["dropped_by_reason"].items()]
    lines += [f"| **kept** | **{c['kept']}** |", ""]
    lines += [f"Flags (a sample may carry both): near copy {c['flagged']['near_copy']}, "
              f"outlier {c['flagged']['outlier']}.", ""]
    lines += ["## Criteria", ""]
    lines += [
        f"- **outlier**: distance to the {s['k']}-th nearest real image in feature space above "
        f"{_fmt(s['outlier_knn_distance_limit'])}, the {s['outlier_quantile']} quantile of the real images' own "
        "leave-one-out k-NN distances.",
        f"- **near copy**: distance to the nearest training image below {s['copy_threshold']} x the median "
        f"real-real nearest-neighbour distance, in feature space or in pixel space ({s['pixel_size']} px).",
        ("- **rank**: of the rest, up to the keep fraction of all generated images, the most realistic (realism "
         "score, Kynkaanniemi et al. 2019) of every real image's neighbourhood first, then the second most "
         "realistic, ... (stratified: the kept images cover the real distribution)."
         if s.get("selection", "stratified") == "stratified" else
         "- **rank**: of the rest, the most realistic (realism score, Kynkaanniemi et al. 2019) up to the keep "
         "fraction of all generated images."),
        "",
    ]
    if enc.get("encoder") == "random":
        lines += [f"Feature encoder: {enc['description']}. No pretrained encoder was given or found"
                  + (f" (looked for `{enc['requested_path']}`)" if enc.get("requested_path") else "")
                  + ": random-feature distances are a known, imperfect proxy (texture, colour, layout rather than "
                  "semantics); they compare samplers and checkpoints on the same data, not with published FIDs.", ""]
    else:
        lines += [f"Feature encoder: `{enc.get('path')}` ({enc.get('backbone')}, {enc.get('in_channels')} "
                  "channel(s)).", ""]
    lines += ["## Measures", "", "Against the real training images; Frechet distance and recall depend on the number of "
              "images, so the kept set is compared with a random subset of the same size.", "",
              "| measure | all generated | kept | random subset, same size |", "| --- | --- | --- | --- |"]
    fd, pr = m["frechet_distance"], m["precision_recall"]
    lines.append(f"| Frechet distance to real (features) | {_fmt(fd['all'])} | {_fmt(fd['kept'])} | "
                 f"{_fmt(fd.get('random_same_size'))} |")
    for key in ("precision", "recall"):
        vals = [pr[c][key] if pr.get(c) else None for c in ("all", "kept", "random_same_size")]
        lines.append(f"| k-NN {key} (k={s['k']}) | " + " | ".join(_fmt(v, 3) for v in vals) + " |")
    ms = m["ms_ssim_diversity"]
    lines.append(f"| MS-SSIM between random pairs (lower = more diverse; real: "
                 f"{_fmt(ms['real']['ms_ssim'] if ms['real'] else None, 3)}) | "
                 f"{_fmt(ms['all']['ms_ssim'] if ms['all'] else None, 3)} | "
                 f"{_fmt(ms['kept']['ms_ssim'] if ms['kept'] else None, 3)} | |")
    lines.append(f"| realism score, median | {_fmt(m['realism']['all'].get('median'), 3)} | "
                 f"{_fmt(m['realism']['kept'].get('median'), 3) if m['realism']['kept'] else 'n/a'} | |")
    mem = m["memorisation"]
    lines += ["", "Memorisation (nearest training image distance / median real-real nearest-neighbour distance):", "",
              "| space | synthetic p05 | synthetic median | real-real p05 | real pairs below threshold |",
              "| --- | --- | --- | --- | --- |"]
    for space in ("feature", "pixel"):
        syn, real = mem[f"{space}_nn_ratio"], mem[f"real_{space}_nn_ratio"]
        lines.append(f"| {space} | {_fmt(syn.get('p05'), 3)} | {_fmt(syn.get('median'), 3)} | "
                     f"{_fmt(real.get('p05'), 3)} | {mem['real_pairs_below_copy_threshold'][space]} |")
    lines += ["", "## Pictures", ""]
    captions = {
        "best": "Most realistic kept samples",
        "kept_vs_nearest_real": "Kept samples beside their nearest real training image (feature space): synthetic | real",
        "worst": "Least realistic samples",
        "near_copies": "Near copies: synthetic | nearest training image",
        "outliers": "Outliers",
        "kept_sheet": "Kept samples (contact sheet)",
    }
    for key, caption in captions.items():
        if key in pictures:
            lines += [f"**{caption}**", "", f"![{key}]({pictures[key]})", ""]
    lines += [f"Kept datalist: `{summary.get('curated_datalist')}`"
              + (f"; kept images: `{summary['curated_dir']}`" if summary.get("curated_dir") else "") + ".", ""]
    return "\n".join(lines)


def write_curation_report(
    output_dir: str | Path,
    summary: dict,
    rows: Sequence[Mapping[str, Any]],
    synthetic_images: torch.Tensor,
    real_images: torch.Tensor,
    realism: torch.Tensor,
    nearest_real: torch.Tensor,
    num_show: int = 16,
) -> dict:
    """Write the pictures (``best.png``, ``kept_vs_nearest_real.png``, ``worst.png``, ``near_copies.png``,
    ``outliers.png``, ``kept_sheet.png``), ``curation.json`` (``summary`` + ``samples``) and ``curation.md`` into
    ``output_dir``.
    Returns the picture names."""
    out = Path(output_dir)
    realism = np.asarray(torch.as_tensor(realism).double())
    kept = np.array([r["kept"] for r in rows], bool)
    pictures: dict[str, str] = {}
    order = np.argsort(-realism, kind="stable")
    best = [i for i in order if kept[i]][:num_show]
    if best:
        save_grid(synthetic_images[best], out / "best.png")
        pictures["best"] = "best.png"
    worst = list(order[::-1][:num_show])
    if worst:
        save_grid(synthetic_images[worst], out / "worst.png")
        pictures["worst"] = "worst.png"
    if best:  # real vs synthetic at a glance, and a memorisation check: each kept sample beside its nearest real
        pairs = best[: max(1, num_show // 2)]
        save_pairs_grid(synthetic_images[pairs], real_images[[int(nearest_real[i]) for i in pairs]],
                        out / "kept_vs_nearest_real.png")
        pictures["kept_vs_nearest_real"] = "kept_vs_nearest_real.png"
    copies = [i for i, r in enumerate(rows) if r["near_copy"]][:num_show]
    if copies:
        save_pairs_grid(synthetic_images[copies], real_images[[int(nearest_real[i]) for i in copies]],
                        out / "near_copies.png")
        pictures["near_copies"] = "near_copies.png"
    outliers = [i for i, r in enumerate(rows) if r["outlier"]][:num_show]
    if outliers:
        save_grid(synthetic_images[outliers], out / "outliers.png")
        pictures["outliers"] = "outliers.png"
    kept_idx = np.flatnonzero(kept)[:64]
    if len(kept_idx):
        save_grid(synthetic_images[kept_idx], out / "kept_sheet.png")
        pictures["kept_sheet"] = "kept_sheet.png"
    summary["pictures"] = pictures
    (out / "curation.json").write_text(json.dumps({**summary, "samples": list(rows)}, indent=2))
    (out / "curation.md").write_text(curation_markdown(summary, pictures))
    return pictures
