"""What a pipeline run compares and how: the initialisations, the ablations and :class:`PipelineConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .presets import preset_spec, task_spec

__all__ = ["ABLATIONS", "INITIALISATIONS", "KEEP_FRACTION", "LDM_STAGES", "SYNTHETIC_ONLY", "PipelineConfig"]

#: initialisations the pipeline compares; "dcl_cstp_syn" is DCL-CsTP on real + synthetic images
INITIALISATIONS = ("random", "simclr", "mocov2", "simsiam", "dcl_cstp", "dcl_cstp_syn")


#: the paper's four ablations, then ours: the local stream's target centred (METHOD.md, "The local stream's target")
ABLATIONS = ("no_global", "no_local", "mlp_head", "plain_attention", "centred_target")


#: DCL-CsTP pre-trained on the kept synthetic images alone (the ratio table's "synthetic only" row; not a default)
SYNTHETIC_ONLY = "dcl_cstp_synonly"


#: the fraction of generated images curation keeps (``ldm_synthesis`` ``configs/curate.json``; the paper's 50%)
KEEP_FRACTION = 0.5
#: the stage-1 stages, each of which may have its own ``--overrides`` block
LDM_STAGES = ("ldm/autoencoder", "ldm/diffusion", "ldm/samples", "ldm/curation")


@dataclass
class PipelineConfig:
    task: str
    data_root: str
    out: str
    preset: str = "demo"
    methods: tuple[str, ...] = INITIALISATIONS
    synthetic_ratio: float = 0.5
    ratios: tuple[float, ...] = ()
    ablations: bool = False
    label_fractions: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    device: str | None = None
    #: bundle overrides per stage kind, applied after the preset's: {"ldm": {...}, "pretrain": {...}, "finetune": {...},
    #: "probe": {...}};
    #: an ldm stage's own block (``LDM_STAGES``, e.g. "ldm/diffusion") comes after the "ldm" block, for the keys the
    #: two training stages share (``batch_size``, ``max_epochs``, ``lr``)
    overrides: dict = field(default_factory=dict)
    #: keep the resume checkpoints of finished stages (by default only the exported weights stay)
    keep_checkpoints: bool = False
    #: run the finished stages whose settings changed (and what is downstream of them) again, instead of refusing
    rerun_changed: bool = False
    #: probe each pre-trained encoder's frozen features against a random encoder's (the ``probe/<init>`` stages)
    probe: bool = True

    def __post_init__(self) -> None:
        task_spec(self.task)
        preset_spec(self.preset)
        unknown = set(self.methods) - {*INITIALISATIONS, SYNTHETIC_ONLY}
        if unknown:
            raise ValueError(f"unknown initialisation(s) {sorted(unknown)}; choose from {INITIALISATIONS} "
                             f"or {SYNTHETIC_ONLY}")
        if not Path(self.data_root).exists():
            raise FileNotFoundError(f"--data-root {self.data_root} does not exist")
        unknown = set(self.overrides) - {"ldm", "pretrain", "finetune", "probe", *LDM_STAGES}
        if unknown:
            raise ValueError(f"--overrides keys must be ldm, pretrain, finetune, probe or one of "
                             f"{', '.join(LDM_STAGES)}, got {sorted(unknown)}")
        for f in self.label_fractions:
            if not 0 < f <= 1:
                raise ValueError(f"label fractions must be in (0, 1], got {f}")

    @property
    def needs_synthetic(self) -> bool:
        return "dcl_cstp_syn" in self.methods or SYNTHETIC_ONLY in self.methods or bool(self.ratios)
