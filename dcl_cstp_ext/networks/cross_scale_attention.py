"""Cross-scale attention (CSA) and the cross-scale token projection head (CsTP) of DCL-CsTP.

METHOD.md, "Cross-scale token projection": queries are the full-resolution tokens of an encoder map;
keys/values come from a half-resolution map built by depth-wise convolutions at two scales.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossScaleReduction", "CrossScaleAttention", "CrossScaleTokenProjection"]


class CrossScaleReduction(nn.Module):
    """Makes the half-resolution key/value map of CSA from a ``(B, C, H, W)`` map.

    1. depth-wise conv k1 s1 (full resolution) and depth-wise conv k2 s2 (half resolution), in parallel;
    2. the full-resolution branch is down-sampled by a depth-wise conv k3 s2 p1 and added to the half branch;
    3. the down-sampled map and the sum each pass a depth-wise conv k3 p1; the two results are added;
    4. a 1x1 convolution fuses them.

    Returns ``(B, C, ceil(H/2), ceil(W/2))``; odd sizes are zero-padded on the bottom/right before the k2 s2
    branch so that both branches agree.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.full_res = nn.Conv2d(c, c, kernel_size=1, groups=c)
        self.half_res = nn.Conv2d(c, c, kernel_size=2, stride=2, groups=c)
        self.down = nn.Conv2d(c, c, kernel_size=3, stride=2, padding=1, groups=c)
        self.refine_down = nn.Conv2d(c, c, kernel_size=3, padding=1, groups=c)
        self.refine_sum = nn.Conv2d(c, c, kernel_size=3, padding=1, groups=c)
        self.fuse = nn.Conv2d(c, c, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        down = self.down(self.full_res(x))
        half = self.half_res(F.pad(x, (0, w % 2, 0, h % 2)))
        return self.fuse(self.refine_down(down) + self.refine_sum(down + half))


class CrossScaleAttention(nn.Module):
    """Multi-head attention of full-resolution query tokens over reduced key/value tokens.

    ``softmax(Q K^T / sqrt(d_head)) V`` with Q from the ``H*W`` tokens and K, V from the ``ceil(H/2)*ceil(W/2)``
    tokens of :class:`CrossScaleReduction` (``kv_mode="cross_scale"``, the paper's CSA) or from the full
    ``H*W`` tokens (``kv_mode="full"``: the "plain self-attention" ablation).

    Args:
        dim: token width d.
        num_heads: attention heads (d must be divisible by it).
        kv_mode: ``"cross_scale"`` or ``"full"``.

    Shapes: ``forward(tokens (B, H*W, d), hw=(H, W)) -> (B, H*W, d)``.

    CSA needs a map of at least 3x3 (a 2x2 key/value grid): on a 2x2 map (ResNet C5 at 64 px) there is one key/value
    token, every query gets the same output and CsTP reduces to an MLP on the mean token. Such a map draws a
    ``UserWarning`` (once per module).
    """

    def __init__(self, dim: int, num_heads: int = 8, kv_mode: str = "cross_scale") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if kv_mode not in ("cross_scale", "full"):
            raise ValueError(f"kv_mode must be 'cross_scale' or 'full', got {kv_mode!r}")
        self.num_heads = num_heads
        self.kv_mode = kv_mode
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reduction = CrossScaleReduction(dim) if kv_mode == "cross_scale" else None
        self._warned = False

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, d = tokens.shape
        kv_tokens = tokens
        if self.reduction is not None:
            self._check_grid(hw)
            grid = tokens.transpose(1, 2).reshape(b, d, hw[0], hw[1])
            kv_tokens = self.reduction(grid).flatten(2).transpose(1, 2)
        heads = self.num_heads
        q = self.q(tokens).reshape(b, n, heads, d // heads).transpose(1, 2)
        k, v = self.kv(kv_tokens).reshape(b, -1, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def _check_grid(self, hw: tuple[int, int]) -> None:
        kv = (math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))
        if (kv[0] < 2 or kv[1] < 2) and not self._warned:
            self._warned = True
            warnings.warn(
                f"cross-scale attention on a {hw[0]}x{hw[1]} map has a {kv[0]}x{kv[1]} key/value grid: with fewer "
                "than 2x2 key/value tokens every query gets the same output and CsTP is an MLP on the mean token. "
                "Use images of at least 96 px for ResNet C5 (the cpu preset pre-trains at 128 px: C5 4x4).",
                UserWarning,
                stacklevel=3,
            )


class CrossScaleTokenProjection(nn.Module):
    """CsTP: the DCL-CsTP projection head, a one-block pre-norm transformer over encoder tokens.

    ``x (B, C, H, W)`` -> linear to width d -> ``t + CSA(LN(t))`` -> ``t + FFN(LN(t))`` -> LN -> mean over
    tokens -> ``Linear + BatchNorm1d`` -> ``(B, out_dim)``.

    Args:
        in_channels: C, channels of the encoder map (2048 for ResNet-50 C5).
        out_dim: output dimension; equals the pooled encoder width for the local stream (METHOD.md).
        dim: token width d.
        num_heads: attention heads.
        mlp_ratio: FFN hidden width = ``mlp_ratio * d``.
        kv_mode: ``"cross_scale"`` (CSA, default) or ``"full"`` (plain self-attention ablation).
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        dim: int = 512,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        kv_mode: str = "cross_scale",
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(in_channels, dim)
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = CrossScaleAttention(dim, num_heads=num_heads, kv_mode=kv_mode)
        self.norm_ffn = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Sequential(nn.Linear(dim, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = self.embed(x.flatten(2).transpose(1, 2))  # (B, H*W, d)
        t = t + self.attn(self.norm_attn(t), (h, w))
        t = t + self.ffn(self.norm_ffn(t))
        return self.out(self.norm_out(t).mean(dim=1))
