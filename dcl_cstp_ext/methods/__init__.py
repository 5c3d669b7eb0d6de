"""Self-supervised pre-training methods sharing one training-step design."""

from .base import MomentumMethod, SSLMethod, bank_gap, collapse_std
from .baselines import MoCoV2, SimCLR, SimSiam
from .dcl_cstp import DCLCsTP
from .factory import METHODS, build_method, fit_queue_to_data
from .memory_bank import MemoryBank, derive_queue_size, gather_from_all_ranks, resolve_queue_size

__all__ = [
    "SSLMethod",
    "MomentumMethod",
    "collapse_std",
    "bank_gap",
    "MoCoV2",
    "SimCLR",
    "SimSiam",
    "DCLCsTP",
    "METHODS",
    "build_method",
    "fit_queue_to_data",
    "MemoryBank",
    "gather_from_all_ranks",
    "derive_queue_size",
    "resolve_queue_size",
]
