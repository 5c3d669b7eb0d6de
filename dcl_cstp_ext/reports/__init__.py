"""What the downstream workflows write for a person to read: evaluation reports, inference masks, pictures."""

from .classification import ClassificationReport, plot_confusion_matrix
from .masks import SegmentationWriter
from .overlay import overlay_mask, to_rgb_uint8
from .segmentation import SegmentationReport, save_case_figure, save_cases_montage

__all__ = [
    "ClassificationReport",
    "SegmentationReport",
    "SegmentationWriter",
    "overlay_mask",
    "plot_confusion_matrix",
    "save_case_figure",
    "save_cases_montage",
    "to_rgb_uint8",
]
