"""The main job: the three stages through the bundles, resumable, ending in a report; on one machine (lock files)
or as cluster jobs (:mod:`.launcher`, submitit)."""

from .config import INITIALISATIONS, PipelineConfig
from .pipeline import run_pipeline
from .runner import BundleStage, bundles_dir, run_stage
from .stages import plan

__all__ = ["INITIALISATIONS", "PipelineConfig", "plan", "run_pipeline", "BundleStage", "bundles_dir", "run_stage"]
