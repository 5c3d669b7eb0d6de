"""The one optimisation step every pre-training method shares (used by the trainer and the benchmark)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..methods.base import SSLMethod
from ..networks.utils import unwrap

__all__ = ["ssl_train_step", "autocast_for"]


def autocast_for(device: torch.device | str, amp: bool) -> torch.autocast:
    """``torch.autocast`` for ``device``: float16 on CUDA, bfloat16 on CPU; disabled when ``amp`` is False."""
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=amp)


def ssl_train_step(
    method: SSLMethod,
    optimizer: torch.optim.Optimizer,
    views: Sequence[torch.Tensor],
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    indices: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Forward all views, back-propagate ``loss``, clip, step, then ``method.on_train_batch_end()``.

    ``method`` may be wrapped in ``DistributedDataParallel``. ``indices (B,)``: the batch's data-set indices, which a
    memory bank stores with its keys (to leave out a query's own image), or None.

    Returns the method's output dict (``loss`` detached). ``scaler`` is used for float16 AMP on CUDA.
    """
    method.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(views[0].device, amp):
        out = method(list(views), indices)  # through forward, so that a DDP wrapper synchronises the gradients
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} ({ {k: float(v) for k, v in out.items()} })")
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(method.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(method.parameters(), grad_clip)
        optimizer.step()
    unwrap(method).on_train_batch_end()
    out["loss"] = loss.detach()
    return out
