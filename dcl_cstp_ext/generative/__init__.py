"""Stage 1, latent-diffusion synthesis: the autoencoder and denoiser trainers, the latent scale factor, samplers
(DDPM, DDIM, DPM-Solver++), synthesis to disk, quality measures, automatic curation and its report.

The ``ldm_synthesis`` bundle wires these into MONAI bundle configs (``"$import dcl_cstp_ext.generative"``).
"""

from .autoencoder_engine import AutoencoderTrainer, kl_divergence
from .checkpoints import GenerativeExport, check_schedule, load_weights, read_checkpoint_meta, read_scale_factor
from .curation import REASONS, SELECTIONS, curate, load_images, select_samples, synthetic_items
from .diffusion_engine import DiffusionTrainer, LatentScale, compute_scale_factor, freeze
from .handlers import ReconstructionGrid, SampleGrid
from .imaging import make_grid, save_grid, save_pairs_grid, save_png, to_uint8
from .quality import (
    build_feature_encoder,
    extract_image_features,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    knn_precision_recall,
    knn_radii,
    memorisation,
    ms_ssim_diversity,
    realism_scores,
)
from .report import write_curation_report
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
from .synthesis import synthesize

__all__ = [
    "AutoencoderTrainer",
    "kl_divergence",
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
    "write_curation_report",
    "make_grid",
    "save_grid",
    "save_pairs_grid",
    "save_png",
    "to_uint8",
]
