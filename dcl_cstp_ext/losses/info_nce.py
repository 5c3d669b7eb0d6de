"""InfoNCE loss with memory-bank negatives (MoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import check_negative_mask, check_negatives, check_same_shape, mask_logits, no_autocast, normalize_fp32


class InfoNCELoss(nn.Module):
    """InfoNCE loss of MoCo: each query against its momentum key (positive) and a bank of negatives.

    With q, p and n_i L2-normalised and temperature tau, for each sample of the batch

        L_NCE = -log( exp(q.p / tau) / ( exp(q.p / tau) + sum_{i=1..N} exp(q.n_i / tau) ) )

    and the loss is the batch mean. It is computed as a cross-entropy over the logits
    ``[q.p, q.n_1, ..., q.n_N] / tau`` with target 0.

    The key and the negatives carry no gradient (they are detached here): only the query is trained.
    If ``negatives`` is ``None`` the other keys of the batch serve as negatives (the in-batch form of
    MoCo v3: logits ``q @ p^T / tau``, target the diagonal); a memory bank of shape ``(0, D)`` leaves the
    positive alone and the loss is 0.

    ``negative_mask (B, N)`` (bool, True = use) leaves out, per query, negatives that must not count: a stale key of
    the query's own image, or a memory-bank slot never filled. A query with no negative left scores 0.

    Inputs are L2-normalised inside the loss and the logits are computed in float32, also under autocast.

    Reference:
        He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
        (https://arxiv.org/abs/1911.05722); Oord et al., "Representation Learning with Contrastive Predictive
        Coding", 2018 (https://arxiv.org/abs/1807.03748).

    Args:
        temperature: tau, > 0.

    Examples:
        >>> import torch
        >>> q = torch.eye(4)[:2]  # (B=2, D=4): each query equals its key
        >>> bank = torch.eye(4)[2:]  # (N=2, D=4): negatives orthogonal to every query
        >>> loss = InfoNCELoss(temperature=0.2)(q, q, bank)  # -log(e^5 / (e^5 + 2 e^0))
        >>> round(loss.item(), 4)
        0.0134
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        negatives: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (B, D) online query q (gets the gradient).
            key: (B, D) momentum key p, the positive of each query (detached).
            negatives: (N, D) memory-bank negatives n_i (detached), or ``None`` for in-batch negatives.
            negative_mask: (B, N) bool, which negatives each query uses; ``None``: all.

        Returns:
            scalar float32 tensor, the mean over the batch.
        """
        check_same_shape("query", query, "key", key)
        if negatives is not None:
            check_negatives(negatives, query.shape[1])
            check_negative_mask(negative_mask, query.shape[0], negatives.shape[0])
        elif negative_mask is not None:
            raise ValueError("negative_mask needs memory-bank negatives")
        with no_autocast(query):
            q = normalize_fp32(query)
            k = normalize_fp32(key, detach=True)
            if negatives is None:
                logits = q @ k.t()
                target = torch.arange(q.shape[0], device=q.device)
            else:
                n = normalize_fp32(negatives, detach=True)
                pos = (q * k).sum(dim=1, keepdim=True)
                logits = torch.cat([pos, mask_logits(q @ n.t(), negative_mask)], dim=1)
                target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            return F.cross_entropy(logits / self.temperature, target)
