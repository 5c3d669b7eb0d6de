"""Run records: the versions, command and machine behind every result."""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

__all__ = ["environment_info", "record_run"]

_PACKAGES = ("dcl-cstp", "torch", "monai", "pytorch-ignite", "numpy", "diffusers", "nibabel", "pillow")


def environment_info() -> dict:
    """Python, package versions, platform and accelerator of this process."""
    import torch

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }


def record_run(output_dir: str, name: str = "run_info.json", **extra) -> str:
    """Write ``<output_dir>/<name>``: time, command line, environment (:func:`environment_info`) and ``extra``.
    Previous records are kept in a list, so a resumed run shows every start."""
    path = Path(output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, **environment_info(), **extra}
    history = []
    if path.is_file():
        try:
            history = json.loads(path.read_text())
            history = history if isinstance(history, list) else [history]
        except json.JSONDecodeError:
            history = []
    path.write_text(json.dumps(history + [entry], indent=2))
    return str(path)
