"""The curation report: ``curation.json`` (summary + per-sample table), ``curation.md`` and its PNG grids;
:func:`curation_document` makes the same report as blocks for the pipeline report."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .document import Document
from .images import save_grid, save_pairs_grid

__all__ = ["write_curation_report", "curation_document", "curation_markdown"]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


CAPTIONS = {
    "best": "Most realistic kept samples",
    "kept_vs_nearest_real": "Kept samples beside their nearest real training image (feature space): synthetic | real",
    "worst": "Least realistic samples",
    "near_copies": "Near copies: synthetic | nearest training image",
    "outliers": "Outliers",
    "kept_sheet": "Kept samples (contact sheet)",
}


def curation_document(
    summary: Mapping[str, Any], pictures: Mapping[str, str], root: str | Path | None = None
) -> Document:
    """The human-readable report of a curation ``summary`` (see :func:`~dcl_cstp_ext.generative.curate`);
    ``pictures`` are file names in ``root``, the folder ``curation.md`` is written to."""
    c, s, m, enc = summary["counts"], summary["settings"], summary["metrics"], summary["feature_encoder"]
    doc = Document(root)
    doc.heading(1, "Curation of synthetic images")
    doc.paragraph(f"Kept **{c['kept']}** of {c['generated']} generated images (keep fraction {s['keep_fraction']}"
                  + (f", realism threshold {s['realism_threshold']}" if s.get("realism_threshold") is not None else "")
                  + f"), compared with {s['num_real']} real training images.")
    doc.table(["reason", "dropped"], [[r, str(n)] for r, n in c["dropped_by_reason"].items()]
              + [["**kept**", f"**{c['kept']}**"]])
    doc.paragraph(f"Flags (a sample may carry both): near copy {c['flagged']['near_copy']}, "
                  f"outlier {c['flagged']['outlier']}.")
    doc.heading(2, "Criteria")
    doc.bullets([
        f"**outlier**: distance to the {s['k']}-th nearest real image in feature space above "
        f"{_fmt(s['outlier_knn_distance_limit'])}, the {s['outlier_quantile']} quantile of the real images' own "
        "leave-one-out k-NN distances.",
        f"**near copy**: distance to the nearest training image below {s['copy_threshold']} x the median "
        f"real-real nearest-neighbour distance, in feature space or in pixel space ({s['pixel_size']} px).",
        ("**rank**: of the rest, up to the keep fraction of all generated images, the most realistic (realism "
         "score, Kynkaanniemi et al. 2019) of every real image's neighbourhood first, then the second most "
         "realistic, ... (stratified: the kept images cover the real distribution)."
         if s.get("selection", "stratified") == "stratified" else
         "**rank**: of the rest, the most realistic (realism score, Kynkaanniemi et al. 2019) up to the keep "
         "fraction of all generated images."),
    ])
    if enc.get("encoder") == "random":
        doc.paragraph(f"Feature encoder: {enc['description']}. No pretrained encoder was given or found"
                      + (f" (looked for `{enc['requested_path']}`)" if enc.get("requested_path") else "")
                      + ": random-feature distances are a known, imperfect proxy (texture, colour, layout rather "
                      "than semantics); they compare samplers and checkpoints on the same data, not with published "
                      "FIDs.")
    else:
        doc.paragraph(f"Feature encoder: `{enc.get('path')}` ({enc.get('backbone')}, {enc.get('in_channels')} "
                      "channel(s)).")
    doc.heading(2, "Measures")
    doc.paragraph("Against the real training images; Frechet distance and recall depend on the number of images, so "
                  "the kept set is compared with a random subset of the same size.")
    fd, pr, ms = m["frechet_distance"], m["precision_recall"], m["ms_ssim_diversity"]
    rows = [["Frechet distance to real (features)", _fmt(fd["all"]), _fmt(fd["kept"]),
             _fmt(fd.get("random_same_size"))]]
    for key in ("precision", "recall"):
        vals = [pr[c][key] if pr.get(c) else None for c in ("all", "kept", "random_same_size")]
        rows.append([f"k-NN {key} (k={s['k']})"] + [_fmt(v, 3) for v in vals])
    rows.append([f"MS-SSIM between random pairs (lower = more diverse; real: "
                 f"{_fmt(ms['real']['ms_ssim'] if ms['real'] else None, 3)})",
                 _fmt(ms["all"]["ms_ssim"] if ms["all"] else None, 3),
                 _fmt(ms["kept"]["ms_ssim"] if ms["kept"] else None, 3), ""])
    rows.append(["realism score, median", _fmt(m["realism"]["all"].get("median"), 3),
                 _fmt(m["realism"]["kept"].get("median"), 3) if m["realism"]["kept"] else "n/a", ""])
    doc.table(["measure", "all generated", "kept", "random subset, same size"], rows)
    mem = m["memorisation"]
    doc.paragraph("Memorisation (nearest training image distance / median real-real nearest-neighbour distance):")
    rows = []
    for space in ("feature", "pixel"):
        syn, real = mem[f"{space}_nn_ratio"], mem[f"real_{space}_nn_ratio"]
        rows.append([space, _fmt(syn.get("p05"), 3), _fmt(syn.get("median"), 3), _fmt(real.get("p05"), 3),
                     str(mem["real_pairs_below_copy_threshold"][space])])
    doc.table(["space", "synthetic p05", "synthetic median", "real-real p05", "real pairs below threshold"], rows)
    doc.heading(2, "Pictures")
    for key, caption in CAPTIONS.items():
        if key in pictures:
            doc.image(Path(root) / pictures[key] if root is not None else pictures[key], caption)
    doc.paragraph(f"Kept datalist: `{summary.get('curated_datalist')}`"
                  + (f"; kept images: `{summary['curated_dir']}`" if summary.get("curated_dir") else "") + ".")
    return doc


def curation_markdown(summary: Mapping[str, Any], pictures: Mapping[str, str]) -> str:
    """:func:`curation_document` as Markdown (``curation.md``)."""
    return curation_document(summary, pictures).markdown()


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
