"""Stage 1b: the latent denoiser trainer (epsilon prediction) and the latent scale factor ``1 / std(z)``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.inferers import LatentDiffusionInferer
from monai.utils import convert_to_tensor

from ..engines.trainer_base import StepTrainer
from ..networks.utils import eval_mode, unwrap
from .samplers import latent_shape_of

__all__ = ["DiffusionTrainer", "LatentScale", "compute_scale_factor", "freeze"]

logger = logging.getLogger(__name__)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Evaluation mode and no gradients (the frozen autoencoder of the diffusion stage); returns ``module``."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@torch.no_grad()
def compute_scale_factor(
    autoencoder: torch.nn.Module,
    data,
    device: torch.device | str = "cpu",
    image_key: str = "image",
    max_items: int = 512,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """``1 / std(z)`` over the sampled latents ``z = mu + sigma * eps`` of the first ``max_items`` items of
    ``data`` (a sequence of dicts holding ``(C, H, W)`` images), in their order, with ``eps`` drawn from a
    generator seeded by ``seed``: the same value on every DDP rank and on every run (Rombach et al. 2022)."""
    model = unwrap(autoencoder)
    n = min(len(data), max_items)
    if n == 0:
        raise ValueError("cannot compute the latent scale factor on an empty dataset")
    g = torch.Generator().manual_seed(seed)
    total, total_sq, count = 0.0, 0.0, 0
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x = torch.stack([
                convert_to_tensor(data[i][image_key], track_meta=False) for i in range(start, min(n, start + batch_size))
            ]).to(device)
            z_mu, z_sigma = model.encode(x)
            eps = torch.randn(z_mu.shape, generator=g).to(z_mu.device)
            z = (z_mu + z_sigma * eps).double()
            total += float(z.sum())
            total_sq += float((z * z).sum())
            count += z.numel()
    var = total_sq / count - (total / count) ** 2
    std = max(var, 1e-12) ** 0.5
    return float(1.0 / std)


class LatentScale:
    """The latent scale factor of a diffusion run, as checkpointable state and as an ignite handler.

    Put it in the :class:`~dcl_cstp_ext.engines.ResumableCheckpoint` objects (key ``latent_scale``): a resumed run
    reuses the stored value. Attached to the trainer, it computes the value before the first iteration when none
    was loaded (:func:`compute_scale_factor` on ``data``, rank 0's value broadcast under DDP), and sets
    ``inferer.scale_factor``. The value is exported with the denoiser (``models/model.pt``) and read back by
    inference.
    """

    def __init__(
        self,
        inferer: LatentDiffusionInferer,
        autoencoder: torch.nn.Module,
        data=None,
        device: torch.device | str = "cpu",
        image_key: str = "image",
        max_items: int = 512,
        batch_size: int = 32,
        seed: int = 0,
        value: float | None = None,
    ) -> None:
        self.inferer = inferer
        self.autoencoder = autoencoder
        self.data = data
        self.device = device
        self.image_key = image_key
        self.max_items = max_items
        self.batch_size = batch_size
        self.seed = seed
        self.value: float | None = None
        if value is not None:
            self.set(value)

    def set(self, value: float) -> None:
        value = float(value)
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"latent scale factor must be a positive finite number, got {value}")
        self.value = value
        self.inferer.scale_factor = value

    def state_dict(self) -> dict:
        return {"scale_factor": self.value}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scale_factor") is not None:
            self.set(state["scale_factor"])

    def compute(self) -> float:
        if self.data is None:
            raise ValueError("LatentScale needs data to compute the scale factor")
        value = compute_scale_factor(self.autoencoder, self.data, self.device, self.image_key, self.max_items,
                                     self.batch_size, self.seed)
        if dist.is_available() and dist.is_initialized():
            t = torch.tensor([value], dtype=torch.float64,
                             device=self.device if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(t, src=0)
            value = float(t.item())
        self.set(value)
        logger.info("latent scale factor 1/std(z) = %.6g (from %d images)", value, min(len(self.data), self.max_items))
        return value

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._ensure)

    def _ensure(self, engine: Engine) -> None:
        if self.value is None:
            self.compute()


class DiffusionTrainer(StepTrainer):
    """Trains a MONAI ``DiffusionModelUNet`` (optionally DDP-wrapped) in the latent space of a frozen autoencoder.

    Each iteration: ``latent = scale_factor * E(x)`` (sampled, ``x``: ``batch[image_key]``, ``(B, C, H, W)``),
    ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, and the MONAI ``LatentDiffusionInferer`` predicts
    ``eps_theta(sqrt(a_t) latent + sqrt(1 - a_t) eps, t)``; the loss is ``||eps - eps_theta||^2`` (mean).
    ``engine.state.output``: ``loss``, ``scale_factor``, ``lr``.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, amp, grad_clip, channels_last,
            train_handlers: as :class:`~dcl_cstp_ext.engines.trainer_base.StepTrainer`.
        network: the denoiser.
        optimizer: its optimiser (the paper: AdamW, lr 1e-4).
        inferer: a ``LatentDiffusionInferer`` holding the training ``DDPMScheduler`` and the scale factor
            (set by a :class:`LatentScale` handler).
        autoencoder: the trained autoencoder; frozen here.
        image_key: batch key of the images.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        inferer: LatentDiffusionInferer,
        autoencoder: torch.nn.Module,
        image_key: str = "image",
        epoch_length: int | None = None,
        non_blocking: bool = True,
        amp: bool = False,
        grad_clip: float | None = None,
        channels_last: bool = False,
        key_train_metric: dict | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, epoch_length=epoch_length,
                         non_blocking=non_blocking, amp=amp, grad_clip=grad_clip, channels_last=channels_last,
                         key_train_metric=key_train_metric, train_handlers=train_handlers)
        self.inferer = inferer
        self.autoencoder = freeze(autoencoder)
        self.image_key = image_key
        self._latent_shape: tuple | None = None

    def train_step(self, batchdata: dict) -> dict[str, torch.Tensor | float]:
        self.require_keys(batchdata, [self.image_key])
        x = self.to_device(batchdata[self.image_key])
        if self._latent_shape is None:
            self._latent_shape = latent_shape_of(self.autoencoder, x.shape[1], tuple(x.shape[2:]))
        noise = torch.randn((x.shape[0], *self._latent_shape), device=x.device)
        timesteps = torch.randint(0, self.inferer.scheduler.num_train_timesteps, (x.shape[0],), device=x.device)
        with self.autocast():
            pred = self.inferer(inputs=x, autoencoder_model=self.autoencoder, diffusion_model=self.network,
                                noise=noise, timesteps=timesteps)
            loss = F.mse_loss(pred.float(), noise.float())
        self.backward_step(loss)
        return {"loss": loss, "scale_factor": float(self.inferer.scale_factor)}
