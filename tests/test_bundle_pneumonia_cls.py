"""The pneumonia_cls bundle, run through monai.bundle.ConfigWorkflow on the built-in COVID-19 Radiography demo data
at a tiny size (ResNet-18, 32 px, 2 iterations), plus the model-zoo checks (verify_net_in_out, ckpt_export)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import BUNDLES, REPO, run_bundle

from dcl_cstp_ext.data import COVID_CLASSES
from dcl_cstp_ext.networks import ResNetClassifier, ResNetEncoder2D

BUNDLE = BUNDLES / "pneumonia_cls"
TINY = {
    "backbone": "resnet18",
    "image_size": 32,
    "batch_size": 8,
    "num_workers": 0,
    "device": "cpu",
    "amp": False,
}


def _tiny(root, data, **kw):
    return {
        **TINY,
        "dataset_dir": str(data),
        "output_dir": str(root / "eval"),
        "ckpt_dir": str(root / "models"),
        "max_epochs": 1,
        "train#trainer#epoch_length": 2,
        **kw,
    }


def _encoder_state(network):
    return {k: v.detach().clone() for k, v in network.encoder.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    """One tiny training run (BCE, the default loss) shared by the evaluate / infer / export tests."""
    root = tmp_path_factory.mktemp("pneumonia_cls")
    initial = {}

    def keep_initial_weights(wf):
        initial.update(_encoder_state(wf.parser.get_parsed_content("network")))

    wf = run_bundle("pneumonia_cls", ["train.json"], before_run=keep_initial_weights,
                    **_tiny(root, demo_data["covid_radiography"]))
    wf.initial_encoder = initial
    return root, wf


def test_train_two_iterations_saves_best_model_with_its_classes(trained):
    root, wf = trained
    trainer = wf.parser.get_parsed_content("train#trainer")
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert trainer.state.iteration == 2
    assert wf.check_properties() == []  # the model zoo's required train properties, with the right IDs
    assert np.isfinite(trainer.state.output["loss"])
    acc = evaluator.state.metrics["val_accuracy"]  # 32 validation images: a whole number of them right
    assert acc * 32 == pytest.approx(round(acc * 32)) and "val_auc" in evaluator.state.metrics
    assert evaluator.state.best_metric == pytest.approx(acc)  # accuracy is the key metric
    ckpt = torch.load(root / "models" / "model.pt", weights_only=True)
    assert set(ckpt) == {"model", "meta"}  # the project's one export format
    assert ckpt["meta"]["class_names"] == list(COVID_CLASSES)
    assert ckpt["meta"]["activation"] == "sigmoid" and ckpt["meta"]["backbone"] == "resnet18"
    assert ckpt["model"]["fc.weight"].shape == (4, 512)
    assert torch.load(root / "models" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2
    val = [json.loads(line) for line in (root / "eval" / "val_metrics.jsonl").read_text().splitlines()]
    assert val[-1]["epoch"] == 1 and val[-1]["best_metric"] == val[-1]["val_accuracy"]
    assert "train_loss" in json.loads((root / "eval" / "metrics.jsonl").read_text().splitlines()[-1])
    split = json.loads((root / "eval" / "datalist.json").read_text())
    assert len(split["validation"]) == 32 and len(split["training"]) == 128
    # fine-tuning (the default) trains the encoder too
    after = _encoder_state(wf.parser.get_parsed_content("network"))
    assert any(not torch.equal(after[k], v) for k, v in wf.initial_encoder.items() if k.startswith("layer4"))


def test_evaluate_writes_metrics_predictions_and_confusion_matrix(trained, demo_data):
    root, _ = trained
    wf = run_bundle("pneumonia_cls", ["train.json", "evaluate.json"], workflow_type="eval",
                    **_tiny(root, demo_data["covid_radiography"], output_dir=str(root / "evaluation")))
    assert wf.check_properties() == []
    out = root / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["summary"]["num_images"] == 32
    assert set(metrics["per_class"]) == set(COVID_CLASSES)
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 32
    acc = np.mean([r["label"] == r["pred"] for r in rows])
    assert metrics["summary"]["accuracy"] == pytest.approx(acc)
    # the report agrees with ignite's metrics of the same run
    state = wf.parser.get_parsed_content("validate#evaluator").state
    assert metrics["summary"]["accuracy"] == pytest.approx(state.metrics["val_accuracy"])
    assert metrics["summary"]["macro_recall"] == pytest.approx(state.metrics["val_macro_recall"])
    # ... and with the training's own validation of the model it saved (one epoch: the best is the last)
    trained_val = json.loads((root / "eval" / "val_metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["summary"]["accuracy"] == pytest.approx(trained_val["val_accuracy"])
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "tensorboard").exists()  # evaluation does not create a training writer


def test_inference_writes_one_row_per_image_with_probabilities(trained, demo_data):
    root, _ = trained
    images = demo_data["covid_radiography"] / "COVID-19_Radiography_Dataset" / "Normal" / "images"
    # no backbone / image size given: they come from the checkpoint's info
    wf = run_bundle("pneumonia_cls", ["inference.json"], workflow_type="infer", dataset_dir=str(images),
                    output_dir=str(root / "infer"), ckpt_dir=str(root / "models"), num_workers=0, device="cpu")
    assert wf.check_properties() == []
    with open(root / "infer" / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    files = sorted(str(p) for p in images.glob("*.png"))
    assert sorted(r["file"] for r in rows) == files
    for r in rows:
        probs = np.array([float(r[f"prob_{c}"]) for c in COVID_CLASSES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert r["pred_class"] == COVID_CLASSES[int(probs.argmax())] == COVID_CLASSES[int(r["pred"])]


def test_grey_pretrained_encoder_is_loaded_and_freeze_keeps_it_with_cross_entropy(tmp_path, demo_data):
    """A DCL-CsTP encoder export (1 channel) initialises the encoder; frozen, 2 CE iterations leave its weights
    and BatchNorm statistics untouched while the head trains."""
    enc = ResNetEncoder2D("resnet18", 1)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in enc.named_buffers():
            if name.endswith("running_mean"):
                b.add_(0.1)
    path = tmp_path / "encoder.pt"
    torch.save(enc.state_dict(), path)
    exported = {k: v.clone() for k, v in enc.state_dict().items()}

    def loaded_and_random_differ(wf):
        net = wf.parser.get_parsed_content("network")
        got = _encoder_state(net)
        for k, v in exported.items():
            torch.testing.assert_close(got[k], v, msg=f"{k} not loaded")
        fresh = ResNetEncoder2D("resnet18", 1).state_dict()
        assert any(not torch.equal(fresh[k], got[k]) for k in got if got[k].is_floating_point())
        wf.fc_before = net.fc.weight.detach().clone()

    wf = run_bundle("pneumonia_cls", ["train.json"], before_run=loaded_and_random_differ,
                    **_tiny(tmp_path, demo_data["covid_radiography"], pretrained_encoder=str(path),
                            freeze_encoder=True, in_channels=1, loss_name="ce"))
    net = wf.parser.get_parsed_content("network")
    after = _encoder_state(net)
    for k, v in exported.items():  # weights and BatchNorm statistics unchanged by 2 training iterations
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=f"frozen {k} changed")
    assert not torch.equal(net.fc.weight, wf.fc_before)  # the head did train
    assert all(not p.requires_grad for p in net.encoder.parameters())
    assert net.encoder.conv1.in_channels == 1
    assert isinstance(wf.parser.get_parsed_content("loss"), torch.nn.CrossEntropyLoss)
    assert np.isfinite(wf.parser.get_parsed_content("train#trainer").state.output["loss"])
    info = torch.load(tmp_path / "models" / "model.pt", weights_only=True)["meta"]
    assert info["activation"] == "softmax" and info["in_channels"] == 1


def test_resume_continues_with_the_best_model_tracking(trained, tmp_path, demo_data):
    root, _ = trained
    for sub in ("eval", "models"):  # a copy of the 1-epoch run, which the other tests keep reading
        shutil.copytree(root / sub, tmp_path / sub)
    kw = _tiny(tmp_path, demo_data["covid_radiography"])
    # pretend epoch 1 was unbeatable: a resumed run must neither forget it nor overwrite model.pt
    path = tmp_path / "models" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["best"]["best_metric"] = 2.0
    (_, name), = ckpt["best"]["saver"]["_saved"]  # ignite Checkpoint's list of (priority, file)
    ckpt["best"]["saver"]["_saved"] = [(2.0, name)]
    torch.save(ckpt, path)
    best_model = (tmp_path / "models" / "model.pt").read_bytes()
    wf = run_bundle("pneumonia_cls", ["train.json"], **{**kw, "max_epochs": 2})
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 4  # one more epoch, not two
    rows = [json.loads(line) for line in (tmp_path / "eval" / "val_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["best_metric"] == 2.0 and rows[-1]["best_metric_epoch"] == 1
    assert (tmp_path / "models" / "model.pt").read_bytes() == best_model


@pytest.mark.slow
def test_ddp_two_ranks_with_gloo(tmp_path, demo_data):
    """torchrun --nproc_per_node 2 (gloo on CPU) with multi_gpu_train.json: both ranks train and validate on their
    shards; rank 0 alone writes the logs, the best model (without DDP's ``module.`` prefix) and the checkpoint."""
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "monai.bundle", "run",
        "--config_file", f"['{BUNDLE}/configs/train.json','{BUNDLE}/configs/multi_gpu_train.json']",
        "--meta_file", f"{BUNDLE}/configs/metadata.json", "--logging_file", f"{BUNDLE}/configs/logging.conf",
        "--bundle_root", str(BUNDLE),
    ]
    for k, v in _tiny(tmp_path, demo_data["covid_radiography"]).items():
        if k != "device":
            args += [f"--{k}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert "fc.weight" in ckpt["model"] and ckpt["meta"]["class_names"] == list(COVID_CLASSES)
    assert torch.load(tmp_path / "models" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2
    rows = (tmp_path / "eval" / "val_metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # one writer, not two
    acc = json.loads(rows[0])["val_accuracy"]  # gathered over both shards: a whole number of the 32 images
    assert acc * 32 == pytest.approx(round(acc * 32))


def test_verify_net_in_out_with_the_metadata_shapes(tmp_path):
    from monai.bundle import verify_net_in_out

    # no checkpoint in ckpt_dir: the network follows the metadata (ResNet-50, 3 x 256 x 256 -> 4 classes)
    verify_net_in_out("network_def", meta_file=str(BUNDLE / "configs" / "metadata.json"),
                      config_file=str(BUNDLE / "configs" / "inference.json"), device="cpu",
                      bundle_root=str(BUNDLE), ckpt_dir=str(tmp_path))


def _export(tmp_path, ckpt_dir, **kw):
    from monai.bundle import ckpt_export

    ts = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(ts), ckpt_file=str(ckpt_dir / "model.pt"),
                meta_file=str(BUNDLE / "configs" / "metadata.json"),
                config_file=str(BUNDLE / "configs" / "inference.json"), key_in_ckpt="model",
                bundle_root=str(BUNDLE), ckpt_dir=str(ckpt_dir), **kw)
    return torch.jit.load(str(ts))


def test_torchscript_export_of_resnet50_by_scripting(tmp_path):
    """The zoo's default export (torch.jit.script) of the paper's ResNet-50 gives the checkpoint's outputs."""
    net = ResNetClassifier(4, "resnet50", 3).eval()
    info = {"class_names": list(COVID_CLASSES), "activation": "sigmoid", "backbone": "resnet50", "in_channels": 3,
            "image_size": 256}
    torch.save({"model": net.state_dict(), "info": info}, tmp_path / "model.pt")
    ts = _export(tmp_path, tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x))


def test_torchscript_export_of_the_trained_resnet18(trained, tmp_path):
    root, _ = trained
    ts = _export(tmp_path, root / "models")
    net = ResNetClassifier(4, "resnet18", 3)
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True)["model"])
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net.eval()(x))


def test_channels_last_moves_the_network_and_every_batch(tmp_path, demo_data):
    """``channels_last`` (the paper preset's on a GPU) as in the segmenters: the network's and each batch's memory
    format, for training and validation alike."""
    from ignite.engine import Events

    seen = []

    def spy(wf):
        trainer = wf.parser.get_parsed_content("train#trainer")
        assert wf.parser.get_parsed_content("validate#evaluator").prepare_batch is trainer.prepare_batch
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output["image"]))

    wf = run_bundle("pneumonia_cls", ["train.json"], before_run=spy,
                    **_tiny(tmp_path, demo_data["covid_radiography"], channels_last=True))
    net = wf.parser.get_parsed_content("network")
    assert net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(seen) == 2  # the 2 training batches (the evaluator runs the same prepare_batch)
    for image in seen:  # 3 channels: a plain NCHW tensor would not pass
        assert image.shape[1] == 3 and image.is_contiguous(memory_format=torch.channels_last)
