"""Progress pictures of the generative stages: reconstructions (autoencoder) and samples (denoiser)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.utils import convert_to_tensor

from ..engines.handlers import is_main_process
from ..networks.utils import eval_mode, unwrap
from ..reports.images import save_grid, save_pairs_grid
from .samplers import generate_images, latent_shape_of

__all__ = ["ReconstructionGrid", "SampleGrid"]

logger = logging.getLogger(__name__)


class ReconstructionGrid:
    """Every ``interval`` epochs (and at the end): the mean-latent reconstruction L1 over ``data`` (up to
    ``max_items``, validation images preferably), logged, put in ``engine.state.metrics["val_l1"]``, appended to
    ``<output_dir>/validation.jsonl``, and a PNG grid of ``num_images`` pairs *input | reconstruction*
    (``<output_dir>/reconstructions/epoch_XXXX.png``). Rank 0 only."""

    def __init__(
        self,
        autoencoder: torch.nn.Module,
        data: Sequence,
        output_dir: str,
        interval: int = 1,
        num_images: int = 8,
        max_items: int = 64,
        batch_size: int = 16,
        image_key: str = "image",
        summary_writer=None,
    ) -> None:
        self.autoencoder = autoencoder
        self.data = data
        self.dir = Path(output_dir)
        self.interval = max(1, int(interval))
        self.num_images = num_images
        self.max_items = max_items
        self.batch_size = batch_size
        self.image_key = image_key
        self.writer = summary_writer
        self._last: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        if not is_main_process() or len(self.data) == 0 or self._last == engine.state.epoch:
            return  # (COMPLETED right after an EPOCH_COMPLETED of the same epoch)
        self._last = engine.state.epoch
        model = unwrap(self.autoencoder)
        device = next(model.parameters()).device
        n = min(len(self.data), self.max_items)
        total, count, shown = 0.0, 0, None
        with eval_mode(model):
            for start in range(0, n, self.batch_size):
                idx = range(start, min(n, start + self.batch_size))
                x = torch.stack([convert_to_tensor(self.data[i][self.image_key], track_meta=False) for i in idx])
                x = x.to(device)
                recon = model.reconstruct(x).float().clamp(0, 1)
                total += float((recon - x).abs().mean(dim=(1, 2, 3)).sum())
                count += x.shape[0]
                if shown is None:
                    shown = (x[: self.num_images].cpu(), recon[: self.num_images].cpu())
        val_l1 = total / count
        epoch = engine.state.epoch
        engine.state.metrics["val_l1"] = val_l1
        path = save_pairs_grid(shown[0], shown[1], self.dir / "reconstructions" / f"epoch_{epoch:04d}.png")
        with open(self.dir / "validation.jsonl", "a") as fh:
            fh.write(json.dumps({"epoch": epoch, "iteration": engine.state.iteration, "val_l1": val_l1}) + "\n")
        if self.writer is not None:
            self.writer.add_scalar("val/l1", val_l1, epoch)
        logger.info("epoch %d: validation reconstruction L1 %.4f on %d images; grid %s", epoch, val_l1, count, path)


class SampleGrid:
    """Every ``interval`` epochs (and at the end): ``num_images`` samples from a fixed seed with a fast sampler
    (default SDE-DPM-Solver++, ``num_inference_steps``), written as ``<output_dir>/samples/epoch_XXXX.png``.
    Rank 0 only."""

    def __init__(
        self,
        autoencoder: torch.nn.Module,
        diffusion_model: torch.nn.Module,
        scheduler,
        inferer,
        output_dir: str,
        image_shape: Sequence[int],
        interval: int = 1,
        num_images: int = 8,
        sampler: str = "dpm_solver",
        num_inference_steps: int = 20,
        seed: int = 0,
    ) -> None:
        self.autoencoder = autoencoder
        self.diffusion_model = diffusion_model
        self.scheduler = scheduler
        self.inferer = inferer
        self.dir = Path(output_dir)
        self.image_shape = tuple(image_shape)
        self.interval = max(1, int(interval))
        self.num_images = num_images
        self.sampler = sampler
        self.num_inference_steps = num_inference_steps
        self.seed = seed
        self._last = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process() or self.num_images < 1 or self._last == engine.state.epoch:
            return
        self._last = engine.state.epoch
        model = unwrap(self.diffusion_model)
        device = next(model.parameters()).device
        latent = latent_shape_of(self.autoencoder, self.image_shape[0], self.image_shape[1:])
        images = generate_images(
            self.autoencoder, model, self.scheduler, float(self.inferer.scale_factor), latent, self.num_images,
            sampler=self.sampler, num_inference_steps=self.num_inference_steps, batch_size=self.num_images,
            seed=self.seed, device=device, progress=False,
        )
        path = save_grid(images, self.dir / "samples" / f"epoch_{engine.state.epoch:04d}.png")
        logger.info("epoch %d: %d samples (%s, %d steps) in %s", engine.state.epoch, self.num_images, self.sampler,
                    self.num_inference_steps, path)
