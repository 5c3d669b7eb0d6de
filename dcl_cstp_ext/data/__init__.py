"""Data layer: data set readers and seeded splits (MONAI datalists), input validation, 2-D preprocessing
transforms with caching, built-in demo data and a loading benchmark."""

from .class_names import channel_def_names, class_names_of
from .covid_radiography import COVID_CLASSES, build_covid_radiography_datalist
from .demo_data import make_demo_data
from .errors import DataError
from .folder import build_folder_datalist, build_pretrain_datalist
from .inference import evaluation_items, evaluation_split, inference_items
from .isic2018 import build_isic2018_datalist
from .kvasir_seg import build_kvasir_seg_datalist
from .pediatric_cxr import PEDIATRIC_CLASSES, build_pediatric_cxr_datalist, pediatric_label
from .preprocess import (
    BinarizeMaskd,
    CheckSameSized,
    LoadImage2D,
    LoadImage2Dd,
    Resize2Dd,
    classification_preprocess,
    crop_source_size,
    load_image_transforms,
    make_cached_dataset,
    read_image,
    segmentation_preprocess,
    unlabelled_preprocess,
)
from .registry import DATASET_KINDS, DATASETS, build_datalist, detect_dataset
from .splits import SPLITS, read_datalist, split_items, subsample_labels, write_datalist
from .validation import ValidationReport, validate_datalist

__all__ = [
    "COVID_CLASSES",
    "DATASETS",
    "PEDIATRIC_CLASSES",
    "SPLITS",
    "DATASET_KINDS",
    "BinarizeMaskd",
    "CheckSameSized",
    "DataError",
    "LoadImage2D",
    "LoadImage2Dd",
    "Resize2Dd",
    "ValidationReport",
    "build_covid_radiography_datalist",
    "channel_def_names",
    "class_names_of",
    "evaluation_items",
    "evaluation_split",
    "build_datalist",
    "build_folder_datalist",
    "build_isic2018_datalist",
    "build_kvasir_seg_datalist",
    "build_pediatric_cxr_datalist",
    "build_pretrain_datalist",
    "classification_preprocess",
    "crop_source_size",
    "detect_dataset",
    "load_image_transforms",
    "make_cached_dataset",
    "make_demo_data",
    "pediatric_label",
    "inference_items",
    "read_datalist",
    "read_image",
    "segmentation_preprocess",
    "split_items",
    "subsample_labels",
    "unlabelled_preprocess",
    "validate_datalist",
    "write_datalist",
]
