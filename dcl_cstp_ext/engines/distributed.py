"""Shutting a torchrun job down cleanly."""

from __future__ import annotations

import torch.distributed as dist

__all__ = ["close_process_group"]


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
