"""FIFO memory bank of negative keys (MoCo queue), saved with the model and gathered across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["MemoryBank", "gather_from_all_ranks"]


@torch.no_grad()
def gather_from_all_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor (b_r, D)`` from every rank, in rank order; identity without torch.distributed.

    Ranks may hold different batch sizes (a last, smaller batch): sizes are exchanged first and the tensors
    padded to the largest before ``all_gather``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    largest = int(max(s.item() for s in sizes))
    padded = torch.zeros((largest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])


class MemoryBank(nn.Module):
    """A FIFO queue of ``size`` L2-normalised keys of width ``dim``.

    Buffers (persistent: part of ``state_dict``, so checkpoints hold the queue): ``bank (size, dim)``, initialised
    with random unit vectors as in MoCo, and ``ptr`` (the next row to overwrite). ``enqueue`` writes the newest keys
    (gathered from all ranks first) at ``ptr`` and wraps around; ``negatives`` returns the bank as a detached view.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"memory bank size and dim must be positive, got size={size}, dim={dim}")
        self.size = size
        self.register_buffer("bank", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def negatives(self) -> torch.Tensor:
        """``(size, dim)`` keys; no gradient. Do not enqueue while a graph that uses this view is alive."""
        return self.bank.detach()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys (B, D)`` (from every rank) into the queue, FIFO, wrapping around the end."""
        keys = gather_from_all_ranks(F.normalize(keys.detach().float(), dim=1))
        keys = keys[-self.size :]  # more keys than the bank holds: keep the newest
        n, start = keys.shape[0], int(self.ptr)
        idx = (torch.arange(n, device=self.bank.device) + start) % self.size
        self.bank[idx] = keys.to(self.bank.dtype)
        self.ptr.fill_((start + n) % self.size)
