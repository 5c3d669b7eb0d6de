"""Synthesis to disk: N sampled images as 8-bit PNGs, their unlabelled datalist, a contact sheet and a record."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..data.splits import write_datalist
from ..reports.images import save_grid, save_png
from .samplers import DEFAULT_STEPS, generate_images, latent_shape_of, make_sampler_scheduler, unet_evaluations

__all__ = ["synthesize"]

logger = logging.getLogger(__name__)


def synthesize(
    autoencoder: torch.nn.Module,
    diffusion_model: torch.nn.Module,
    scheduler,
    scale_factor: float,
    output_dir: str | Path,
    num_samples: int = 100,
    sampler: str = "ddpm",
    num_inference_steps: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
    in_channels: int = 3,
    image_size: int = 256,
    prefix: str = "synth",
    contact_sheet_size: int = 64,
    progress: bool = True,
    ddim_eta: float = 0.0,
) -> dict:
    """Sample ``num_samples`` images and write, under ``output_dir``:

    - ``images/<prefix>_00000.png`` ...: 8-bit PNGs, grey (``in_channels`` 1) or RGB (3), like the training data;
    - ``datalist.json``: ``{"training": [{"image": <absolute path>}, ...]}``, the unlabelled datalist that
      ``dcl_cstp_ext.data.build_pretrain_datalist(real, synthetic=items)`` (or the ``images/`` folder) reads;
    - ``contact_sheet.png``: the first ``contact_sheet_size`` images in a grid;
    - ``synthesis.json``: sampler, steps, seed, scale factor, timing (seconds per image).

    ``scheduler`` is the training ``DDPMScheduler``; ``sampler`` one of ``ddpm`` (full chain), ``ddim``,
    ``dpm_solver`` (SDE-DPM-Solver++), ``dpm_solver_ode`` (DPM-Solver++); ``ddim_eta`` is DDIM's noise weight.
    Returns the record of ``synthesis.json``.
    """
    out = Path(output_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    steps = unet_evaluations(make_sampler_scheduler(sampler, scheduler, num_inference_steps))
    latent = latent_shape_of(autoencoder, in_channels, image_size)
    paths: list[str] = []
    sheet: list[torch.Tensor] = []

    def write(start: int, images: torch.Tensor) -> None:
        if images.shape[1] != in_channels:
            raise ValueError(f"decoded images have {images.shape[1]} channels, expected {in_channels}")
        for i, im in enumerate(images):
            paths.append(str(save_png(im, img_dir / f"{prefix}_{start + i:05d}.png").resolve()))
            if len(sheet) < contact_sheet_size:
                sheet.append(im)

    t0 = time.perf_counter()
    generate_images(
        autoencoder, diffusion_model, scheduler, scale_factor, latent, num_samples, sampler=sampler,
        num_inference_steps=num_inference_steps, batch_size=batch_size, seed=seed, device=device, progress=progress,
        on_batch=write, ddim_eta=ddim_eta,
    )
    seconds = time.perf_counter() - t0
    write_datalist(out / "datalist.json", {"training": [{"image": p} for p in paths]})
    if sheet:
        save_grid(sheet, out / "contact_sheet.png")
    record = {
        "num_samples": num_samples,
        "sampler": sampler,
        "num_inference_steps": steps,
        "default_steps": DEFAULT_STEPS.get(sampler),
        "seed": seed,
        "batch_size": batch_size,
        "ddim_eta": ddim_eta if sampler == "ddim" else None,
        "scale_factor": float(scale_factor),
        "latent_shape": list(latent),
        "image_shape": [in_channels, image_size, image_size],
        "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / num_samples, 5),
        "device": str(device),
        "images_dir": str(img_dir.resolve()),
        "datalist": str((out / "datalist.json").resolve()),
    }
    (out / "synthesis.json").write_text(json.dumps(record, indent=2))
    logger.info("%d images (%s, %d steps) in %.1fs (%.3fs/image) -> %s", num_samples, sampler, steps, seconds,
                seconds / num_samples, img_dir)
    return record
