"""A run's frozen-encoder probe: what each encoder's frozen features know before any fine-tuning, compared image by
image with a random encoder of the same architecture (METHOD.md, "Measuring feature quality without fine-tuning").

Every labelled image of the split (training + validation, never a test split) is a query once, over ``folds``
stratified folds (:mod:`.frozen_probe`): a weighted k-NN vote and a linear probe of the pooled C5 feature predict the
class (classification data) or the lesion-size tertile (segmentation data), and for segmentation data a dense
linear probe predicts the mask from the C3-C5 maps (per-image Dice). Each score is kept per image, so that two
encoders probed on the same images and folds are compared pair by pair (:func:`.frozen_probe.paired_difference`).

* :func:`probe_encoders`: several encoders at once, each compared with the first (``benchmarks/probe_encoders.py
  --protocol cv``);
* :func:`run_probe`: one encoder, its per-image scores written beside its ``probe.json`` and compared with a
  reference run's (the pipeline's ``probe/<init>`` stages against ``probe/random``; the bundle workflow
  ``bundles/dcl_pretrain/configs/probe.json``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader

from ..networks import PixelPatchEncoder, ResNetEncoder2D, load_encoder
from ..networks.export import read_export_meta
from ..utils import environment_info
from .frozen_probe import (
    cross_validated_dense_linear,
    cross_validated_knn,
    cross_validated_linear,
    dense_features,
    paired_difference,
    probe_folds,
)
from .knn_monitor import extract_features, lesion_size_labels

__all__ = ["PROBE_SCORES", "build_probe_encoder", "labelled_items", "probe_encoders", "probe_scores", "run_probe",
           "summarise_scores"]

logger = logging.getLogger("dcl_cstp.probe")

#: the per-image scores of a probe, in the order of the tables: right/wrong for the two global probes, Dice for the
#: dense one (segmentation data only)
PROBE_SCORES = ("knn_accuracy", "linear_accuracy", "dense_dice")


def labelled_items(datalist: Mapping) -> tuple[list[dict], str]:
    """Every labelled item of ``datalist`` (training + validation, never a test split) with its probe ``label``: the
    class, or for segmentation data the lesion-size tertile over all of them (the mask is kept as ``mask``).
    Returns the items and what the labels are."""
    items = list(datalist["training"]) + list(datalist.get("validation") or [])
    if not items:
        raise ValueError("the probe needs labelled items; the split has no training or validation item")
    if isinstance(items[0]["label"], (int, np.integer)):
        return [{"image": it["image"], "label": int(it["label"])} for it in items], "classes"
    labels, _ = lesion_size_labels([it["label"] for it in items])
    return ([{"image": it["image"], "mask": it["label"], "label": lab} for it, lab in zip(items, labels)],
            "lesion-size tertiles")


def build_probe_encoder(encoder: str | None, backbone: str, in_channels: int,
                        seed: int = 0) -> ResNetEncoder2D | PixelPatchEncoder:
    """A ResNet encoder: randomly initialised (seeded) when ``encoder`` is None or ``"random"``, else with the
    weights of the export at ``encoder``, whose recorded backbone must be ``backbone``. ``"pixels"``: no encoder
    at all, each cell's raw pixels (:class:`~dcl_cstp_ext.networks.PixelPatchEncoder`, the probes' floor)."""
    if encoder == "pixels":
        return PixelPatchEncoder(in_channels)
    torch.manual_seed(seed)
    net = ResNetEncoder2D(backbone, in_channels)
    if encoder in (None, "random"):
        return net
    recorded = read_export_meta(encoder).get("backbone")
    if recorded and recorded != backbone:
        raise ValueError(f"{encoder} is a {recorded} encoder, but the probe compares {backbone} encoders: set the "
                         f"probe's backbone to {recorded}")
    load_encoder(net, encoder)
    return net


def probe_loader(items: Sequence[Mapping], image_size: int, in_channels: int, batch_size: int = 64) -> DataLoader:
    """The probe's images (and masks), decoded once at ``image_size`` and cached in memory, in ``items``' order."""
    from monai.transforms import Compose, EnsureTyped

    from ..data import classification_preprocess, make_cached_dataset, segmentation_preprocess

    if "mask" in items[0]:  # one decode and one forward pass give the pooled and the dense features
        seg = segmentation_preprocess(image_size=image_size, channels=in_channels, label_key="mask")
        chain = Compose([seg, EnsureTyped("label", data_type="tensor", dtype=torch.long, track_meta=False)])
    else:
        chain = classification_preprocess(image_size=image_size, channels=in_channels)
    return DataLoader(make_cached_dataset(list(items), chain), batch_size=batch_size, num_workers=0)


#: the stages of the dense probe (``dense_features``' C3-C5 maps) and, for ``stage_dice``, each one alone
DENSE_STAGES = (2, 3, 4)


def probe_scores(encoder: torch.nn.Module, loader: DataLoader, labels: np.ndarray, fold: np.ndarray, dense: bool,
                 seed: int = 0, device: str | torch.device = "cpu", stage_dice: bool = False) -> dict[str, np.ndarray]:
    """Per-image scores ``(N,)`` of ``encoder``'s frozen features: ``knn_accuracy`` and ``linear_accuracy`` (bool,
    right or wrong) and, when ``dense``, ``dense_dice`` (float). With ``stage_dice`` (a diagnostic: which depth of
    the encoder a dense difference comes from), also ``dense_dice_c3`` .. ``dense_dice_c5``: the same dense probe on
    one stage's map alone."""
    encoder = encoder.to(device)
    num_classes = int(labels.max()) + 1
    scores = {}
    if dense:
        maps, masks, feats = dense_features(encoder, loader, DENSE_STAGES, device=device, label_key="mask")
        scores["dense_dice"] = cross_validated_dense_linear(maps, masks, fold, seed=seed)
        widths = [encoder.feature_channels[s] for s in DENSE_STAGES]
        for stage, part in zip(DENSE_STAGES, np.split(maps, np.cumsum(widths)[:-1], axis=1)) if stage_dice else ():
            scores[f"dense_dice_c{stage + 1}"] = cross_validated_dense_linear(part, masks, fold, seed=seed)
        del maps
    else:
        feats = extract_features(encoder, loader, device)[0].numpy()
    scores["knn_accuracy"] = cross_validated_knn(feats, labels, fold, num_classes)
    scores["linear_accuracy"] = cross_validated_linear(feats, labels, fold)
    return {k: scores[k] for k in (*PROBE_SCORES, *sorted(scores)) if k in scores}


def summarise_scores(scores: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None = None,
                     reference_name: str = "random") -> dict:
    """Each score's mean in points (x100), its standard error (binomial for accuracies) and, given the
    ``reference``'s scores on the same images, the paired difference ``<score>_vs_<reference_name>``."""
    row = {}
    for name, values in scores.items():
        accuracy = name.endswith("accuracy")
        mean = float(np.mean(values))
        row[name] = 100 * mean
        if accuracy:
            row[f"{name}_binomial_se"] = 100 * (mean * (1 - mean) / len(values)) ** 0.5
        else:
            row[f"{name}_se"] = 100 * float(np.std(values, ddof=1) / len(values) ** 0.5)
        if reference is not None and name in reference:
            row[f"{name}_vs_{reference_name}"] = paired_difference(values, reference[name])
    return row


def _setup(datalist: Mapping, folds: int, seed: int) -> tuple[list[dict], str, np.ndarray, np.ndarray]:
    """Items, what their labels are, the labels and the fold of each: ``folds`` stratified folds, fewer when the
    rarest label has fewer images (a fold needs one of each), refused below 2."""
    items, kind = labelled_items(datalist)
    labels = np.array([it["label"] for it in items])
    counts = np.bincount(labels)
    rarest = int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))
    usable = min(folds, int(counts[rarest]))
    if usable < 2:
        raise ValueError(f"the frozen-encoder probe needs at least 2 labelled images of each label; label {rarest} "
                         f"({kind}) has {int(counts[rarest])}")
    if usable < folds:
        logger.warning(f"probe: {usable} folds instead of {folds}: label {rarest} has {int(counts[rarest])} images")
    return items, kind, labels, probe_folds(labels, usable, seed)


def probe_encoders(datalist: Mapping, encoders: Sequence[str | None], image_size: int, backbone: str,
                   in_channels: int, seed: int = 0, folds: int = 5, device: str | torch.device = "cpu",
                   log: Callable[[str], None] = logger.info, stage_dice: bool = False) -> dict:
    """Probe each of ``encoders`` (an export path, None / ``"random"`` or ``"pixels"``) on ``datalist``'s labelled
    images at ``image_size``; every encoder after the first is compared with the first (``*_vs_random`` when the
    first is random, else ``*_vs_reference``). Returns the report: protocol, labels, majority-class accuracy and a
    row per encoder."""
    items, kind, labels, fold = _setup(datalist, folds, seed)
    t0 = time.perf_counter()
    loader = probe_loader(items, image_size, in_channels)
    log(f"{len(items)} images decoded at {image_size} px in {time.perf_counter() - t0:.0f} s")
    results, reference, reference_name = [], None, None
    for encoder in encoders:
        name = encoder or "random"
        t0 = time.perf_counter()
        scores = probe_scores(build_probe_encoder(encoder, backbone, in_channels, seed), loader, labels, fold,
                              "mask" in items[0], seed, device, stage_dice)
        row = {"encoder": name, "image_size": image_size, "images": len(items), "folds": int(fold.max()) + 1,
               **summarise_scores(scores, reference, reference_name)}
        if reference is None:
            reference, reference_name = scores, "random" if name == "random" else "reference"
        row["seconds"] = round(time.perf_counter() - t0, 1)
        log(str(row))
        results.append(row)
    return {"protocol": f"{int(fold.max()) + 1}-fold cross-validation", "labels": kind, "backbone": backbone,
            "majority_class_accuracy": 100 * float(np.bincount(labels).max() / len(labels)),
            "reference_encoder": results[0]["encoder"], "results": results}


def run_probe(datalist: Mapping, output_dir: str | Path, image_size: int, backbone: str, in_channels: int,
              encoder: str | None = None, reference_dir: str | Path | None = None, seed: int = 0, folds: int = 5,
              device: str | torch.device = "cpu") -> dict:
    """Probe one ``encoder`` (None: a random one) and write ``output_dir/probe.json`` (the summary, with the
    versions) and ``output_dir/scores.npz`` (the images, folds and per-image scores). With ``reference_dir`` (a
    finished probe of the same images and folds, e.g. the random encoder's), each score is also compared with the
    reference's, pair by pair. Returns the summary."""
    start = time.perf_counter()
    items, kind, labels, fold = _setup(datalist, folds, seed)
    images = np.array([str(it["image"]) for it in items])
    reference = None
    if reference_dir is not None:
        with np.load(Path(reference_dir) / "scores.npz") as ref:
            if not (np.array_equal(ref["images"], images) and np.array_equal(ref["fold"], fold)):
                raise ValueError(f"the reference probe {reference_dir} was made on other images or folds than this "
                                 "one: probe both with the same split, seed and folds")
            reference = {k: ref[k] for k in PROBE_SCORES if k in ref.files}
    net = build_probe_encoder(encoder, backbone, in_channels, seed)
    scores = probe_scores(net, probe_loader(items, image_size, in_channels), labels, fold, "mask" in items[0], seed,
                          device)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "scores.npz", images=images, fold=fold, labels=labels, **scores)
    summary = {"encoder": str(encoder) if encoder else "random", "reference": str(reference_dir) if reference_dir
               else None, "backbone": backbone, "image_size": image_size, "images": len(items),
               "folds": int(fold.max()) + 1,
               "labels": kind, "majority_class_accuracy": 100 * float(np.bincount(labels).max() / len(labels)),
               **summarise_scores(scores, reference), "seconds": round(time.perf_counter() - start, 1),
               "environment": environment_info()}
    (out / "probe.json").write_text(json.dumps(summary, indent=2, default=str))
    logger.info(f"probe of {summary['encoder']}: " + ", ".join(f"{k} {summary[k]:.1f}" for k in scores))
    return summary
