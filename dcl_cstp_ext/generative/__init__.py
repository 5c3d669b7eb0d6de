"""Stage 1, latent-diffusion synthesis: the autoencoder and denoiser trainers, the latent scale factor, samplers
(DDPM, DDIM, DPM-Solver++), synthesis to disk, quality measures and automatic curation (its report and the
image grids are in :mod:`dcl_cstp_ext.reports`).

The ``ldm_synthesis`` bundle wires these into MONAI bundle configs (``"$import dcl_cstp_ext.generative"``).
"""

from .autoencoder_engine import AutoencoderTrainer
from .checkpoints import GenerativeExport, check_schedule, load_weights, read_checkpoint_meta, read_scale_factor
from .curation import REASONS, curate, load_images, synthetic_items
from .diffusion_engine import DiffusionTrainer, LatentScale, compute_scale_factor, freeze
from .feature_encoder import build_feature_encoder, extract_image_features
from .handlers import ReconstructionGrid, SampleGrid
from .quality import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    knn_precision_recall,
    knn_radii,
    memorisation,
    ms_ssim_diversity,
    realism_scores,
)
from .samplers import (
    DEFAULT_STEPS,
    SAMPLERS,
    ddim_from_ddpm,
    decode_latents,
    dpm_solver_from_ddpm,
    generate_images,
    latent_shape_of,
    make_sampler_scheduler,
    sample_latents,
)
from .selection import SELECTIONS, select_samples
from .synthesis import synthesize

__all__ = [
    "AutoencoderTrainer",
    "DiffusionTrainer",
    "LatentScale",
    "compute_scale_factor",
    "freeze",
    "GenerativeExport",
    "load_weights",
    "read_checkpoint_meta",
    "read_scale_factor",
    "check_schedule",
    "ReconstructionGrid",
    "SampleGrid",
    "SAMPLERS",
    "DEFAULT_STEPS",
    "ddim_from_ddpm",
    "dpm_solver_from_ddpm",
    "make_sampler_scheduler",
    "sample_latents",
    "decode_latents",
    "generate_images",
    "latent_shape_of",
    "synthesize",
    "frechet_distance",
    "feature_statistics",
    "frechet_distance_from_features",
    "knn_precision_recall",
    "knn_radii",
    "realism_scores",
    "memorisation",
    "ms_ssim_diversity",
    "build_feature_encoder",
    "extract_image_features",
    "REASONS",
    "SELECTIONS",
    "curate",
    "load_images",
    "select_samples",
    "synthetic_items",
]
