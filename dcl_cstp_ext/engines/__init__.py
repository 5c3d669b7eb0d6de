"""Engines: the training step and trainer base, the pre-training trainer, k-NN monitor, checkpoints, handlers,
validation bookkeeping and what an engine's output holds per image."""

from .checkpoint import ResumableCheckpoint, RNGState
from .distributed import close_process_group, open_process_group
from .embeddings import EmbeddingWriter, save_embeddings
from .encoder_probe import (
    PROBE_SCORES,
    build_probe_encoder,
    labelled_items,
    probe_encoders,
    run_probe,
    summarise_scores,
)
from .frozen_probe import (
    cross_validated_dense_linear,
    cross_validated_knn,
    cross_validated_linear,
    dense_features,
    paired_difference,
    probe_folds,
)
from .guards import LossGuard, non_finite_tensors
from .handlers import EncoderExport, EpochSummary, ProgressBarHandler, is_main_process
from .inferers import FlipTTAInferer
from .knn_monitor import KNNMonitor, build_knn_monitor, extract_features, knn_predict, lesion_size_labels, monitor_split
from .optim import (
    METHOD_LR,
    KeepFixedLR,
    build_lr_scheduler,
    build_optimizer,
    epochs_for,
    finetune_param_groups,
    method_lr,
)
from .outputs import label_index, per_image_items, source_filename, stacked_output
from .prepare_batch import ImageLabelPrepareBatch
from .pretrain_trainer import PretrainTrainer
from .seeded_data import EpochSeededSampler, SeededAugmentDataset, seeded_cached_dataset
from .step import amp_dtype, autocast_for, grad_scaler_for, optimizer_step, ssl_train_step
from .tracking import mlflow_compatible, trainer_handlers
from .trainer_base import StepTrainer
from .validation import BestMetricState, ValidationLog, rank_zero_summary_writer

__all__ = [
    "ResumableCheckpoint",
    "close_process_group",
    "open_process_group",
    "RNGState",
    "EmbeddingWriter",
    "save_embeddings",
    "LossGuard",
    "non_finite_tensors",
    "EncoderExport",
    "EpochSummary",
    "ProgressBarHandler",
    "is_main_process",
    "cross_validated_dense_linear",
    "cross_validated_knn",
    "dense_features",
    "cross_validated_linear",
    "paired_difference",
    "probe_folds",
    "PROBE_SCORES",
    "build_probe_encoder",
    "labelled_items",
    "probe_encoders",
    "run_probe",
    "summarise_scores",
    "KNNMonitor",
    "build_knn_monitor",
    "extract_features",
    "knn_predict",
    "lesion_size_labels",
    "monitor_split",
    "build_lr_scheduler",
    "build_optimizer",
    "epochs_for",
    "finetune_param_groups",
    "FlipTTAInferer",
    "KeepFixedLR",
    "METHOD_LR",
    "method_lr",
    "PretrainTrainer",
    "EpochSeededSampler",
    "SeededAugmentDataset",
    "amp_dtype",
    "autocast_for",
    "grad_scaler_for",
    "optimizer_step",
    "ssl_train_step",
    "StepTrainer",
    "mlflow_compatible",
    "trainer_handlers",
    "label_index",
    "per_image_items",
    "source_filename",
    "stacked_output",
    "ImageLabelPrepareBatch",
    "seeded_cached_dataset",
    "BestMetricState",
    "ValidationLog",
    "rank_zero_summary_writer",
]
