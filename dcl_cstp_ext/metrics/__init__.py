"""Metrics of the downstream tasks: classification (from a confusion matrix) and binary segmentation (per image);
the paired comparison of two initialisations over seeds."""

from .classification import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_precision,
    macro_recall,
    per_class_f1,
    per_class_precision,
    per_class_recall,
    roc_auc_ovr,
)
from .paired import PairedComparison, paired_by_key, paired_comparison, signed_rank_floor
from .segmentation import (
    METRIC_NAMES,
    binary_mask,
    dice_score,
    hausdorff_distance,
    hausdorff_distances,
    iou_score,
    mask_contour,
    segmentation_metrics,
    summarize,
)

__all__ = [
    "METRIC_NAMES",
    "PairedComparison",
    "accuracy",
    "binary_mask",
    "classification_metrics",
    "confusion_matrix",
    "dice_score",
    "hausdorff_distance",
    "hausdorff_distances",
    "iou_score",
    "macro_precision",
    "macro_recall",
    "mask_contour",
    "paired_by_key",
    "paired_comparison",
    "signed_rank_floor",
    "per_class_f1",
    "per_class_precision",
    "per_class_recall",
    "roc_auc_ovr",
    "segmentation_metrics",
    "summarize",
]
