"""What the workflows write for a person to read: evaluation reports, inference masks, the curation report, the
pipeline report, image grids and other pictures."""

from .classification import ClassificationReport, plot_confusion_matrix
from .curation import curation_document, curation_markdown, write_curation_report
from .document import Document
from .images import make_grid, save_grid, save_pairs_grid, save_png, to_uint8
from .masks import SegmentationWriter
from .overlay import overlay_mask, to_rgb_uint8
from .segmentation import SegmentationReport, save_case_figure, save_cases_montage

__all__ = [
    "ClassificationReport",
    "Document",
    "SegmentationReport",
    "SegmentationWriter",
    "curation_document",
    "curation_markdown",
    "make_grid",
    "save_grid",
    "save_pairs_grid",
    "save_png",
    "to_uint8",
    "write_curation_report",
    "overlay_mask",
    "plot_confusion_matrix",
    "save_case_figure",
    "save_cases_montage",
    "to_rgb_uint8",
]
