"""Losses of DCL-CsTP and of the baselines (MoCo-v2, SimCLR, SimSiam), of the classification fine-tuning, and the
LDM autoencoder's KL term."""

from .classification import OneHotBCEWithLogitsLoss, build_classification_loss
from .dcl_cstp import DCLCsTPLoss
from .info_nce import InfoNCELoss
from .kl_divergence import kl_divergence
from .negative_cosine import NegativeCosineSimilarity, SymmetricNegativeCosineLoss
from .nt_xent import NTXentLoss
from .relational_kl import RelationalKLLoss

__all__ = [
    "DCLCsTPLoss",
    "InfoNCELoss",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "OneHotBCEWithLogitsLoss",
    "RelationalKLLoss",
    "SymmetricNegativeCosineLoss",
    "build_classification_loss",
    "kl_divergence",
]
