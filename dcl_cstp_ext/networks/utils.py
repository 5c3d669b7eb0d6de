"""Module helpers: a network on its device, the network inside a data-parallel wrapper, and evaluation mode for a
block of code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "to_device", "unwrap"]

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrap(module):
    """The network inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper; anything else (an optimiser,
    None...) is returned unchanged."""
    return module.module if isinstance(module, _WRAPPERS) else module


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Evaluation mode for the ``with`` block; afterwards every submodule of ``modules`` has its own training flag
    back (also when the block raises)."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, training in flags:
            m.training = training


def to_device(module: nn.Module, device: torch.device | str, channels_last: bool = False, compile: bool = False
              ) -> nn.Module:
    """``module`` moved to ``device`` (in place, returned), its 4-D weights in the channels-last memory format when
    asked (faster convolutions with AMP on recent GPUs), and its ``forward`` compiled by ``torch.compile`` when
    ``compile`` (``nn.Module.compile``: in place, so ``state_dict`` keys, checkpoints and exports are unchanged; the
    first steps pay the compilation)."""
    module = module.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if compile:
        module.compile()
    return module
