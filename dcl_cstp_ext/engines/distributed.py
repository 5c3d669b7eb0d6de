"""Opening and closing the process group of a torchrun job (the ``initialize`` / ``finalize`` of every
multi_gpu_train*.json)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["open_process_group", "close_process_group"]


def open_process_group(device: torch.device | str) -> bool:
    """Join torchrun's default process group (nccl on CUDA, gloo otherwise) unless already joined, and make
    ``device`` this rank's current CUDA device; ``False`` when a group was already initialised."""
    joined = dist.is_initialized()
    if not joined:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(torch.device(device))
    return not joined


def close_process_group() -> bool:
    """Wait for every rank, then destroy the default process group; ``False`` when none was initialised.

    Without the barrier a rank that finishes first (rank 1 skips the checkpoint and TensorBoard handlers) tears its
    gloo sockets down while rank 0 is still connected, and a gloo worker thread can abort the other process
    (``terminate called without an active exception``, SIGABRT) after training has already succeeded.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True
