"""Downstream tasks of DCL-CsTP (stage 3): classification and segmentation helpers of the task bundles.

Bundles import the sub-modules by their full path (``"$import dcl_cstp_ext.downstream.classification"``).
"""

from .classification import (
    ClassificationReport,
    ClassifierInfo,
    ClassProbabilitiesd,
    OneHotBCEWithLogitsLoss,
    ToChannelsd,
    build_classification_loss,
    class_probabilities,
    classification_augmentation,
    classification_metrics,
    confusion_matrix,
    plot_confusion_matrix,
    read_classifier_info,
    roc_auc_ovr,
)

# segmentation exports are added by the segmentation module's author

__all__ = [
    "ClassificationReport",
    "ClassifierInfo",
    "ClassProbabilitiesd",
    "OneHotBCEWithLogitsLoss",
    "ToChannelsd",
    "build_classification_loss",
    "class_probabilities",
    "classification_augmentation",
    "classification_metrics",
    "confusion_matrix",
    "plot_confusion_matrix",
    "read_classifier_info",
    "roc_auc_ovr",
]
