"""The KL term of the LDM's autoencoder: a diagonal Gaussian posterior against the standard normal prior."""

from __future__ import annotations

import torch

__all__ = ["kl_divergence"]


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the latent dimensions, averaged over the batch:
    ``0.5 * sum(mu^2 + sigma^2 - log(sigma^2) - 1)`` (the MONAI generative tutorials' convention).

    Shapes: ``z_mu``, ``z_sigma`` (B, ...) of the same shape; returns a scalar.

    Examples:
        >>> import torch
        >>> abs(kl_divergence(torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 8, 8)).item()) < 1e-6  # N(0, 1) itself
        True
        >>> round(kl_divergence(torch.ones(1, 3), torch.ones(1, 3)).item(), 4)  # 0.5 * 3 * mu^2
        1.5
    """
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1.0)
    return kl.flatten(1).sum(dim=1).mean()
