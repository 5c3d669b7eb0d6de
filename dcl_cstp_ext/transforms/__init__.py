"""Strong augmentation and multi-view transforms of DCL-CsTP (MONAI dictionary transforms).

Main entry points: :class:`StrongAugmentd` (the 8-operation strong augmentation), :class:`MultiViewd` and
:func:`strong_views_transform` (the three pre-training views). The single operations are exported too, and the fine-tuning
augmentations, channel conversion and class probabilities of the downstream bundles.
"""

from .channels import ToChannelsd
from .color_jitter import RandColorJitter, RandColorJitterd
from .finetune import classification_augmentation, segmentation_augmentation
from .intensity import (
    LUMA,
    AutoContrast,
    ClipIntensity,
    ClipIntensityd,
    Equalize,
    RandAutoContrastd,
    RandBrightnessd,
    RandEqualized,
    RandSharpness,
    RandSharpnessd,
    rgb_to_grey,
)
from .poisson_noise import RandPoissonNoise, RandPoissonNoised
from .probabilities import ACTIVATIONS, ClassProbabilitiesd, class_probabilities
from .spatial import RandResizedCrop, RandResizedCropd
from .strong_augment import ALL_OP_NAMES, OP_NAMES, StrongAugmentd
from .views import MultiViewd, strong_views_transform

__all__ = [
    "ACTIVATIONS",
    "LUMA",
    "ClassProbabilitiesd",
    "ToChannelsd",
    "class_probabilities",
    "classification_augmentation",
    "segmentation_augmentation",
    "ALL_OP_NAMES",
    "OP_NAMES",
    "AutoContrast",
    "ClipIntensity",
    "ClipIntensityd",
    "Equalize",
    "MultiViewd",
    "RandAutoContrastd",
    "RandBrightnessd",
    "RandColorJitter",
    "RandColorJitterd",
    "RandEqualized",
    "RandPoissonNoise",
    "RandPoissonNoised",
    "RandResizedCrop",
    "RandResizedCropd",
    "RandSharpness",
    "RandSharpnessd",
    "StrongAugmentd",
    "rgb_to_grey",
    "strong_views_transform",
]
