"""Stage 1a: the KL autoencoder trainer (L1 + KL, optional patch-adversarial loss after a warm-up)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine
from monai.engines import Trainer
from monai.losses import PatchAdversarialLoss
from monai.utils import convert_to_tensor

from ..engines.step import autocast_for
from ..networks.utils import unwrap

__all__ = ["AutoencoderTrainer", "kl_divergence"]


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the latent dimensions, averaged over the batch:
    ``0.5 * sum(mu^2 + sigma^2 - log(sigma^2) - 1)`` (the MONAI generative tutorials' convention)."""
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1.0)
    return kl.flatten(1).sum(dim=1).mean()


class AutoencoderTrainer(Trainer):
    """Trains a MONAI ``AutoencoderKL`` (optionally DDP-wrapped) on ``batch[image_key]`` in [0, 1].

    Generator loss: ``L1(x_hat, x) + kl_weight * KL`` and, once ``epoch > adv_warmup_epochs`` and a
    ``discriminator`` is given, ``+ adv_weight * LSGAN(D(x_hat), real)`` (MONAI ``PatchAdversarialLoss``,
    least squares). The discriminator (a MONAI ``PatchDiscriminator``) is then trained on the same batch with
    ``0.5 * (LSGAN(D(x_hat.detach()), fake) + LSGAN(D(x), real))``; real and fake go through it in one forward,
    so that a DDP-wrapped discriminator synchronises once per step.

    ``engine.state.output`` is a dict of floats: ``loss`` (generator total), ``l1``, ``kl``, ``g_adv``,
    ``d_loss`` (0 before the warm-up ends) and ``lr``.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, train_handlers: as MONAI's trainers.
        network: the autoencoder.
        optimizer: its optimiser (the paper: Adam).
        kl_weight: weight of the KL term (small: 1e-6 as Stable Diffusion's KL-f4 and the MONAI tutorials).
        discriminator: a ``PatchDiscriminator`` or None (no adversarial loss).
        d_optimizer: the discriminator's optimiser (required with a discriminator).
        adv_weight: weight of the generator's adversarial term.
        adv_warmup_epochs: epochs trained without the adversarial loss first.
        image_key: batch key of the images.
        amp: mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU).
        grad_clip: max gradient norm of the autoencoder, or None.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        kl_weight: float = 1e-6,
        discriminator: torch.nn.Module | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        adv_weight: float = 0.01,
        adv_warmup_epochs: int = 0,
        image_key: str = "image",
        epoch_length: int | None = None,
        non_blocking: bool = True,
        amp: bool = False,
        grad_clip: float | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        if discriminator is not None and d_optimizer is None:
            raise ValueError("a discriminator needs its optimiser (d_optimizer)")
        self.network = network
        self.optimizer = optimizer
        self.kl_weight = float(kl_weight)
        self.discriminator = discriminator if adv_weight > 0 else None
        self.d_optimizer = d_optimizer
        self.adv_weight = float(adv_weight)
        self.adv_warmup_epochs = int(adv_warmup_epochs)
        self.image_key = image_key
        self.grad_clip = grad_clip
        self.adv_loss = PatchAdversarialLoss(criterion="least_squares")
        cuda = torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if (amp and cuda) else None
        self.d_scaler = torch.amp.GradScaler("cuda") if (amp and cuda) else None

    def adversarial_active(self, epoch: int) -> bool:
        """True when the adversarial terms are on in ``epoch`` (1-based)."""
        return self.discriminator is not None and epoch > self.adv_warmup_epochs

    def _backward_step(self, loss, optimizer, scaler, params, clip) -> None:
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()

    def _iteration(self, engine: Engine, batchdata: dict) -> dict:
        if not isinstance(batchdata, dict) or self.image_key not in batchdata:
            keys = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise ValueError(f"an autoencoder batch needs the key {self.image_key!r}; got {keys}")
        dev = engine.state.device
        x = convert_to_tensor(batchdata[self.image_key], track_meta=False).to(dev, non_blocking=engine.non_blocking)
        adversarial = self.adversarial_active(engine.state.epoch)

        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_for(dev, self.amp):
            recon, z_mu, z_sigma = self.network(x)
            l1 = (recon.float() - x.float()).abs().mean()
            kl = kl_divergence(z_mu.float(), z_sigma.float())
            loss = l1 + self.kl_weight * kl
            g_adv = torch.zeros((), device=dev)
            if adversarial:  # the discriminator judges the reconstruction; its own weights get no gradient here
                disc = unwrap(self.discriminator)  # (unwrapped: no DDP synchronisation for this forward)
                disc.train()
                disc.requires_grad_(False)
                g_adv = self.adv_loss(disc(recon.contiguous().float())[-1], target_is_real=True, for_discriminator=False)
                loss = loss + self.adv_weight * g_adv
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite autoencoder loss {loss.item()} (l1={l1.item()}, kl={kl.item()})")
        try:
            self._backward_step(loss, self.optimizer, self.scaler, self.network.parameters(), self.grad_clip)
        finally:
            if adversarial:
                unwrap(self.discriminator).requires_grad_(True)

        d_loss = torch.zeros((), device=dev)
        if adversarial:
            self.d_optimizer.zero_grad(set_to_none=True)
            with autocast_for(dev, self.amp):
                both = torch.cat([recon.detach().float(), x.float()]).contiguous()
                logits = self.discriminator(both)[-1]
                fake, real = logits[: x.shape[0]], logits[x.shape[0] :]
                d_loss = 0.5 * (
                    self.adv_loss(fake, target_is_real=False, for_discriminator=True)
                    + self.adv_loss(real, target_is_real=True, for_discriminator=True)
                )
            self._backward_step(d_loss, self.d_optimizer, self.d_scaler, self.discriminator.parameters(), None)

        return {
            "loss": float(loss.detach()),
            "l1": float(l1.detach()),
            "kl": float(kl.detach()),
            "g_adv": float(g_adv.detach()),
            "d_loss": float(d_loss.detach()),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
