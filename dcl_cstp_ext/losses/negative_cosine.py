"""Negative cosine similarity losses with stop-gradient on the target (SimSiam, DCL-CsTP local stream)."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import check_same_shape, no_autocast, normalize_fp32


class NegativeCosineSimilarity(nn.Module):
    """Negative cosine similarity between a prediction and a stop-gradient target.

        L = -1/B sum_b cos(prediction_b, sg(target_b)),   cos(a, b) = a.b / (||a|| ||b||)

    The target is detached here. Inputs are L2-normalised (``F.normalize``) and the product computed in
    float32, also under autocast. The loss lies in [-1, 1].

    Reference:
        Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021
        (https://arxiv.org/abs/2011.10566).

    Examples:
        >>> import torch
        >>> z = torch.randn(4, 8)  # (B, D)
        >>> round(NegativeCosineSimilarity()(2 * z, z).item(), 6)  # same directions
        -1.0
        >>> round(NegativeCosineSimilarity()(-z, z).item(), 6)
        1.0
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            prediction: (B, D), gets the gradient.
            target: (B, D), detached.

        Returns:
            scalar float32 tensor.
        """
        check_same_shape("prediction", prediction, "target", target)
        with no_autocast(prediction):
            p = normalize_fp32(prediction)
            z = normalize_fp32(target, detach=True)
            return -(p * z).sum(dim=1).mean()


class SymmetricNegativeCosineLoss(nn.Module):
    """Symmetrised negative cosine loss of SimSiam and of the DCL-CsTP local stream.

        L = -1/2 cos(p_a, sg(z_b)) - 1/2 cos(p_b, sg(z_a))     (each cos averaged over the batch)

    In DCL-CsTP (paper eq. 6) ``L_CS = -1/2 cos(q2, p3^) - 1/2 cos(q3, p2^)``: call
    ``loss_fn(q2, p3_hat, q3, p2_hat)``. The z's are detached here.

    Reference:
        Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021
        (https://arxiv.org/abs/2011.10566).

    Examples:
        >>> import torch
        >>> z_a, z_b = torch.randn(4, 8), torch.randn(4, 8)  # (B, D) each
        >>> round(SymmetricNegativeCosineLoss()(z_b, z_b, -z_a, z_a).item(), 6) + 0.0  # -1/2 (1) - 1/2 (-1); no -0.0
        0.0
    """

    def __init__(self) -> None:
        super().__init__()
        self.criterion = NegativeCosineSimilarity()

    def forward(self, p_a: torch.Tensor, z_b: torch.Tensor, p_b: torch.Tensor, z_a: torch.Tensor) -> torch.Tensor:
        """
        Args:
            p_a: (B, D) prediction from view a (gets the gradient).
            z_b: (B, D) target from view b (detached).
            p_b: (B, D) prediction from view b (gets the gradient).
            z_a: (B, D) target from view a (detached).

        Returns:
            scalar float32 tensor in [-1, 1].
        """
        return 0.5 * self.criterion(p_a, z_b) + 0.5 * self.criterion(p_b, z_a)
