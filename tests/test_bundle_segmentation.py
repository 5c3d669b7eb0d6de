"""The isic_seg and kvasir_seg bundles, run through monai.bundle.ConfigWorkflow on the built-in data at a tiny size:
train, evaluate, infer (masks at each input's own size), DCL-CsTP initialisation, frozen encoder, resume of the
best-model tracking, model-zoo checks (verify_net_in_out, TorchScript export)."""

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
from conftest import BUNDLES, run_bundle
from monai.bundle import ckpt_export, verify_net_in_out
from monai.networks.nets import FlexibleUNet
from PIL import Image

from dcl_cstp_ext.data import read_datalist
from dcl_cstp_ext.networks import read_export, save_export

DATA = {"isic_seg": "isic2018", "kvasir_seg": "kvasir_seg"}
TINY = {
    "backbone": "resnet18",
    "image_size": 32,
    "batch_size": 4,
    "val_batch_size": 8,
    "num_workers": 0,
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


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module", params=sorted(DATA))
def trained(request, tmp_path_factory, demo_data):
    """Each bundle trained for 2 iterations (one epoch, validated); returns (bundle, run folder, workflow state)."""
    bundle = request.param
    tmp = tmp_path_factory.mktemp(bundle)
    wf = run_bundle(bundle, ["train.json"], **_tiny(tmp, demo_data[DATA[bundle]], max_epochs=1,
                                                   **{"train#trainer#epoch_length": 2}))
    state = wf.parser.get_parsed_content("train#trainer").state
    return bundle, tmp, state


def test_train_two_iterations(trained):
    bundle, tmp, state = trained
    assert state.iteration == 2
    assert np.isfinite(state.output["loss"]) and state.output["loss"] > 0
    for f in ("checkpoint.pt", "model.pt"):
        assert (tmp / "models" / f).is_file(), f
    best = torch.load(tmp / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(best) == {"model", "meta"} and best["meta"]["in_channels"] == 3  # the project's one export format
    assert best["meta"]["preset"] == "default" and best["meta"]["backbone"] == "resnet18"  # what built the weights
    best = best["model"]
    assert any(k.startswith("encoder.") for k in best) and any(k.startswith("decoder.") for k in best)
    rows = _jsonl(tmp / "eval" / "val_metrics.jsonl")
    assert rows[-1]["epoch"] == 1
    assert rows[-1]["val_mean_iou"] <= rows[-1]["val_mean_dice"]  # IoU = Dice / (2 - Dice) <= Dice per image
    assert rows[-1]["best_metric"] == pytest.approx(rows[-1]["val_mean_dice"])
    assert "train_loss" in _jsonl(tmp / "eval" / "metrics.jsonl")[-1]
    datalist = read_datalist(tmp / "eval" / "datalist.json")
    assert len(datalist["validation"]) == 12 and len(datalist["training"]) == 48
    assert json.loads((tmp / "eval" / "run_info.json").read_text())[-1]["dataset"] == DATA[bundle]


def test_evaluate_of_a_model_with_other_settings_says_which_before_loading(trained, demo_data):
    """The model records what built it: an evaluation that asks for another backbone is refused naming both, with
    what to pass, instead of a size mismatch inside MONAI's CheckpointLoader."""
    from dcl_cstp_ext.settings import SettingsError

    bundle, tmp, _ = trained
    with pytest.raises(RuntimeError) as err:
        run_bundle(bundle, ["train.json", "evaluate.json"], workflow_type="eval",
                   **_tiny(tmp, demo_data[DATA[bundle]], backbone="resnet34", output_dir=str(tmp / "evaluate34"),
                           split_file=str(tmp / "eval" / "datalist.json")))
    cause = err.value
    while cause is not None and not isinstance(cause, SettingsError):
        cause = cause.__cause__
    assert cause is not None, err.value
    assert "was trained with backbone 'resnet18'; this run asks for backbone 'resnet34'" in str(cause)
    assert "configs/presets/cpu.json" in str(cause)


def test_evaluate_writes_metrics_and_worst_cases(trained, demo_data):
    bundle, tmp, _ = trained
    out = tmp / "evaluate"  # another output folder: the split file of training is passed explicitly
    wf = run_bundle(bundle, ["train.json", "evaluate.json"], workflow_type="eval",
                    **_tiny(tmp, demo_data[DATA[bundle]], output_dir=str(out),
                            split_file=str(tmp / "eval" / "datalist.json"), num_worst=4))
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n"] == 12 and summary["split"] == "validation" and summary["image_size"] == 32
    for k in ("dice", "iou", "hd", "hd95"):
        assert set(summary[k]) >= {"mean", "std", "median"}
    # the report and MONAI's DiceMetric (ignore_empty=False) agree
    assert summary["dice"]["mean"] == pytest.approx(evaluator.state.metrics["val_mean_dice"], abs=1e-5)
    assert summary["iou"]["mean"] == pytest.approx(evaluator.state.metrics["val_mean_iou"], abs=1e-5)
    # ... and with the training's own validation of the model it saved (one epoch: the best is the last)
    trained_val = _jsonl(tmp / "eval" / "val_metrics.jsonl")[-1]
    assert summary["dice"]["mean"] == pytest.approx(trained_val["val_mean_dice"], abs=1e-5)
    rows = list(csv.DictReader(open(out / "metrics_per_image.csv")))
    assert len(rows) == 12 and set(rows[0]) >= {"image", "label", "dice", "iou", "hd", "hd95"}
    worst = sorted((out / "worst_cases").glob("*.png"))
    assert len(worst) == 4
    lowest = min(rows, key=lambda r: float(r["dice"]))
    assert worst[0].name.startswith("01_") and worst[0].stem.endswith(lowest["image"].rsplit("/", 1)[1].rsplit(".")[0])


def _sized_copies(src_dir, dst, sizes):
    """Copies of the first demo images resized to ``sizes`` (w, h): inputs of different sizes for inference."""
    dst.mkdir(parents=True)
    files = sorted(p for p in src_dir.iterdir() if p.suffix in (".jpg", ".png"))
    out = []
    for i, (size, src) in enumerate(zip(sizes, files)):
        with Image.open(src) as im:
            path = dst / f"case{i}{src.suffix}"
            im.convert("RGB").resize(size).save(path)
            out.append((path, size))
    return out


def _image_folder(demo_data, bundle):
    root = demo_data[DATA[bundle]]
    return root / "ISIC2018_Task1-2_Training_Input" if bundle == "isic_seg" else root / "Kvasir-SEG" / "images"


def test_inference_masks_at_each_input_size(trained, demo_data):
    bundle, tmp, _ = trained
    inputs = _sized_copies(_image_folder(demo_data, bundle), tmp / "inputs", [(57, 41), (128, 96), (33, 70)])
    out = tmp / "pred"
    run_bundle(bundle, ["inference.json"], workflow_type="infer", dataset_dir=str(tmp / "inputs"),
               output_dir=str(out), ckpt_dir=str(tmp / "models"), backbone="resnet18", image_size=32, batch_size=2,
               num_workers=0, device="cpu", amp=False)
    for path, (w, h) in inputs:
        with Image.open(out / "masks" / f"{path.stem}.png") as im:
            assert im.size == (w, h) and im.mode == "L"
            assert set(np.unique(np.asarray(im)).tolist()) <= {0, 255}
        with Image.open(out / "overlays" / f"{path.stem}.png") as im:
            assert im.size == (w, h) and im.mode == "RGB"
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 3


def test_inference_on_a_datalist(trained):
    bundle, tmp, _ = trained
    out = tmp / "pred_dl"
    run_bundle(bundle, ["inference.json"], workflow_type="infer", dataset_dir=str(tmp / "eval" / "datalist.json"),
               output_dir=str(out), ckpt_dir=str(tmp / "models"), backbone="resnet18", image_size=32,
               num_workers=0, device="cpu", amp=False)
    assert len(list((out / "masks").glob("*.png"))) == 12  # the validation split (no test split in the demo data)


def _export_and_compare(root, model_pt, ts, backbone, size, net_id="network_def"):
    meta, infer = str(root / "configs" / "metadata.json"), str(root / "configs" / "inference.json")
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=infer, device="cpu", bundle_root=str(root),
                      backbone=backbone)
    ckpt_export(net_id=net_id, filepath=str(ts), ckpt_file=str(model_pt), meta_file=meta, config_file=infer,
                bundle_root=str(root), backbone=backbone, key_in_ckpt="model")  # as the README: the export format
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(str(ts), map_location="cpu", _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == "0.1.0"
    net = FlexibleUNet(3, 1, backbone, spatial_dims=2)
    net.load_state_dict(read_export(model_pt)[0])
    net.eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        ref = net(x)
        torch.testing.assert_close(scripted(x), ref)
    assert ref.shape == (2, 1, size, size)


def test_model_zoo_checks_and_torchscript_equality(trained):
    """The trained resnet18 model. MONAI's ResNet-18/34 hold 'A' shortcuts as a functools.partial that TorchScript
    cannot script: ``export_network_def`` is ``network_def`` with them made scriptable (same weights and outputs)."""
    bundle, tmp, _ = trained
    _export_and_compare(BUNDLES / bundle, tmp / "models" / "model.pt", tmp / "models" / "model.ts", "resnet18", 64,
                        net_id="export_network_def")


def test_paper_network_scripts(tmp_path):
    """The default (paper) ResNet-50 network exports with the plain ``ckpt_export`` command (scripting)."""
    torch.manual_seed(0)
    save_export(tmp_path / "model.pt", FlexibleUNet(3, 1, "resnet50", spatial_dims=2).state_dict())
    _export_and_compare(BUNDLES / "kvasir_seg", tmp_path / "model.pt", tmp_path / "model.ts", "resnet50", 64)


def _encoder_state(state_dict, prefix="encoder."):
    return {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def dcl_export(tmp_path_factory, demo_data):
    """A DCL-CsTP encoder export (models/encoder.pt) from one iteration of the dcl_pretrain bundle."""
    tmp = tmp_path_factory.mktemp("pretrain")
    run_bundle("dcl_pretrain", ["train.json"], backbone="resnet18", image_size=32, batch_size=4, num_workers=0,
               queue_size=16, monitor_max_bank=16, monitor_max_query=8, device="cpu", amp=False, max_epochs=1,
               dataset_dir=str(demo_data["kvasir_seg"]), output_dir=str(tmp / "eval"), ckpt_dir=str(tmp / "models"),
               **{"head_kwargs#dim": 32, "train#trainer#epoch_length": 1})
    return tmp / "models" / "encoder.pt"


@pytest.mark.parametrize("freeze", [True, False])
def test_dcl_cstp_export_initialises_the_encoder(freeze, tmp_path, demo_data, dcl_export):
    export = read_export(dcl_export)[0]
    start = {}

    def grab(wf):
        start.update({k: v.clone() for k, v in wf.parser.get_parsed_content("network").state_dict().items()})

    run_bundle("kvasir_seg", ["train.json"], before_run=grab,
               **_tiny(tmp_path, demo_data["kvasir_seg"], max_epochs=1, pretrained_encoder=str(dcl_export),
                       freeze_encoder=freeze, **{"train#trainer#epoch_length": 2}))
    enc_start = _encoder_state(start)
    assert enc_start.keys() == export.keys()
    for k, v in export.items():
        torch.testing.assert_close(enc_start[k], v, msg=f"{k} not loaded from the export")
    fresh = _encoder_state(FlexibleUNet(3, 1, "resnet18", spatial_dims=2).state_dict())
    assert any(not torch.equal(fresh[k], v) for k, v in export.items() if v.is_floating_point())

    end = torch.load(tmp_path / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    enc_end = _encoder_state(end)
    changed = [k for k, v in export.items() if not torch.equal(enc_end[k], v)]
    if freeze:
        assert changed == [], f"frozen encoder changed: {changed[:5]}"  # weights and BatchNorm statistics
    else:
        assert any(k.endswith("conv1.weight") for k in changed)
    dec = [k for k in end if k.startswith(("decoder.", "segmentation_head."))]
    assert any(not torch.equal(end[k], start[k]) for k in dec if end[k].is_floating_point())


@pytest.mark.parametrize("trained", ["isic_seg"], indirect=True)
def test_resume_restores_the_best_model_tracking(trained, tmp_path, demo_data):
    """Continue the 1-epoch run of the ``trained`` fixture (a copy of it) to 2 epochs."""
    bundle, done, _ = trained
    shutil.copytree(done / "models", tmp_path / "models")
    shutil.copytree(done / "eval", tmp_path / "eval")
    common = _tiny(tmp_path, demo_data["isic2018"], **{"train#trainer#epoch_length": 2})
    first = _jsonl(tmp_path / "eval" / "val_metrics.jsonl")[-1]
    seen = {}

    def watch(wf):
        from ignite.engine import Events

        trainer = wf.parser.get_parsed_content("train#trainer")
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
        saver = wf.parser.get_parsed_content("validate#checkpoint_saver")

        @trainer.on(Events.STARTED)  # after ResumableCheckpoint's STARTED handler
        def _after_resume(engine):
            seen["epoch"] = engine.state.epoch
            seen["best"] = evaluator.state.best_metric
            seen["saved"] = list(saver._key_metric_checkpoint._saved)

    wf = run_bundle("isic_seg", ["train.json"], before_run=watch, max_epochs=2, **common)
    assert seen["epoch"] == 1
    assert seen["best"] == pytest.approx(first["val_mean_dice"])
    assert len(seen["saved"]) == 1 and seen["saved"][0].priority == pytest.approx(first["val_mean_dice"])
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 4
    rows = _jsonl(tmp_path / "eval" / "val_metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["best_metric"] == pytest.approx(max(r["val_mean_dice"] for r in rows))


def test_bundle_layout():
    for bundle in DATA:
        root = BUNDLES / bundle
        for f in ("LICENSE", "large_files.yml", "docs/README.md", "docs/data_license.txt", "configs/metadata.json",
                  "configs/train.json", "configs/evaluate.json", "configs/inference.json", "configs/multi_gpu_train.json",
                  "configs/logging.conf", "configs/presets/paper.json", "configs/presets/cpu.json"):
            assert (root / f).is_file(), f"{bundle}/{f}"
        meta = json.loads((root / "configs" / "metadata.json").read_text())
        assert meta["version"] in meta["changelog"]
        fmt = meta["network_data_format"]
        assert fmt["inputs"]["image"]["num_channels"] == 3 and fmt["outputs"]["pred"]["num_channels"] == 1
        paper = json.loads((root / "configs" / "presets" / "paper.json").read_text())
        assert paper["backbone"] == "resnet50" and paper["batch_size"] == 8 and paper["max_epochs"] == 100
        assert paper["lr"] == 1e-4 and paper["weight_decay"] == 1e-5 and paper["optimizer_name"] == "adamw"
    # the two bundles are one recipe: their configs differ only in the data set defaults
    a, b = (json.loads((BUNDLES / n / "configs" / "train.json").read_text()) for n in ("isic_seg", "kvasir_seg"))
    assert {k for k in a if a[k] != b[k]} == {"dataset"}
    for name in ("evaluate.json", "multi_gpu_train.json", "presets/paper.json"):
        assert (BUNDLES / "isic_seg" / "configs" / name).read_text() == (BUNDLES / "kvasir_seg" / "configs" / name).read_text()


@pytest.mark.slow
def test_ddp_two_ranks(tmp_path, demo_data):
    """torchrun --nproc_per_node 2 with gloo: sharded training and validation; one set of outputs, from rank 0."""
    root = BUNDLES / "kvasir_seg"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
        "-m", "monai.bundle", "run",
        "--config_file", f"['{root}/configs/train.json','{root}/configs/multi_gpu_train.json']",
        "--bundle_root", str(root), "--dataset_dir", str(demo_data["kvasir_seg"]),
        "--output_dir", str(tmp_path / "eval"), "--ckpt_dir", str(tmp_path / "models"),
        "--max_epochs", "1", "--train#trainer#epoch_length", "2",
    ]
    for k, v in TINY.items():
        if k != "device":
            args += [f"--{k}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["best"]["best_metric_epoch"] == 1
    best = read_export(tmp_path / "models" / "model.pt")[0]
    assert not any(k.startswith("module.") for k in best)  # saved unwrapped: loads into network_def
    assert len(_jsonl(tmp_path / "eval" / "val_metrics.jsonl")) == 1
    assert len(list((tmp_path / "eval" / "tensorboard").glob("events.*"))) == 1
    assert not (tmp_path / "runs").exists()


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_saves_no_model(tmp_path, demo_data):
    """Issue #23: ``--optimizer_name sgd --lr 1e30`` used to log loss=nan for every iteration, finish with rc 0 and
    save non-finite weights as the best model. Now it stops before that loss's step, and nothing is saved."""
    kw = _tiny(tmp_path, demo_data["isic2018"], optimizer_name="sgd", lr=1e30, max_epochs=2,
               **{"train#trainer#epoch_length": 2})
    with pytest.raises(Exception) as err:  # MONAI wraps what a handler raises
        run_bundle("isic_seg", ["train.json"], **kw)
    chain, e = [], err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    guard = next(c for c in chain if isinstance(c, FloatingPointError))
    assert "at iteration" in str(guard) and "lower the learning rate" in str(guard)
    assert not (tmp_path / "models" / "model.pt").exists()
    ckpt = tmp_path / "models" / "checkpoint.pt"
    if ckpt.exists():  # only a checkpoint written before the weights went wrong
        state = torch.load(ckpt, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_tensorboard_keeps_the_per_iteration_loss_and_the_epoch_mean_under_separate_tags(trained):
    """Issue #22: ``train_loss`` held both the iteration losses and, at steps 1, 2, ..., the epoch means."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, tmp, state = trained
    events = EventAccumulator(str(tmp / "eval" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == list(range(1, state.iteration + 1))
    assert [e.step for e in events.Scalars("epoch/train_loss")] == [1]


def test_every_trainer_writes_epoch_values_once():
    """The trainers' TensorBoard handlers log iterations only: EpochSummary writes the epoch means (``epoch/...``)
    and the k-NN monitor its accuracy, which the handler's epoch log would write a second time."""
    for path in sorted(BUNDLES.glob("*/configs/train*.json")):
        config = json.loads(path.read_text())
        handlers = config.get("train#handlers") or config["train"]["handlers"]
        boards = [h for h in handlers if isinstance(h, dict) and h.get("_target_") == "TensorBoardStatsHandler"]
        assert boards and all(h["epoch_log"] is False for h in boards), path
