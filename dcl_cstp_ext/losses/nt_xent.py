"""NT-Xent loss (SimCLR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import check_same_shape, no_autocast, normalize_fp32


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross-entropy (NT-Xent) of SimCLR over the 2B samples of two views.

    Stack z = [z_a; z_b] (2B rows, L2-normalised), s_ij = z_i.z_j / tau. Sample i's positive is its other
    view pos(i) = (i + B) mod 2B and its negatives are the other 2B - 2 samples:

        l_i = -log( exp(s_{i,pos(i)}) / sum_{k != i} exp(s_ik) ),    L = 1/(2B) sum_i l_i

    Both views get gradients. Computed as a cross-entropy over the rows of the (2B, 2B) similarity matrix
    with the diagonal masked out; inputs are L2-normalised here and logits computed in float32, also under
    autocast.

    Why not ``monai.losses.ContrastiveLoss``: it computes the same quantity, but (1) it builds the similarity
    matrix with ``F.cosine_similarity`` on broadcast (2B, 1, D) x (1, 2B, D) tensors, a (2B, 2B, D)
    intermediate (about 0.5 GB at B=128, D=2048 in float32, more with its backward) where one matmul
    suffices; (2) it takes ``-log(exp(s_pos) / sum exp(s))`` without the log-sum-exp shift, which
    overflows for small temperatures (tau below about 0.011 in float32) and loses precision in low precision;
    (3) it follows the input dtype under autocast. Hence a matmul + ``cross_entropy`` version here.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020
        (https://arxiv.org/abs/2002.05709).

    Args:
        temperature: tau, > 0.

    Examples:
        >>> import torch
        >>> z = torch.eye(3)  # (B=3, D=3): the two views agree, the images are orthogonal
        >>> loss = NTXentLoss(temperature=0.2)(z, z)  # -log(e^5 / (e^5 + 4 e^0))
        >>> round(loss.item(), 4)
        0.0266
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """
        Args:
            z_a: (B, D) projections of view a.
            z_b: (B, D) projections of view b.

        Returns:
            scalar float32 tensor, the mean over the 2B samples.
        """
        check_same_shape("z_a", z_a, "z_b", z_b)
        batch = z_a.shape[0]
        with no_autocast(z_a):
            z = torch.cat([normalize_fp32(z_a), normalize_fp32(z_b)], dim=0)
            logits = z @ z.t() / self.temperature
            self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
            logits = logits.masked_fill(self_mask, float("-inf"))
            idx = torch.arange(batch, device=z.device)
            target = torch.cat([idx + batch, idx])
            return F.cross_entropy(logits, target)
