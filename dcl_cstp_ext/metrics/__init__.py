"""Metrics of the downstream tasks: classification (from a confusion matrix) and binary segmentation (per image)."""

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
    "per_class_f1",
    "per_class_precision",
    "per_class_recall",
    "roc_auc_ovr",
    "segmentation_metrics",
    "summarize",
]
