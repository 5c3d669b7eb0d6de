"""Stage 1a: the KL autoencoder trainer (L1 + KL, optional patch-adversarial loss after a warm-up)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import PatchAdversarialLoss

from ..engines.step import grad_scaler_for, optimizer_step
from ..engines.trainer_base import StepTrainer
from ..losses.kl_divergence import kl_divergence
from ..networks.utils import unwrap

__all__ = ["AutoencoderTrainer"]


class AutoencoderTrainer(StepTrainer):
    """Trains a MONAI ``AutoencoderKL`` (optionally DDP-wrapped) on ``batch[image_key]``, ``(B, C, H, W)`` in [0, 1].

    Generator loss: ``L1(x_hat, x) + kl_weight * KL`` and, once ``epoch > adv_warmup_epochs`` and a
    ``discriminator`` is given, ``+ adv_weight * LSGAN(D(x_hat), real)`` (MONAI ``PatchAdversarialLoss``,
    least squares). The discriminator (a MONAI ``PatchDiscriminator``) is then trained on the same batch with
    ``0.5 * (LSGAN(D(x_hat.detach()), fake) + LSGAN(D(x), real))``; real and fake go through it in one forward,
    so that a DDP-wrapped discriminator synchronises once per step.

    ``engine.state.output`` is a dict of floats: ``loss`` (generator total), ``l1``, ``kl``, ``g_adv``,
    ``d_loss`` (0 before the warm-up ends) and ``lr``.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, amp, grad_clip, channels_last,
            train_handlers: as :class:`~dcl_cstp_ext.engines.trainer_base.StepTrainer` (``grad_clip``: the
            autoencoder's; the discriminator is not clipped).
        network: the autoencoder.
        optimizer: its optimiser (the paper: Adam).
        kl_weight: weight of the KL term (small: 1e-6 as Stable Diffusion's KL-f4 and the MONAI tutorials).
        discriminator: a ``PatchDiscriminator`` or None (no adversarial loss).
        d_optimizer: the discriminator's optimiser (required with a discriminator).
        adv_weight: weight of the generator's adversarial term.
        adv_warmup_epochs: epochs trained without the adversarial loss first.
        image_key: batch key of the images.
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
        channels_last: bool = False,
        key_train_metric: dict | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, epoch_length=epoch_length,
                         non_blocking=non_blocking, amp=amp, grad_clip=grad_clip, channels_last=channels_last,
                         key_train_metric=key_train_metric, train_handlers=train_handlers)
        if discriminator is not None and d_optimizer is None:
            raise ValueError("a discriminator needs its optimiser (d_optimizer)")
        self.kl_weight = float(kl_weight)
        self.discriminator = discriminator if adv_weight > 0 else None
        self.d_optimizer = d_optimizer
        self.adv_weight = float(adv_weight)
        self.adv_warmup_epochs = int(adv_warmup_epochs)
        self.image_key = image_key
        self.adv_loss = PatchAdversarialLoss(criterion="least_squares")
        self.d_scaler = grad_scaler_for(device, amp)

    def loss_scalers(self) -> dict[str, torch.amp.GradScaler | None]:
        """The generator's and the discriminator's float16 loss scalers (a checkpoint keeps both)."""
        return {"grad_scaler": self.scaler, "d_grad_scaler": self.d_scaler}

    def adversarial_active(self, epoch: int) -> bool:
        """True when the adversarial terms are on in ``epoch`` (1-based)."""
        return self.discriminator is not None and epoch > self.adv_warmup_epochs

    def train_step(self, batchdata: dict) -> dict[str, torch.Tensor]:
        self.require_keys(batchdata, [self.image_key])
        x = self.to_device(batchdata[self.image_key])
        adversarial = self.adversarial_active(self.state.epoch)

        with self.autocast():
            recon, z_mu, z_sigma = self.network(x)
            l1 = (recon.float() - x.float()).abs().mean()
            kl = kl_divergence(z_mu.float(), z_sigma.float())
            loss = l1 + self.kl_weight * kl
            g_adv = torch.zeros((), device=x.device)
            if adversarial:  # the discriminator judges the reconstruction; its own weights get no gradient here
                disc = unwrap(self.discriminator)  # (unwrapped: no DDP synchronisation for this forward)
                disc.train()
                disc.requires_grad_(False)
                g_adv = self.adv_loss(disc(recon.contiguous().float())[-1], target_is_real=True, for_discriminator=False)
                loss = loss + self.adv_weight * g_adv
        try:
            self.backward_step(loss, {"l1": l1, "kl": kl, "g_adv": g_adv})
        finally:
            if adversarial:
                unwrap(self.discriminator).requires_grad_(True)

        d_loss = torch.zeros((), device=x.device)
        if adversarial:
            self.d_optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                both = torch.cat([recon.detach().float(), x.float()]).contiguous()
                logits = self.discriminator(both)[-1]
                fake, real = logits[: x.shape[0]], logits[x.shape[0] :]
                d_fake = self.adv_loss(fake, target_is_real=False, for_discriminator=True)
                d_real = self.adv_loss(real, target_is_real=True, for_discriminator=True)
                d_loss = 0.5 * (d_fake + d_real)
            optimizer_step(d_loss, self.d_optimizer, self.discriminator.parameters(), self.d_scaler,
                           terms={"d_fake": d_fake, "d_real": d_real})
        return {"loss": loss, "l1": l1, "kl": kl, "g_adv": g_adv, "d_loss": d_loss}
