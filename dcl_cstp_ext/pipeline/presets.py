"""What each pipeline task and preset means: a task's bundle and data options; a preset's config overlays (JSON files
inside every bundle), nothing else."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import bundles_dir

__all__ = ["TASKS", "PRESETS", "INIT_KINDS", "init_recipe_spec", "preset_setting", "preset_spec", "task_spec"]

#: the initialisation kinds that may have a fine-tuning recipe of their own
INIT_KINDS = ("random", "pretrained")

#: task -> downstream bundle, image channels, the largest memory bank (the paper's 4096 classification, 512 segmentation;
#: the bundle derives the size from the data, ``dcl_cstp_ext.methods.derive_queue_size``),
#: and the data options of the downstream bundle's split (its ``configs/train.json``), with which the pipeline
#: writes the run's one split
TASKS: dict[str, dict] = {
    "pneumonia_cls": {"bundle": "pneumonia_cls", "in_channels": 1, "queue_size_cap": 4096, "kind": "classification",
                      "split": {}},
    "isic_seg": {"bundle": "isic_seg", "in_channels": 3, "queue_size_cap": 512, "kind": "segmentation",
                 "split": {"val_fraction": 0.2, "official_val_as_test": True}},
    "kvasir_seg": {"bundle": "kvasir_seg", "in_channels": 3, "queue_size_cap": 512, "kind": "segmentation",
                   "split": {"val_fraction": 0.2, "official_val_as_test": True}},
}

#: preset -> the config overlays (``configs/presets/<name>.json`` of every bundle) layered after a stage's own configs:
#: ``demo`` minutes on a 2-core CPU on the built-in data (tiny networks and images, few epochs); ``tiny`` a smoke test
#: of the whole chain in about a minute per task (tests, CI); ``cpu`` a meaningful run on Kvasir-SEG-sized data, well
#: under an hour per stage; ``paper`` the paper's settings (GPU). What each sets is in the bundles' JSON files.
#: Where one bundle has several training stages with the same key names (``ldm_synthesis``: ``batch_size``,
#: ``max_epochs``, ``lr`` of ``train_autoencoder.json`` and of ``train_diffusion.json``, which overlays it), each
#: stage's values are in ``configs/presets/<stem of the stage's last config>/<name>.json``, layered right after
#: ``presets/<name>.json`` (:func:`preset_spec`).
PRESETS: dict[str, tuple[str, ...]] = {
    "demo": ("presets/cpu.json", "presets/demo.json"),
    "tiny": ("presets/cpu.json", "presets/tiny.json"),
    "cpu": ("presets/cpu.json",),
    "paper": ("presets/paper.json",),
}


def task_spec(task: str) -> dict:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    return TASKS[task]


def preset_spec(preset: str, bundle: str | None = None, configs: Sequence[str] = ()) -> list[str]:
    """The config overlays of ``preset``, in the order they are layered after ``configs`` of ``bundle``: each
    ``presets/<name>.json``, followed by the stage's own ``presets/<stem>/<name>.json`` when ``bundle`` has one for
    the last of ``configs`` (e.g. ``presets/train_diffusion/cpu.json`` after ``[train_autoencoder.json,
    train_diffusion.json]``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    overlays = []
    for overlay in PRESETS[preset]:
        overlays.append(overlay)
        stage = f"presets/{Path(configs[-1]).stem}/{Path(overlay).name}" if configs else None
        if stage and bundle is not None and (bundles_dir() / bundle / "configs" / stage).is_file():
            overlays.append(stage)
    return overlays


def init_recipe_spec(preset: str, bundle: str, init_kind: str) -> list[str]:
    """The fine-tuning recipe of an initialisation kind (``"random"`` or ``"pretrained"``), layered after the preset:
    ``presets/init_<kind>/<name>.json`` for each overlay of ``preset`` that ``bundle`` has (e.g. a lower encoder lr
    for a pre-trained encoder, ``presets/init_pretrained/cpu.json``). A preset without one fine-tunes every
    initialisation alike."""
    if init_kind not in INIT_KINDS:
        raise ValueError(f"unknown initialisation kind {init_kind!r}; expected one of {INIT_KINDS}")
    overlays = []
    for overlay in preset_spec(preset):
        recipe = f"presets/init_{init_kind}/{Path(overlay).name}"
        if (bundles_dir() / bundle / "configs" / recipe).is_file():
            overlays.append(recipe)
    return overlays


def preset_setting(preset: str, bundle: str, key: str, configs: Sequence[str] = ()) -> Any:
    """The value the overlays of ``preset`` give ``key`` in ``bundle`` after ``configs`` (the last one wins), or
    None."""
    value = None
    for overlay in preset_spec(preset, bundle, configs):
        path = bundles_dir() / bundle / "configs" / overlay
        settings = json.loads(path.read_text()) if path.is_file() else {}
        value = settings.get(key, value)
    return value
