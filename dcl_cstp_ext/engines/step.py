"""The one optimisation step: autocast, gradient scaler, backward/clip/step (used by every trainer and the benchmark)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

from ..methods.base import SSLMethod
from ..networks.utils import unwrap

__all__ = ["amp_dtype", "autocast_for", "grad_scaler_for", "optimizer_step", "ssl_train_step"]


def amp_dtype(device: torch.device | str) -> torch.dtype:
    """The autocast dtype for ``device``: bfloat16 on the CPU and on GPUs that support it (Ampere and later),
    float16 on older GPUs (which then need a ``GradScaler``)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast_for(device: torch.device | str, amp: bool) -> torch.autocast:
    """``torch.autocast`` in :func:`amp_dtype` for ``device``; disabled when ``amp`` is False."""
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device), enabled=amp)


def grad_scaler_for(device: torch.device | str, amp: bool) -> torch.amp.GradScaler | None:
    """The loss scaler that :func:`autocast_for` needs: a ``GradScaler`` where it autocasts to float16 (a GPU without
    bfloat16); None otherwise (bfloat16 has float32's exponent range)."""
    device = torch.device(device)
    return torch.amp.GradScaler("cuda") if amp and amp_dtype(device) == torch.float16 else None


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.Tensor],
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    terms: Mapping[str, torch.Tensor | float] | None = None,
) -> None:
    """Back-propagate the scalar ``loss`` (scaled by ``scaler`` if given), clip the gradient norm of ``parameters``
    to ``grad_clip`` (after unscaling), and step ``optimizer`` (through ``scaler``, which skips non-finite steps).

    A non-finite ``loss`` is refused before any gradient: ``FloatingPointError`` with the loss and ``terms`` (the
    parts of the loss, for the message).
    """
    if not torch.isfinite(loss):
        parts = ", ".join(f"{k}={float(torch.as_tensor(v).detach()):.6g}" for k, v in (terms or {}).items())
        raise FloatingPointError(f"non-finite loss {loss.item()}" + (f" ({parts})" if parts else ""))
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()


def _call(views: list[torch.Tensor], method: torch.nn.Module, indices: torch.Tensor | None) -> dict:
    return method(views, indices)


def ssl_train_step(
    method: SSLMethod,
    optimizer: torch.optim.Optimizer,
    views: Sequence[torch.Tensor],
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    indices: torch.Tensor | None = None,
    inferer: Callable | None = None,
) -> dict[str, torch.Tensor]:
    """Forward all views ``(B, C, H, W)``, then :func:`optimizer_step` on ``loss``, then
    ``method.on_train_batch_end()`` (momentum and queue update).

    ``method`` may be wrapped in ``DistributedDataParallel``. ``indices (B,)``: the batch's data-set indices, which a
    memory bank stores with its keys (to leave out a query's own image), or None. ``scaler``: see
    :func:`grad_scaler_for`. ``inferer``: calls ``inferer(views, method, indices)`` for the forward (MONAI's
    ``SimpleInferer`` signature; the default calls ``method(views, indices)``, which is the same).

    Returns the method's output dict of scalars (``loss`` detached).
    """
    method.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(views[0].device, amp):
        # through forward, so that a DDP wrapper synchronises the gradients
        out = (inferer or _call)(list(views), method, indices)
    loss = out["loss"]
    optimizer_step(loss, optimizer, method.parameters(), scaler, grad_clip, terms=out)
    unwrap(method).on_train_batch_end()
    out["loss"] = loss.detach()
    return out
