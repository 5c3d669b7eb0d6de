"""The ldm_synthesis bundle through monai.bundle.ConfigWorkflow on the built-in data, at a tiny size (32 px)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import BUNDLES, REPO, run_bundle
from monai.bundle import ConfigParser
from PIL import Image

from dcl_cstp_ext.data import build_datalist, build_pretrain_datalist, read_datalist
from dcl_cstp_ext.generative import compute_scale_factor
from dcl_cstp_ext.settings import SettingsError, check_overrides

NETS = {
    "image_size": 32,
    "ae_channels": [8, 16, 16],
    "ae_num_res_blocks": 1,
    "ae_norm_num_groups": 8,
    "unet_channels": [16, 32],
    "unet_attention_levels": [False, True],
    "unet_num_res_blocks": 1,
    "unet_num_head_channels": 16,
    "unet_norm_num_groups": 8,
    "device": "cpu",
}
TRAIN = {
    **NETS,
    "disc_channels": 8,
    "disc_num_layers": 2,
    "batch_size": 4,
    "num_workers": 0,
    "val_interval": 1,
    "val_max_items": 8,
    "num_show": 4,
    "sample_steps": 3,
    "train#trainer#epoch_length": 2,
}
AE = ["train_autoencoder.json"]
DM = ["train_autoencoder.json", "train_diffusion.json"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(root, data, configs, **kw):
    return run_bundle("ldm_synthesis", configs, dataset_dir=str(data), ckpt_dir=str(root / "models"),
                      **{**TRAIN, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    """Autoencoder (2 iterations, adversarial loss on from the start) then denoiser (2 iterations), RGB data."""
    root = tmp_path_factory.mktemp("ldm")
    torch.set_num_threads(1)
    ae = _train(root, demo_data["kvasir_seg"], AE, output_dir=str(root / "ae"), max_epochs=1,
                adv_warmup_epochs=0)
    dm = _train(root, demo_data["kvasir_seg"], DM, output_dir=str(root / "dm"), max_epochs=1)
    return {"root": root, "ae": ae, "dm": dm}


def test_autoencoder_stage_trains_two_iterations_with_the_adversarial_loss(trained):
    root, wf = trained["root"], trained["ae"]
    state = wf.parser.get_parsed_content("train#trainer").state
    assert state.iteration == 2
    out = state.output
    assert all(torch.isfinite(torch.tensor(out[k])) for k in ("loss", "l1", "kl", "g_adv", "d_loss"))
    assert out["d_loss"] > 0 and out["g_adv"] > 0 and out["kl"] > 0
    ckpt = torch.load(root / "models" / "autoencoder_checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "discriminator", "d_optimizer", "rng", "trainer"} <= set(ckpt)
    export = torch.load(root / "models" / "autoencoder.pt", weights_only=True)
    assert "encoder.blocks.0.conv.weight" in export["model"] and export["meta"]["in_channels"] == 3
    grid = Image.open(root / "ae" / "reconstructions" / "epoch_0001.png")
    assert grid.mode == "RGB" and grid.size[0] > 2 * 32
    val = [json.loads(line) for line in (root / "ae" / "validation.jsonl").read_text().splitlines()]
    assert val[-1]["epoch"] == 1 and 0 < val[-1]["val_l1"] < 1
    rows = [json.loads(line) for line in (root / "ae" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1 and "train_l1" in rows[-1]


def test_grey_data_autoencoder_without_discriminator(tmp_path, demo_data):
    wf = _train(tmp_path, demo_data["covid_radiography"], AE, output_dir=str(tmp_path / "ae"), in_channels=1,
                adv_weight=0.0, max_epochs=1)
    assert wf.parser.get_parsed_content("train#trainer").state.iteration == 2
    ckpt = torch.load(tmp_path / "models" / "autoencoder_checkpoint.pt", weights_only=True)
    assert "discriminator" not in ckpt
    assert Image.open(tmp_path / "ae" / "reconstructions" / "epoch_0001.png").mode == "L"


def test_diffusion_stage_stores_the_scale_factor_with_the_checkpoint(trained):
    root, wf = trained["root"], trained["dm"]
    state = wf.parser.get_parsed_content("train#trainer").state
    assert state.iteration == 2 and torch.isfinite(torch.tensor(state.output["loss"]))
    export = torch.load(root / "models" / "model.pt", weights_only=True)["meta"]
    resumable = torch.load(root / "models" / "diffusion_checkpoint.pt", weights_only=True)
    scale = export["scale_factor"]
    assert resumable["latent_scale"]["scale_factor"] == scale
    assert state.output["scale_factor"] == scale
    # it is 1 / std of the latents of the training data under the frozen autoencoder
    ae = wf.parser.get_parsed_content("autoencoder")
    expected = compute_scale_factor(ae, wf.parser.get_parsed_content("train#cache"), seed=0)
    assert scale == pytest.approx(expected, rel=1e-9) and scale != 1.0
    torch.testing.assert_close(export["scheduler"]["betas"], wf.parser.get_parsed_content("noise_scheduler").betas)
    assert (root / "dm" / "samples" / "epoch_0001.png").is_file()


def _infer(ckpt_dir, out, **kw):
    return run_bundle("ldm_synthesis", ["inference.json"], workflow_type="infer", ckpt_dir=str(ckpt_dir),
                      output_dir=str(out), **{**NETS, "num_samples": 3, "batch_size": 2, "sampler": "ddim",
                                              "num_inference_steps": 3, "progress": False, **kw})


def test_inference_reuses_the_stored_scale_factor_and_writes_a_datalist(trained, tmp_path, demo_data):
    models = trained["root"] / "models"
    stored = torch.load(models / "model.pt", weights_only=True)
    # a copy of the weights whose stored scale factor is changed: inference must take it from the file
    other = tmp_path / "models"
    other.mkdir()
    shutil.copy(models / "autoencoder.pt", other / "autoencoder.pt")
    scale_factor = stored["meta"]["scale_factor"]
    torch.save({"model": stored["model"], "meta": {**stored["meta"], "scale_factor": 2.5 * scale_factor}},
               other / "model.pt")
    for ckpt_dir, scale in ((models, scale_factor), (other, 2.5 * scale_factor)):
        out = tmp_path / f"syn_{ckpt_dir.parent.name}"
        wf = _infer(ckpt_dir, out)
        assert wf.parser.get_parsed_content("inferer").scale_factor == pytest.approx(scale)
        record = json.loads((out / "synthesis.json").read_text())
        assert record["scale_factor"] == pytest.approx(scale) and record["num_inference_steps"] == 3
    items = read_datalist(out / "datalist.json")["training"]
    assert len(items) == 3
    for it in items:
        im = Image.open(it["image"])
        assert im.mode == "RGB" and im.size == (32, 32)
    assert Image.open(out / "contact_sheet.png").mode == "RGB"
    real = build_datalist("auto", demo_data["kvasir_seg"], seed=0)
    for synthetic in (items, out / "images"):
        union = build_pretrain_datalist(real, synthetic=synthetic, ratio=1.0)
        assert sum(it["source"] == "synthetic" for it in union) == 3


def test_inference_refuses_a_schedule_other_than_the_training_one(trained, tmp_path):
    with pytest.raises(Exception) as err:
        _infer(trained["root"] / "models", tmp_path / "syn", beta_end=0.02)
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("noise schedule differs" in c for c in chain)


class _Crash(RuntimeError):
    pass


def test_autoencoder_resume_continues_the_iteration_count(tmp_path, demo_data):
    kw = dict(output_dir=str(tmp_path / "ae"), max_epochs=2, adv_warmup_epochs=1, save_every_iters=1)

    def crash_at_3(wf):
        from ignite.engine import Events

        @wf.parser.get_parsed_content("train#trainer").on(Events.ITERATION_STARTED(once=3))
        def _boom(engine):
            raise _Crash("simulated kill")

    with pytest.raises(RuntimeError):
        _train(tmp_path, demo_data["kvasir_seg"], AE, before_run=crash_at_3, **kw)
    ckpt = tmp_path / "models" / "autoencoder_checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["trainer"] == {"epoch": 1, "iteration": 2}
    ran = []

    def count(wf):
        from ignite.engine import Events

        wf.parser.get_parsed_content("train#trainer").add_event_handler(Events.ITERATION_COMPLETED,
                                                                         lambda e: ran.append(e.state.iteration))

    wf = _train(tmp_path, demo_data["kvasir_seg"], AE, before_run=count, **kw)
    state = wf.parser.get_parsed_content("train#trainer").state
    assert ran == [3, 4] and state.iteration == 4 and state.epoch == 2  # continued, not restarted
    assert state.output["d_loss"] > 0  # epoch 2 is past the adversarial warm-up
    final = torch.load(ckpt, weights_only=True)
    assert final["trainer"] == {"epoch": 2, "iteration": 4}
    assert max(int(s["step"]) for s in final["optimizer"]["state"].values()) == 4


def test_train_and_inference_configs_define_the_same_networks_and_schedule():
    from monai.bundle import ConfigParser

    cfg = BUNDLES / "ldm_synthesis" / "configs"
    train, infer = ConfigParser(), ConfigParser()
    train.read_config([str(cfg / "train_autoencoder.json"), str(cfg / "train_diffusion.json")])
    infer.read_config(str(cfg / "inference.json"))
    for key in ("autoencoder_def", "network_def", "noise_scheduler"):
        assert train.get(key) == infer.get(key), key
    for key in [k for k in infer.get() if k.startswith(("ae_", "unet_", "beta_"))] + [
        "latent_channels", "image_size", "in_channels", "num_train_timesteps"
    ]:
        assert train.get(key) == infer.get(key), key


@pytest.mark.slow
def test_ddp_two_ranks_train_both_stages(tmp_path, demo_data):
    """torchrun --nproc_per_node 2 with gloo: 2 iterations of each stage (adversarial loss on), one scale factor."""
    root = BUNDLES / "ldm_synthesis"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    common = ["--bundle_root", str(root), "--dataset_dir", str(demo_data["kvasir_seg"]),
              "--ckpt_dir", str(tmp_path / "models"), "--adv_warmup_epochs", "0",
              "--max_epochs", "1"]
    for port, stage in ((29541, ["train_autoencoder.json", "multi_gpu_train_autoencoder.json"]),
                        (29542, ["train_autoencoder.json", "train_diffusion.json", "multi_gpu_train_diffusion.json"])):
        files = ",".join(f"'{root}/configs/{c}'" for c in stage)
        parser = ConfigParser()
        parser.read_config([str(root / "configs" / c) for c in stage])
        settings = []  # the stage's own keys: the settings check refuses the other stage's (unet_* ...)
        for k, v in TRAIN.items():
            try:
                check_overrides(parser.get(), {k: v})
            except SettingsError:
                continue
            if k != "device":
                settings += [f"--{k}", json.dumps(v) if isinstance(v, list) else str(v)]
        args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                "-m", "monai.bundle", "run", "--config_file", f"[{files}]",
                "--output_dir", str(tmp_path / stage[-1].removesuffix(".json")), *common, *settings]
        proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ae = torch.load(tmp_path / "models" / "autoencoder_checkpoint.pt", weights_only=True)
    assert ae["trainer"]["iteration"] == 2 and "discriminator" in ae
    assert not any(k.startswith("module.") for k in ae["model"])
    dm = torch.load(tmp_path / "models" / "model.pt", weights_only=True)["meta"]
    assert dm["iteration"] == 2 and dm["scale_factor"] > 0


def test_bench_sample_cli_times_each_sampler_and_measures_quality(trained, tmp_path, demo_data):
    """``dcl-cstp bench sample`` on the tiny trained model: one row per sampler, speed-ups against the first,
    quality against the real images, and the JSON report."""
    out = tmp_path / "bench.json"
    nets = {k: v for k, v in NETS.items() if k != "device"}
    preset = tmp_path / "tiny_preset.json"
    preset.write_text(json.dumps(nets))
    cmd = [sys.executable, "-m", "dcl_cstp_ext.cli", "bench", "sample", "--ckpt-dir", str(trained["root"] / "models"),
           "--preset", str(preset), "--samplers", "ddim:40,dpm_solver:4", "--num-images", "4", "--batch-size", "4",
           "--device", "cpu", "--threads", "1", "--dataset-dir", str(demo_data["kvasir_seg"]), "--bootstrap", "5",
           "--progress", "False", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["sampler"]: r for r in report["results"]}
    assert set(rows) == {"ddim", "dpm_solver"}
    assert rows["ddim"]["unet_evaluations"] == 40 and rows["dpm_solver"]["unet_evaluations"] == 4
    assert rows["ddim"]["speedup"] == pytest.approx(1.0)
    assert rows["dpm_solver"]["seconds_per_image"] > 0 and rows["dpm_solver"]["speedup"] > 1.0
    # the first sampler is the reference of the Frechet-distance ratio
    assert rows["ddim"]["fd_ratio"] == pytest.approx(1.0)
    assert rows["dpm_solver"]["fd_ratio"] == pytest.approx(rows["dpm_solver"]["frechet_distance"]
                                                          / rows["ddim"]["frechet_distance"])
    assert "dpm_solver" in proc.stdout  # the table is printed


def test_bench_sample_module_shows_its_arguments():
    """``python -m dcl_cstp_ext.bench.sample --help`` lists bench_sample's flags (it used to crash on ``help``)."""
    import inspect

    from dcl_cstp_ext.bench import sample

    assert inspect.signature(sample._main) == inspect.signature(sample.bench_sample)
