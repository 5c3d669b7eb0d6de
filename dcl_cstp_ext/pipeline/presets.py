"""What each pipeline preset and task means for each bundle: config overlays and overrides, nothing else."""

from __future__ import annotations

__all__ = ["TASKS", "PRESETS", "task_spec", "preset_spec"]

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

#: preset -> per stage: bundle config overlays (after the stage's own config) and overrides
PRESETS: dict[str, dict] = {
    # minutes on a 2-core CPU on the built-in data: tiny networks and images, few epochs
    "demo": {
        "ldm": {
            "configs": ["presets/cpu.json"],
            # batch 8: the demo sets hold 48-128 training images, and the denoiser needs a few hundred steps before
            # its samples pass curation (40 steps gave only outliers, 300-360 plausible samples)
            "autoencoder": {"image_size": 32, "autoencoder_max_epochs": 15, "autoencoder_batch_size": 8,
                            "num_workers": 0, "val_interval": 15},
            "diffusion": {"image_size": 32, "diffusion_max_epochs": 50, "diffusion_batch_size": 8, "num_workers": 0,
                          "val_interval": 25},
            "sample": {"image_size": 32, "num_samples": 48, "sampler": "dpm_solver", "num_inference_steps": 20},
            "curate": {"image_size": 32, "num_workers": 0},
        },
        "pretrain": {
            "configs": ["presets/cpu.json"],
            "overrides": {"image_size": 48, "batch_size": 16, "max_epochs": 5, "num_workers": 0, "val_interval": 5,
                          "head_kwargs#dim": 128, "monitor_max_bank": 200, "monitor_max_query": 100},
        },
        "finetune": {
            "configs": ["presets/cpu.json"],
            "overrides": {"image_size": 64, "max_epochs": 4, "num_workers": 0, "val_interval": 2},
        },
    },
    # a smoke test of the whole chain in about a minute per task (tests, CI): one epoch everywhere
    "tiny": {
        "ldm": {
            "configs": ["presets/cpu.json"],
            "autoencoder": {"image_size": 32, "autoencoder_max_epochs": 1, "num_workers": 0, "val_interval": 1},
            "diffusion": {"image_size": 32, "diffusion_max_epochs": 1, "num_workers": 0, "val_interval": 1},
            "sample": {"image_size": 32, "num_samples": 8, "sampler": "dpm_solver", "num_inference_steps": 4},
            "curate": {"image_size": 32, "num_workers": 0},
        },
        "pretrain": {
            "configs": ["presets/cpu.json"],
            "overrides": {"image_size": 32, "batch_size": 16, "max_epochs": 1, "num_workers": 0, "val_interval": 1,
                          "head_kwargs#dim": 32, "monitor_max_bank": 32, "monitor_max_query": 16},
        },
        "finetune": {
            "configs": ["presets/cpu.json"],
            "overrides": {"image_size": 32, "max_epochs": 1, "num_workers": 0, "val_interval": 1},
        },
    },
    # the CPU preset of each bundle: a meaningful run on Kvasir-SEG-sized data, well under an hour per stage
    "cpu": {
        # SDE-DPM-Solver++ 20 steps: 45x faster than DDPM-1000 at the same Frechet distance (docs/RESULTS.md);
        # num_samples: unset, the pipeline sizes it to the synthetic ratio (pipeline.synthesis_count)
        "ldm": {"configs": ["presets/cpu.json"], "sample": {"sampler": "dpm_solver", "num_inference_steps": 20}},
        "pretrain": {"configs": ["presets/cpu.json"], "overrides": {}},
        "finetune": {"configs": ["presets/cpu.json"], "overrides": {}},
    },
    # the paper's settings (GPU)
    "paper": {
        "ldm": {"configs": ["presets/paper.json"]},
        "pretrain": {"configs": ["presets/paper.json"], "overrides": {}},
        "finetune": {"configs": ["presets/paper.json"], "overrides": {}},
    },
}


def task_spec(task: str) -> dict:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    return TASKS[task]


def preset_spec(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]
