"""Experiment tracking the MONAI way: each training bundle runs through ``monai.bundle.scripts.run`` with
``tracking="mlflow"`` (MONAI's default settings add its MLFlowHandler) into a local SQLite store, which is then read
back with the MLflow client; the TensorBoard event files are written as well. One tiny run per bundle."""

from __future__ import annotations

import pytest
import torch
from conftest import BUNDLES

mlflow = pytest.importorskip("mlflow", reason="the `tracking` extra (mlflow-skinny, sqlalchemy, alembic)")

SEG = {"backbone": "resnet18", "image_size": 32, "batch_size": 4, "val_batch_size": 8, "num_workers": 0,
       "amp": False, "max_epochs": 1}
RUNS = {
    "kvasir_seg": (["train.json"], "kvasir_seg", SEG),
    "pneumonia_cls": (["train.json"], "covid_radiography", {**SEG, "batch_size": 8}),
    "dcl_pretrain": (["train.json"], "kvasir_seg",
                     {"backbone": "resnet18", "image_size": 32, "batch_size": 4, "num_workers": 0, "amp": False,
                      "max_epochs": 1, "queue_size": 16, "monitor_max_bank": 16, "monitor_max_query": 8,
                      "head_kwargs#dim": 32}),
    "ldm_synthesis": (["train_autoencoder.json"], "kvasir_seg",
                      {"image_size": 32, "ae_channels": [8, 16, 16], "ae_num_res_blocks": 1, "ae_norm_num_groups": 8,
                       "disc_channels": 8, "disc_num_layers": 2, "batch_size": 4, "num_workers": 0,
                       "max_epochs": 1, "val_interval": 1, "val_max_items": 4, "num_show": 4}),
}
# the loss metric each run must record (MONAI's trainer handler logs the loss as "train_loss"), and the validation
# metric where the bundle has a `validate#evaluator`
EXPECTED = {
    "kvasir_seg": {"train_loss", "val_mean_dice"},
    "pneumonia_cls": {"train_loss"},
    "dcl_pretrain": {"train_loss", "train_z_std"},
    "ldm_synthesis": {"train_loss", "train_l1"},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for all runs (its schema is created once), one experiment per bundle."""
    root = tmp_path_factory.mktemp("mlflow")
    return root, f"sqlite:///{(root / 'mlruns.db').as_posix()}"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("bundle", sorted(RUNS))
def test_training_with_tracking_mlflow(bundle, store, tmp_path, demo_data):
    from monai.bundle.scripts import run

    root, uri = store
    configs, data, tiny = RUNS[bundle]
    folder = BUNDLES / bundle
    run(
        config_file=[str(folder / "configs" / c) for c in configs],
        meta_file=str(folder / "configs" / "metadata.json"),
        logging_file=str(folder / "configs" / "logging.conf"),
        tracking="mlflow",
        bundle_root=str(folder),
        tracking_uri=uri,
        experiment_name=bundle,
        dataset_dir=str(demo_data[data]),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(tmp_path / "models"),
        device="cpu",
        **{"train#trainer#epoch_length": 2},
        **tiny,
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(bundle)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    data_ = runs[0].data
    assert runs[0].info.status == "FINISHED"
    assert EXPECTED[bundle] <= set(data_.metrics), sorted(data_.metrics)
    history = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert {1, 2} <= {m.step for m in history}  # per iteration (and, where a bundle puts it in the metrics, per epoch)
    assert all(isinstance(m.value, float) and m.value == m.value for m in history)  # finite numbers, not tuples
    assert data_.params.get("max_epochs") == "1" and data_.params.get("epoch_length") == "2"
    # MONAI saves the executed config next to the outputs; TensorBoard logging is unchanged
    assert list((tmp_path / "eval").glob("config_*.json"))
    assert list((tmp_path / "eval").rglob("events.out.tfevents.*"))


def test_the_config_artifact_with_an_absolute_output_dir_needs_save_execute_config(store, tmp_path, demo_data):
    """Issue #22, as the README documents it: MONAI 1.6.1 appends ``+ '/config_<time>.json'`` to a plain
    ``output_dir`` path, which names no file, so no config artifact is logged; ``save_execute_config`` with a path
    is written and logged as it is."""
    from monai.bundle.scripts import run

    root, uri = store
    folder = BUNDLES / "kvasir_seg"
    client = mlflow.MlflowClient(tracking_uri=uri)
    for name, extra in (("plain_output_dir", {}),
                        ("explicit_config", {"save_execute_config": str(tmp_path / "b" / "eval" / "config.json")})):
        out = tmp_path / ("a" if not extra else "b")
        run(config_file=str(folder / "configs" / "train.json"), meta_file=str(folder / "configs" / "metadata.json"),
            logging_file=str(folder / "configs" / "logging.conf"), tracking="mlflow", bundle_root=str(folder),
            tracking_uri=uri, experiment_name=name, dataset_dir=str(demo_data["kvasir_seg"]),
            output_dir=str(out / "eval"), ckpt_dir=str(out / "models"), device="cpu",
            **{"train#trainer#epoch_length": 2}, **SEG, **extra)
        run_id = client.search_runs([client.get_experiment_by_name(name).experiment_id])[0].info.run_id
        artifacts = [a.path for a in client.list_artifacts(run_id)]
        assert artifacts == ([] if not extra else ["config.json"]), (name, artifacts)
