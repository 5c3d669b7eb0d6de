"""Shared fixtures: the built-in demo data (generated once per session) and a bundle runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    from dcl_cstp_ext.data import make_demo_data

    roots = make_demo_data(str(tmp_path_factory.mktemp("demo")), seed=0)
    return {name: Path(path) for name, path in roots.items()}


def run_bundle(bundle: str, configs: list[str], workflow_type: str = "train", before_run=None, **overrides):
    """Run a bundle through ``monai.bundle.ConfigWorkflow`` as a user would; returns the workflow.

    ``before_run(workflow)`` may attach test handlers after ``initialize``.
    """
    from monai.bundle import ConfigWorkflow

    root = BUNDLES / bundle
    files = [str(root / "configs" / c) for c in configs]
    wf = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(root),
        **overrides,
    )
    wf.initialize()
    try:
        if before_run is not None:
            before_run(wf)
        wf.run()
    finally:
        wf.finalize()
    return wf
