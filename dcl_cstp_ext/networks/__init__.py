"""Networks: the 2-D ResNet encoder, CsTP and the other heads, the classifier, encoder-weight and module utilities."""

from .classifier import ResNetClassifier
from .classifier_info import ClassifierInfo, read_classifier_info
from .cross_scale_attention import CrossScaleAttention, CrossScaleReduction, CrossScaleTokenProjection
from .export import (
    ExportMeta,
    atomic_save,
    check_against_training,
    meta_sidecar,
    read_export,
    read_export_meta,
    save_export,
    split_export,
    split_for_release,
    trained_settings,
)
from .finetune import init_encoder
from .heads import MLPHead, build_projection_head
from .pixel_patches import PixelPatchEncoder
from .resnet_encoder import (
    ENCODER_CHANNELS,
    PooledResNetEncoder2D,
    ResNetEncoder2D,
    ZeroPadShortcut,
    scriptable_shortcuts,
)
from .split_batchnorm import bn_splits_for, deinterleave, interleave
from .utils import eval_mode, to_device, unwrap
from .weights import extract_encoder_state, load_encoder

__all__ = [
    "ResNetEncoder2D",
    "PooledResNetEncoder2D",
    "PixelPatchEncoder",
    "ENCODER_CHANNELS",
    "ZeroPadShortcut",
    "scriptable_shortcuts",
    "CrossScaleReduction",
    "CrossScaleAttention",
    "CrossScaleTokenProjection",
    "MLPHead",
    "build_projection_head",
    "ResNetClassifier",
    "ClassifierInfo",
    "read_classifier_info",
    "check_against_training",
    "trained_settings",
    "atomic_save",
    "ExportMeta",
    "read_export",
    "read_export_meta",
    "save_export",
    "split_export",
    "split_for_release",
    "meta_sidecar",
    "extract_encoder_state",
    "load_encoder",
    "init_encoder",
    "bn_splits_for",
    "interleave",
    "deinterleave",
    "eval_mode",
    "unwrap",
    "to_device",
]
