"""The dcl_pretrain bundle, run through monai.bundle.ConfigWorkflow on the built-in data at a tiny size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import BUNDLES, REPO, run_bundle
from monai.networks.nets import FlexibleUNet

from dcl_cstp_ext.methods import METHODS
from dcl_cstp_ext.networks import ResNetClassifier, ResNetEncoder2D, load_encoder, read_export

TINY = {
    "backbone": "resnet18",
    "image_size": 32,
    "batch_size": 4,
    "num_workers": 0,
    "queue_size": 16,
    "head_kwargs#dim": 32,
    "monitor_max_bank": 16,
    "monitor_max_query": 8,
    "device": "cpu",
    "amp": False,
}


def _tiny(tmp_path, data, **kw):
    return {
        **TINY,
        "dataset_dir": str(data),
        "output_dir": str(tmp_path / "eval"),
        "ckpt_dir": str(tmp_path / "models"),
        **kw,
    }


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_trains_two_iterations(method, tmp_path, demo_data):
    wf = run_bundle(
        "dcl_pretrain", ["train.json"], **_tiny(tmp_path, demo_data["kvasir_seg"], method=method, max_epochs=1,
                                                 **{"train#trainer#epoch_length": 2, "val_interval": 1})
    )
    state = wf.parser.get_parsed_content("train#trainer").state
    assert state.iteration == 2
    assert np.isfinite(state.output["loss"])
    assert state.metrics["knn_accuracy"] * 8 == pytest.approx(round(state.metrics["knn_accuracy"] * 8))  # 8 queries
    for f in ("checkpoint.pt", "encoder.pt", "model.pt"):
        assert (tmp_path / "models" / f).is_file(), f
    state, meta = read_export(tmp_path / "models" / "encoder.pt")
    assert "conv1.weight" in state and meta["iteration"] == 2 and meta["backbone"] == "resnet18"
    rows = [json.loads(line) for line in (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1 and "train_loss" in rows[-1] and "knn_accuracy" in rows[-1]
    assert rows[-1]["peak_rss_mb"] > 100  # at least torch and the model
    init = rows[-1]["knn_init_accuracy"]  # the initial weights' k-NN accuracy on the same 8 queries, the reference
    assert init * 8 == pytest.approx(round(init * 8))
    assert (tmp_path / "eval" / "datalist.json").is_file()
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert info[-1]["packages"]["monai"]


def test_grey_classification_data(tmp_path, demo_data):
    run_bundle("dcl_pretrain", ["train.json"], **_tiny(tmp_path, demo_data["covid_radiography"], in_channels=1,
                                                      max_epochs=1, **{"train#trainer#epoch_length": 2}))
    enc = load_encoder(ResNetEncoder2D("resnet18", 1), tmp_path / "models" / "encoder.pt")
    assert enc.conv1.in_channels == 1


class _Crash(RuntimeError):
    pass


def _state(models_dir):
    ckpt = torch.load(models_dir / "checkpoint.pt", weights_only=True)
    return ckpt


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, demo_data):
    """Stop after 4 iterations (mid-epoch 2 of 3-iteration epochs), resume, and compare with a straight run at 6.

    48 demo training images / batch 16 = 3 iterations per epoch (exact resume needs whole passes over the data,
    MONAI's default ``epoch_length``)."""
    common = dict(max_epochs=2, save_every_iters=1, batch_size=16, queue_size=64)

    straight = tmp_path / "straight"
    run_bundle("dcl_pretrain", ["train.json"], **_tiny(straight, demo_data["kvasir_seg"], **common))

    killed = tmp_path / "killed"

    def crash_at_5(wf):
        from ignite.engine import Events

        trainer = wf.parser.get_parsed_content("train#trainer")

        @trainer.on(Events.ITERATION_STARTED(once=5))
        def _boom(engine):
            raise _Crash("simulated kill")

    with pytest.raises(RuntimeError) as err:  # MONAI wraps the handler's exception
        run_bundle("dcl_pretrain", ["train.json"], before_run=crash_at_5, **_tiny(killed, demo_data["kvasir_seg"], **common))
    chain, e = [], err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__
    assert any(isinstance(c, _Crash) for c in chain)
    assert _state(killed / "models")["trainer"]["iteration"] == 4
    wf = run_bundle("dcl_pretrain", ["train.json"], **_tiny(killed, demo_data["kvasir_seg"], **common))
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 6

    a, b = _state(straight / "models"), _state(killed / "models")
    assert a["trainer"] == b["trainer"] == {"epoch": 2, "iteration": 6}
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], msg=f"model entry {k} differs after resume")
    assert int(b["model"]["queue.ptr"]) == 6 * 16 % 64
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["lr_scheduler"] == b["lr_scheduler"]


def test_export_loads_into_flexible_unet_and_classifier_with_identical_features(tmp_path, demo_data):
    run_bundle("dcl_pretrain", ["train.json"], **_tiny(tmp_path, demo_data["kvasir_seg"], max_epochs=1,
                                                      **{"train#trainer#epoch_length": 2}))
    path = tmp_path / "models" / "encoder.pt"
    x = torch.rand(2, 3, 64, 64)
    enc = load_encoder(ResNetEncoder2D("resnet18", 3), path).eval()
    unet = load_encoder(FlexibleUNet(3, 1, "resnet18", spatial_dims=2), path).eval()
    clf = load_encoder(ResNetClassifier(2, "resnet18", 3), path).eval()
    with torch.no_grad():
        maps, pooled = enc(x)
        for a, b in zip(unet.encoder(x), maps):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(clf.encoder(x)[1], pooled)
    fresh = ResNetEncoder2D("resnet18", 3).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in enc.state_dict().items() if v.is_floating_point())


def test_inference_writes_embeddings(tmp_path, demo_data):
    run_bundle("dcl_pretrain", ["train.json"], **_tiny(tmp_path, demo_data["kvasir_seg"], max_epochs=1,
                                                      **{"train#trainer#epoch_length": 1}))
    images = demo_data["kvasir_seg"] / "Kvasir-SEG" / "images"
    run_bundle("dcl_pretrain", ["inference.json"], workflow_type="infer", dataset_dir=str(images),
               output_dir=str(tmp_path / "emb"), ckpt_dir=str(tmp_path / "models"), backbone="resnet18",
               image_size=32, num_workers=0, device="cpu")
    emb = np.load(tmp_path / "emb" / "embeddings.npy")
    n = len(list(images.glob("*.jpg")))
    assert emb.shape == (n, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)
    assert (tmp_path / "emb" / "embeddings.csv").read_text().count("\n") == n + 1


@pytest.mark.slow
def test_ddp_two_ranks_gather_keys_into_the_queue(tmp_path, demo_data):
    """torchrun --nproc_per_node 2 with gloo: 2 iterations, and the queue holds 2 x 2 x batch keys."""
    root = BUNDLES / "dcl_pretrain"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "monai.bundle", "run",
        "--config_file", f"['{root}/configs/train.json','{root}/configs/multi_gpu_train.json']",
        "--bundle_root", str(root), "--dataset_dir", str(demo_data["kvasir_seg"]),
        "--output_dir", str(tmp_path / "eval"), "--ckpt_dir", str(tmp_path / "models"),
        "--max_epochs", "1", "--train#trainer#epoch_length", "2", "--queue_size", "64",
    ]
    for k, v in TINY.items():
        if k not in ("device", "queue_size"):
            args += [f"--{k}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "models" / "checkpoint.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2
    assert int(ckpt["model"]["queue.ptr"]) == 2 * 2 * TINY["batch_size"]  # iterations x ranks x batch
    # each key came with its image's data-set index, gathered from both ranks: 16 distinct images of one epoch
    index = ckpt["model"]["queue.index"][: 2 * 2 * TINY["batch_size"]].tolist()
    n_train = len(json.loads((tmp_path / "eval" / "datalist.json").read_text())["training"])
    assert len(set(index)) == 16 and all(0 <= i < n_train for i in index)
    assert (ckpt["model"]["queue.index"][16:] == -1).all()


def test_bundle_derives_the_queue_size_caches_larger_than_the_views_and_scales_the_lr(tmp_path, demo_data):
    """``queue_size: null``: half the pre-training images, capped; views cropped from a 2x cache; lr per method."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "dcl_pretrain" / "configs" / "train.json"))
    over = _tiny(tmp_path, demo_data["kvasir_seg"], method="mocov2", image_size=32, queue_size=None, batch_size=8)
    over["bundle_root"] = str(BUNDLES / "dcl_pretrain")
    for k, v in over.items():
        parser[k] = v
    n = len(parser.get_parsed_content("pretrain_items"))
    net = parser.get_parsed_content("network_def")
    assert net.queue.size == 4096  # built without the data (the zoo's checks build it so): the cap
    for expr in parser["initialize"]:
        parser.get_parsed_content("initialize#" + str(parser["initialize"].index(expr)))
    assert net.queue.size == min(4096, n // 2) < n
    assert parser.get_parsed_content("cache_size") == 64
    item = parser.get_parsed_content("train#cache")[0]
    assert tuple(item["image"].shape[1:]) == (64, 64)  # cached at 2x; the views are 32 px
    views = parser.get_parsed_content("train#dataset")[(0, 123)]
    assert tuple(views["view1"].shape[1:]) == (32, 32) and views["sample_index"] == 0
    opt = parser.get_parsed_content("optimizer")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03 * 8 / 256)  # MoCo-v2: 0.03 x B / 256


def test_pretraining_on_a_plain_folder_of_images_runs_without_the_knn_monitor(tmp_path, demo_data, capfd):
    """Issue #23: the README's plain folder of images (no labels, no masks) pre-trains; the monitor is off (said
    once)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, src in enumerate(sorted((demo_data["kvasir_seg"] / "Kvasir-SEG" / "images").iterdir())):
        shutil.copy(src, folder / f"{i:03d}{src.suffix}")
    wf = run_bundle("dcl_pretrain", ["train.json"], **_tiny(tmp_path, folder, max_epochs=1, val_interval=1,
                                                             **{"train#trainer#epoch_length": 2}))
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 2
    assert (tmp_path / "models" / "encoder.pt").is_file()
    printed = "".join(capfd.readouterr())  # the bundle's logging.conf writes to the console
    assert printed.count("the k-NN monitor of the representation is off") == 1
