"""Build a pre-training method by the name a config gives (methods and the paper's ablations)."""

from __future__ import annotations

import inspect

from .base import MomentumMethod, SSLMethod
from .baselines import MoCoV2, SimCLR, SimSiam
from .dcl_cstp import DCLCsTP
from .memory_bank import resolve_queue_size

__all__ = ["METHODS", "build_method", "fit_queue_to_data"]

#: name -> (class, fixed keyword arguments); the ablations are DCL-CsTP with one part switched off or swapped
METHODS: dict[str, tuple[type[SSLMethod], dict]] = {
    "dcl_cstp": (DCLCsTP, {}),
    "no_global": (DCLCsTP, {"use_global": False}),
    "no_local": (DCLCsTP, {"use_local": False}),
    "mlp_head": (DCLCsTP, {"head": "mlp"}),
    "plain_attention": (DCLCsTP, {"head": "plain_attention"}),
    "centred_target": (DCLCsTP, {"center_target": True}),
    "mocov2": (MoCoV2, {}),
    "simclr": (SimCLR, {}),
    "simsiam": (SimSiam, {}),
}

# arguments a config may give for every method; each class takes the subset it knows
_SHARED = {"backbone", "in_channels", "feature_stage"}


def build_method(name: str, **kwargs) -> SSLMethod:
    """``build_method("dcl_cstp", backbone="resnet50", in_channels=1, queue_size=512, ...)``.

    Arguments that a method does not use (e.g. ``queue_size`` for SimSiam, ``alpha`` for MoCo-v2) are dropped, so
    one config can switch methods by name; an argument no method knows raises (a misspelt config key).
    """

    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls, fixed = METHODS[name]
    known_anywhere = set(_SHARED)
    for other, _ in METHODS.values():
        known_anywhere |= set(inspect.signature(other.__init__).parameters) - {"self", "args", "kwargs"}
    unknown = set(kwargs) - known_anywhere
    if unknown:
        raise TypeError(f"unknown method argument(s) {sorted(unknown)}; known: {sorted(known_anywhere)}")
    accepted = set(inspect.signature(cls.__init__).parameters)
    return cls(**{**{k: v for k, v in kwargs.items() if k in accepted}, **fixed})  # the method's name wins


def fit_queue_to_data(num_images: int, method: SSLMethod, queue_size: int | None, cap: int) -> SSLMethod:
    """Size ``method``'s memory bank for a data set of ``num_images``: ``queue_size`` when set, else
    :func:`~dcl_cstp_ext.methods.derive_queue_size` ``(num_images, cap)``; methods without a bank are unchanged.

    The bundle calls this in ``initialize``, so that ``network_def`` itself builds without any data (as the model
    zoo's checks build it) and the bank has its size before a checkpoint is loaded into it. Returns ``method``."""
    if isinstance(method, MomentumMethod):
        method.resize_queue(resolve_queue_size(queue_size, num_images, cap))
    return method
