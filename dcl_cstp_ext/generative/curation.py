"""Automatic curation of synthetic images (in place of the paper's expert review), with its quality measures.

Every synthetic image gets, in the feature space of :func:`~dcl_cstp_ext.generative.feature_encoder.build_feature_encoder`:

- its distance to the ``k``-th nearest real training image; it is an **outlier** (far from the real manifold)
  when that distance exceeds the ``outlier_quantile`` of the real images' own leave-one-out k-NN distances;
- its distance to the nearest training image, in feature space and in pixel space (``pixel_size`` thumbnails),
  divided by the median real-real nearest-neighbour distance; it is a **near copy** (memorisation) when either
  ratio is below ``copy_threshold``;
- its realism score (Kynkaanniemi et al. 2019).

Near copies and outliers are dropped (and, with ``realism_threshold``, those below it); of the rest, the
``keep_fraction`` of *all generated* images is kept. ``selection="stratified"`` (default) groups the candidates by
their nearest real image and keeps the most realistic of every group first, then the second most realistic, and
so on, so that the kept half covers the real distribution; ``selection="realism"`` keeps the most realistic
overall, which raises precision but piles samples onto the most typical mode (on Kvasir-SEG it cost recall and
Frechet distance, see the bundle README). The kept images form the unlabelled datalist that pre-training reads.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader, Dataset

from ..data import build_folder_datalist, unlabelled_preprocess
from ..data.splits import read_datalist, write_datalist
from ..reports.curation import write_curation_report
from .feature_encoder import build_feature_encoder, extract_image_features
from .quality import (
    frechet_distance_from_features,
    knn_precision_recall,
    knn_radii,
    memorisation,
    ms_ssim_diversity,
    pairwise_distances,
    realism_scores,
    summarise,
)
from .selection import select_samples

__all__ = ["REASONS", "curate", "load_images", "synthetic_items"]

logger = logging.getLogger(__name__)

#: why a synthetic image is dropped, in order of precedence
REASONS = ("near_copy", "outlier", "below_threshold", "below_rank")


def synthetic_items(source: str | Path | Sequence[Mapping[str, Any]]) -> list[dict]:
    """Synthetic items from a list of items, a datalist JSON (its ``"training"`` split) or a folder of images
    (its ``datalist.json`` when the synthesis wrote one, else every image in it)."""

    if not isinstance(source, (str, Path)):
        return [{"image": str(it["image"])} for it in source]
    p = Path(source)
    if p.is_file():
        return [{"image": str(it["image"])} for it in read_datalist(p)["training"]]
    if (p / "datalist.json").is_file():
        return [{"image": str(it["image"])} for it in read_datalist(p / "datalist.json")["training"]]
    return [{"image": str(it["image"])} for it in build_folder_datalist(p, check_images=False)["training"]]


def load_images(items: Sequence[Mapping[str, Any]], image_size: int, channels: int, num_workers: int = 0,
                batch_size: int = 64) -> torch.Tensor:
    """The images of ``items`` as one ``(N, channels, S, S)`` float32 tensor in [0, 1] (the pre-training
    preprocessing: PIL read, channel conversion, anti-aliased resize)."""

    if not items:
        raise ValueError("no images to load")
    ds = Dataset([{"image": str(it["image"])} for it in items], unlabelled_preprocess(image_size, channels))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    return torch.cat([torch.as_tensor(b["image"]).float().as_subclass(torch.Tensor) for b in loader])


def _pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    x = images.float()
    if tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.flatten(1).double()


def _fd(a: torch.Tensor, b: torch.Tensor) -> float | None:
    return round(frechet_distance_from_features(a, b), 4) if min(len(a), len(b)) >= 2 else None


def _pr(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict | None:
    return knn_precision_recall(real, fake, k) if min(len(real), len(fake)) > k else None


def _diversity(images: torch.Tensor, pairs: int, seed: int) -> dict | None:
    return ms_ssim_diversity(images, num_pairs=pairs, seed=seed) if len(images) >= 2 else None


def curate(
    real_items: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    synthetic: str | Path | Sequence[Mapping[str, Any]],
    output_dir: str | Path,
    image_size: int = 64,
    in_channels: int = 3,
    feature_encoder: str | Path | None = None,
    feature_encoder_strict: bool = False,
    feature_size: int | None = None,
    keep_fraction: float = 0.5,
    realism_threshold: float | None = None,
    selection: str = "stratified",
    k: int = 3,
    outlier_quantile: float = 0.95,
    copy_threshold: float = 0.3,
    pixel_size: int = 32,
    max_real: int | None = None,
    ms_ssim_pairs: int = 500,
    num_show: int = 16,
    copy_kept: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict:
    """Score, filter and report synthetic images against the real training images.

    Args:
        real_items: the real training items (a list, or a datalist whose ``"training"`` split is used).
        synthetic: synthetic items, their datalist JSON, or the synthesis output folder.
        output_dir: where ``curation.json``, ``curation.md``, the PNG grids, ``curated_datalist.json`` and
            (``copy_kept``) the ``curated/`` folder of kept images (hard links when possible) are written.
        image_size, in_channels: images are read like pre-training reads them.
        feature_encoder: path of an encoder export (default of the bundle: the dcl_pretrain ``models/encoder.pt``);
            None or missing: a random ResNet-18 (see :func:`build_feature_encoder`); ``feature_encoder_strict``
            raises instead of falling back.
        feature_size: resize images to this size before the encoder (None: as read).
        keep_fraction: fraction of *generated* images kept at most (the paper kept 50%).
        realism_threshold: optional minimum realism score.
        selection: ``"stratified"`` (by nearest real image in feature space) or ``"realism"``; see
            :func:`select_samples`.
        k: neighbourhood size of k-NN radii, precision/recall and realism.
        outlier_quantile: quantile of the real-real k-NN distances above which a sample is an outlier.
        copy_threshold: nearest-training distance / median real-real NN distance below which (in feature or pixel
            space) a sample is a near copy.
        pixel_size: thumbnail size of the pixel-space memorisation check.
        max_real: use at most this many real images (seeded subset) for speed; None: all.
        ms_ssim_pairs: random pairs of the MS-SSIM diversity measure.
        num_show: images per picture (best / worst / near copies / outliers).

    Returns the summary written to ``curation.json`` (without the per-sample table).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reals = list(real_items["training"] if isinstance(real_items, Mapping) else real_items)
    if max_real is not None and len(reals) > max_real:
        pick = np.sort(np.random.default_rng(seed).choice(len(reals), size=max_real, replace=False))
        reals = [reals[i] for i in pick]
    synths = synthetic_items(synthetic)
    if len(reals) <= k or len(synths) == 0:
        raise ValueError(f"curation needs more than k={k} real images and at least one synthetic one "
                         f"(got {len(reals)} real, {len(synths)} synthetic)")
    logger.info("curation: %d synthetic vs %d real training images", len(synths), len(reals))
    real_img = load_images(reals, image_size, in_channels, num_workers, batch_size)
    syn_img = load_images(synths, image_size, in_channels, num_workers, batch_size)

    encoder, enc_info = build_feature_encoder(feature_encoder, in_channels, strict=feature_encoder_strict, seed=seed,
                                              calibration_images=real_img, device=device)
    f_real = extract_image_features(encoder, real_img, batch_size, feature_size)
    f_syn = extract_image_features(encoder, syn_img, batch_size, feature_size)

    # outliers: k-th nearest real, against the real-real leave-one-out k-NN distances
    real_knn = knn_radii(f_real, k)
    outlier_limit = float(torch.quantile(real_knn, outlier_quantile))
    syn_knn = pairwise_distances(f_syn, f_real).topk(k, dim=1, largest=False).values[:, -1]
    outlier = syn_knn > outlier_limit
    # memorisation: nearest training image in feature and pixel space
    mem_f = memorisation(f_syn, f_real)
    mem_p = memorisation(_pixels(syn_img, pixel_size), _pixels(real_img, pixel_size))
    near_copy = (mem_f["ratio"] < copy_threshold) | (mem_p["ratio"] < copy_threshold)
    realism = realism_scores(f_real, f_syn, k)
    keep, reasons = select_samples(realism, outlier, near_copy, keep_fraction, realism_threshold,
                                   groups=mem_f["index"], selection=selection)
    kept_idx = np.flatnonzero(keep)

    rows = []
    for i, it in enumerate(synths):
        rows.append({
            "image": it["image"],
            "kept": bool(keep[i]),
            "reason": reasons[i],
            "realism": round(float(realism[i]), 5),
            "knn_distance": round(float(syn_knn[i]), 5),
            "outlier": bool(outlier[i]),
            "near_copy": bool(near_copy[i]),
            "feature_nn_ratio": round(float(mem_f["ratio"][i]), 5),
            "pixel_nn_ratio": round(float(mem_p["ratio"][i]), 5),
            "nearest_real_feature": reals[int(mem_f["index"][i])]["image"],
            "nearest_real_pixel": reals[int(mem_p["index"][i])]["image"],
        })

    # measures on all generated images and on the kept ones
    kept_t = torch.as_tensor(kept_idx, dtype=torch.long)
    rng = np.random.default_rng(seed)
    real_sub = torch.as_tensor(np.sort(rng.choice(len(real_img), size=min(len(real_img), max(len(synths), 2)),
                                                  replace=False)))
    # a random subset of the kept size: the reference of the kept set's measures (they depend on the sample size)
    rand_t = torch.as_tensor(np.sort(rng.choice(len(synths), size=len(kept_idx), replace=False)), dtype=torch.long)
    metrics = {
        "frechet_distance": {"all": _fd(f_real, f_syn), "kept": _fd(f_real, f_syn[kept_t]),
                             "random_same_size": _fd(f_real, f_syn[rand_t])},
        "precision_recall": {"all": _pr(f_real, f_syn, k), "kept": _pr(f_real, f_syn[kept_t], k),
                             "random_same_size": _pr(f_real, f_syn[rand_t], k)},
        "ms_ssim_diversity": {"all": _diversity(syn_img, ms_ssim_pairs, seed),
                              "kept": _diversity(syn_img[kept_t], ms_ssim_pairs, seed),
                              "real": _diversity(real_img[real_sub], ms_ssim_pairs, seed)},
        "realism": {"all": summarise(realism), "kept": summarise(realism[kept_t])},
        "memorisation": {
            "feature_nn_ratio": summarise(mem_f["ratio"]),
            "pixel_nn_ratio": summarise(mem_p["ratio"]),
            "real_feature_nn_ratio": summarise(mem_f["real_ratio"]),
            "real_pixel_nn_ratio": summarise(mem_p["real_ratio"]),
            "real_pairs_below_copy_threshold": {
                "feature": int((mem_f["real_ratio"] < copy_threshold).sum()),
                "pixel": int((mem_p["real_ratio"] < copy_threshold).sum()),
            },
        },
    }
    counts = {"generated": len(synths), "kept": int(keep.sum()), "dropped": int((~keep).sum())}
    counts["dropped_by_reason"] = {r: sum(1 for x in reasons if x == r) for r in REASONS}
    counts["flagged"] = {"near_copy": int(near_copy.sum()), "outlier": int(outlier.sum())}
    summary = {
        "counts": counts,
        "settings": {
            "keep_fraction": keep_fraction, "realism_threshold": realism_threshold, "selection": selection, "k": k,
            "outlier_quantile": outlier_quantile, "outlier_knn_distance_limit": round(outlier_limit, 5),
            "copy_threshold": copy_threshold, "pixel_size": pixel_size, "image_size": image_size,
            "in_channels": in_channels, "feature_size": feature_size, "num_real": len(reals), "seed": seed,
        },
        "feature_encoder": enc_info,
        "metrics": metrics,
    }

    kept_items = [{"image": synths[i]["image"]} for i in kept_idx]
    if copy_kept:
        folder = out / "curated"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        linked = []
        for it in kept_items:
            src = Path(it["image"])
            dst = folder / src.name
            if dst.exists():  # same file name from another folder
                dst = folder / f"{len(linked):05d}_{src.name}"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            linked.append({"image": str(dst.resolve())})
        kept_items = linked
        summary["curated_dir"] = str(folder.resolve())
    write_datalist(out / "curated_datalist.json", {"training": kept_items})
    summary["curated_datalist"] = str((out / "curated_datalist.json").resolve())
    write_curation_report(out, summary, rows, syn_img, real_img, realism, mem_f["index"], num_show)
    logger.info("curation: kept %d of %d (dropped %s); FD all %s kept %s", counts["kept"], counts["generated"],
                counts["dropped_by_reason"], metrics["frechet_distance"]["all"], metrics["frechet_distance"]["kept"])
    return summary
