"""Run records: the versions, command and machine behind every result."""

from __future__ import annotations

import functools
import json
import math
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["as_scalar", "code_version", "environment_info", "json_clean", "record_run"]

_PACKAGES = ("dcl-cstp", "torch", "monai", "pytorch-ignite", "numpy", "diffusers", "nibabel", "pillow")


@functools.cache
def code_version(package_dir: str | None = None) -> dict | None:
    """The git commit of the checkout this package is imported from, and whether its tracked files differ from it:
    ``{"commit": "<40 hex>", "dirty": bool}``. ``None`` where that cannot be told: no ``git``, a package outside a
    work tree, or an installed copy whose files git does not track (a wheel in a virtual environment that sits inside
    the repository must not borrow the repository's commit). The package version alone does not tell apart two runs
    of the same 0.1.0 a week of commits apart."""
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None

    tracked = git("ls-files", "--error-unmatch", "__init__.py")
    commit = git("rev-parse", "HEAD") if tracked is not None and tracked.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no") if commit and commit.returncode == 0 else None
    if status is None or status.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment_info() -> dict:
    """Python, package versions, the code's git commit (:func:`code_version`), platform and accelerator of this
    process."""
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
        "code": code_version(),
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }


def record_run(output_dir: str, name: str = "run_info.json", **extra) -> str | None:
    """Write ``<output_dir>/<name>``: time, command line, environment (:func:`environment_info`) and ``extra``.
    Previous records are kept in a list, so a resumed run shows every start. Under torch.distributed only the
    main process writes (with ``world_size``); the others return None. A bundle lists what it records once, in its
    ``run_record`` component, and writes it first thing in ``run`` (``"run": ["$@run_record", ...]``), not in
    ``initialize``: ``monai.bundle.load`` initializes a bundle's workflow to build its network, and must not write a
    record (relative to the user's working directory) for a run that never happened."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_rank() != 0:
            return None
        extra.setdefault("world_size", torch.distributed.get_world_size())
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


def json_clean(x: Any) -> Any:
    """JSON-friendly: NaN/inf -> None, numpy scalars and arrays -> python."""
    if isinstance(x, dict):
        return {k: json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_clean(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def as_scalar(v: Any) -> float | None:
    """A python / numpy number or a one-element array or tensor as a float; None for anything else."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.number)):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.item())
    if isinstance(v, np.ndarray) and v.size == 1 and np.issubdtype(v.dtype, np.number):
        return float(v.reshape(-1)[0])
    return None
