"""FIFO memory bank of negative keys (MoCo queue) with their sample indices, saved with the model and gathered
across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["MemoryBank", "derive_queue_size", "gather_from_all_ranks", "resolve_queue_size"]


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


#: ``MemoryBank.index`` of a slot never filled, and of a key enqueued without its sample index
EMPTY_SLOT, UNKNOWN_SAMPLE = -1, -2


def derive_queue_size(num_images: int, cap: int, fraction: float = 0.5) -> int:
    """The memory-bank size when a config does not set one: ``min(cap, max(1, floor(fraction x num_images)))``.

    The paper's 4096 (classification) / 512 (segmentation) are the caps. A bank as large as the data set holds a key of
    almost every image, one epoch stale; half of it keeps the keys at most half an epoch old (METHOD.md, "Memory bank
    at small data"). Kvasir-SEG's 704 training images: 352; 4,173 pediatric chest X-rays: 2,086.
    """
    if num_images <= 0 or cap <= 0:
        raise ValueError(f"num_images and cap must be positive, got {num_images} and {cap}")
    return min(int(cap), max(1, int(fraction * num_images)))


def resolve_queue_size(queue_size: int | None, num_images: int, cap: int) -> int:
    """``queue_size`` when a config sets it, else :func:`derive_queue_size` ``(num_images, cap)``."""
    return int(queue_size) if queue_size else derive_queue_size(num_images, cap)


class MemoryBank(nn.Module):
    """A FIFO queue of ``size`` L2-normalised keys of width ``dim``, each stored with the index of its sample.

    Buffers (persistent: part of ``state_dict``, so checkpoints hold the queue): ``bank (size, dim)`` (random unit
    vectors until filled), ``index (size,)`` the data-set index of each key's image (:data:`EMPTY_SLOT` until
    filled) and ``ptr`` (the next row to overwrite). ``enqueue`` writes the newest keys and their indices (gathered
    from all ranks first) at ``ptr`` and wraps around; ``negatives`` returns the bank as a detached view and
    :meth:`negative_mask` which rows each query may use: filled slots holding a key of another image.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"memory bank size and dim must be positive, got size={size}, dim={dim}")
        self.size = size
        self.register_buffer("bank", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("index", torch.full((size,), EMPTY_SLOT, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def negatives(self) -> torch.Tensor:
        """``(size, dim)`` keys; no gradient. Do not enqueue while a graph that uses this view is alive."""
        return self.bank.detach()

    @torch.no_grad()
    def negative_mask(self, indices: torch.Tensor | None, batch_size: int | None = None) -> torch.Tensor:
        """``(B, size)`` bool: True where row ``j`` is a filled slot whose key is not of query ``b``'s own image
        ``indices[b]``. Without ``indices`` (``batch_size`` queries of unknown images) only empty slots are left out."""
        filled = self.index != EMPTY_SLOT
        if indices is None:
            if batch_size is None:
                raise ValueError("negative_mask needs the queries' indices or their batch_size")
            return filled[None].expand(batch_size, -1)
        return filled[None] & (self.index[None] != indices.to(self.index.device).long()[:, None])

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """Write ``keys (B, D)`` and their sample ``indices (B,)`` (from every rank) into the queue, FIFO, wrapping
        around the end. Keys without indices are stored as :data:`UNKNOWN_SAMPLE` (never masked as own-image)."""
        if indices is None:
            indices = torch.full((keys.shape[0],), UNKNOWN_SAMPLE, dtype=torch.long, device=keys.device)
        if indices.shape != (keys.shape[0],):
            raise ValueError(f"indices must have shape ({keys.shape[0]},), got {tuple(indices.shape)}")
        keys = gather_from_all_ranks(F.normalize(keys.detach().float(), dim=1))
        indices = gather_from_all_ranks(indices.detach().long().to(keys.device))
        keys, indices = keys[-self.size :], indices[-self.size :]  # more keys than the bank holds: keep the newest
        n, start = keys.shape[0], int(self.ptr)
        rows = (torch.arange(n, device=self.bank.device) + start) % self.size
        self.bank[rows] = keys.to(self.bank.dtype)
        self.index[rows] = indices.to(self.index.device)
        self.ptr.fill_((start + n) % self.size)
