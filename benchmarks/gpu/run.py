"""The GPU check: one command of at most 9 minutes on the GPU machine, JSON under ``--out`` (``benchmarks/gpu/README.md``).

Steps, each written to ``<out>/gpu_check.json`` as soon as it ends (a step that would not fit in the time left is
skipped and says so, so a run cut short still leaves what it measured):

a. ``bench pretrain`` of the four methods at the paper preset (ResNet-50, 256 px, batch 128, AMP, channels-last);
b. the data-loading share of a pre-training step: the bundle's real pipeline (cached images, three strong views)
   feeding DCL-CsTP steps, time waiting for a batch / time of the step;
c. ``bench sample`` DDPM-1000 vs SDE-DPM-Solver++ 20 on a small LDM trained for a few epochs here;
d. ``bench infer`` of the three downstream bundles at the paper preset;
e. a short paper-protocol Kvasir-SEG run: DCL-CsTP pre-training for the epochs the time left allows, then
   fine-tuning of DCL-CsTP and random initialisations, validation Dice of both.

    python3 benchmarks/gpu/run.py --data-root benchmarks/gpu/.carry/kvasir-seg --out $OUT
    python benchmarks/gpu/run.py --data-root DIR --out /tmp/gpu --device cpu --tiny   # the CPU dry run (tests)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

#: settings per mode: the paper preset on the GPU, and a dry run small enough for the test suite
SETTINGS = {
    "gpu": {"backbone": "resnet50", "image_size": 256, "batch_size": 128, "bench_steps": 10, "warmup": 3,
            "queue_size": 4096, "loading_batches": 12, "num_workers": 12, "ldm_preset": "cpu",
            "ldm_overrides": {"ldm/autoencoder": {"max_epochs": 4}, "ldm/diffusion": {"max_epochs": 8}},
            "samplers": "ddpm:1000,dpm_solver:20",
            "sample_images": 32, "pipeline_preset": "paper", "finetune_epochs": 20},
    "tiny": {"backbone": "resnet18", "image_size": 32, "batch_size": 8, "bench_steps": 2, "warmup": 1,
             "queue_size": 64, "loading_batches": 2, "num_workers": 0, "ldm_preset": "cpu",
             "ldm_overrides": {"ldm": {"max_epochs": 1, "image_size": 32}},
             "samplers": "ddim:4,dpm_solver:4", "sample_images": 4, "pipeline_preset": "tiny", "finetune_epochs": 1,
             "pretrain_epochs": 1},
}


class Report:
    """``<out>/gpu_check.json``, rewritten after every step."""

    def __init__(self, out: Path, budget_s: float, settings: dict, device: str) -> None:
        self.out, self.start, self.budget = out, time.monotonic(), budget_s
        out.mkdir(parents=True, exist_ok=True)
        self.data = {"device": device, "settings": settings, "budget_s": budget_s, "steps": {},
                     "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                 "torch": torch.__version__,
                                 "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None}}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def step(self, name: str, need_s: float, fn) -> None:
        """Run ``fn()`` if ``need_s`` seconds are left; record its result, its time or why it did not run."""
        if self.left() < need_s:
            self.data["steps"][name] = {"skipped": f"{self.left():.0f} s left, the step needs about {need_s:.0f} s"}
        else:
            t0 = time.monotonic()
            try:
                self.data["steps"][name] = {"result": fn(), "seconds": round(time.monotonic() - t0, 1)}
            except Exception as err:  # keep the other steps' results
                self.data["steps"][name] = {"error": repr(err)[-2000:], "seconds": round(time.monotonic() - t0, 1)}
        self.write()
        print(f"[{time.monotonic() - self.start:6.0f} s] {name}: {json.dumps(self.data['steps'][name])[:300]}",
              flush=True)

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.start, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def bench_pretrain_step(s: dict, device: str, out: Path) -> dict:
    from dcl_cstp_ext.bench.pretrain import bench_pretrain
    from dcl_cstp_ext.networks import bn_splits_for

    cuda = device.startswith("cuda")
    rep = bench_pretrain(methods="dcl_cstp,simsiam,mocov2,simclr", backbone=s["backbone"], image_size=s["image_size"],
                         batch_size=s["batch_size"], steps=s["bench_steps"], warmup=s["warmup"], device=device,
                         amp=cuda, channels_last=cuda, queue_size=s["queue_size"],
                         bn_splits=bn_splits_for(s["batch_size"]), paired_rounds=s["bench_steps"],
                         json_path=str(out / "pretrain.json"))
    return {r["method"]: {k: r.get(k) for k in ("step_s_median", "images_per_s", "peak_cuda_mb", "peak_rss_mb",
                                                "step_time_vs_simsiam", "step_time_vs_simsiam_paired")}
            for r in rep["results"]}


def loading_share(s: dict, device: str, data_root: str) -> dict:
    """Real images through the bundle's cached, strongly augmented 3-view pipeline into DCL-CsTP steps."""
    from monai.data import DataLoader
    from monai.utils import convert_to_tensor

    from dcl_cstp_ext.data import build_datalist, crop_source_size, make_cached_dataset, unlabelled_preprocess
    from dcl_cstp_ext.engines import (
        EpochSeededSampler,
        SeededAugmentDataset,
        build_optimizer,
        grad_scaler_for,
        ssl_train_step,
    )
    from dcl_cstp_ext.methods import build_method
    from dcl_cstp_ext.networks import bn_splits_for
    from dcl_cstp_ext.transforms import strong_views_transform

    items = build_datalist("auto", data_root, seed=0)["training"]
    t0 = time.perf_counter()
    cache = make_cached_dataset([{"image": it["image"]} for it in items],
                                unlabelled_preprocess(crop_source_size(s["image_size"]), 3), num_workers=8)
    cache_s = time.perf_counter() - t0
    ds = SeededAugmentDataset(cache, strong_views_transform(s["image_size"], num_views=3))
    batch = min(s["batch_size"], len(ds))
    loader = DataLoader(ds, batch_size=batch, sampler=EpochSeededSampler(ds, seed=0, drop_last=True), drop_last=True,
                        num_workers=s["num_workers"], pin_memory=device.startswith("cuda"),
                        persistent_workers=s["num_workers"] > 0)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    method = build_method("dcl_cstp", backbone=s["backbone"], in_channels=3, queue_size=s["queue_size"],
                          bn_splits=bn_splits_for(batch)).to(dev)
    opt = build_optimizer(method.param_groups(), lr=0.03)
    scaler = grad_scaler_for(dev, cuda)
    wait = step = 0.0
    n = 0
    epoch = 0
    while n < s["loading_batches"] + 1:
        loader.sampler.set_epoch(epoch)
        it = iter(loader)
        while n < s["loading_batches"] + 1:
            t0 = time.perf_counter()
            try:
                b = next(it)
            except StopIteration:
                break
            views = [convert_to_tensor(b[k], track_meta=False).to(dev, non_blocking=True) for k in ("view1", "view2", "view3")]
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            indices = convert_to_tensor(b["sample_index"], track_meta=False).to(dev)
            ssl_train_step(method, opt, views, amp=cuda, scaler=scaler, indices=indices)
            if cuda:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if n > 0:  # the first batch starts the workers
                wait, step = wait + (t1 - t0), step + (t2 - t1)
            n += 1
        epoch += 1
    timed = max(1, n - 1)
    return {"images": len(items), "cache_fill_s": round(cache_s, 1), "batch_size": batch,
            "num_workers": s["num_workers"], "batches_timed": timed, "wait_s_per_batch": wait / timed,
            "step_s_per_batch": step / timed, "loading_share": wait / max(1e-9, wait + step)}


def _pipeline_cfg(data_root: str, out: Path, preset: str, device: str, overrides: dict, methods=("random", "dcl_cstp")):
    from dcl_cstp_ext.pipeline import PipelineConfig

    return PipelineConfig(task="kvasir_seg", data_root=data_root, out=str(out), preset=preset, methods=tuple(methods),
                          label_fractions=(1.0,), seeds=(0,), device=device, overrides=overrides)


def ldm_sampling(s: dict, device: str, data_root: str, out: Path) -> dict:
    from dcl_cstp_ext.bench.sample import bench_sample
    from dcl_cstp_ext.pipeline.runner import run_stage
    from dcl_cstp_ext.pipeline.stages import ldm_stages, write_split

    run = out / "ldm_run"
    ldm = {**s["ldm_overrides"], "ldm": {**s["ldm_overrides"].get("ldm", {}), "num_workers": 0}}
    cfg = _pipeline_cfg(data_root, run, "cpu", device, ldm)
    write_split(cfg)
    stages, _ = ldm_stages(cfg, run)
    for stage in stages[:2]:  # the autoencoder and the denoiser: what the samplers need
        run_stage(stage)
    rep = bench_sample(preset=s["ldm_preset"], ckpt_dir=str(run / "ldm" / "models"), samplers=s["samplers"],
                       num_images=s["sample_images"], batch_size=s["sample_images"], device=device,
                       json_path=str(out / "sample.json"), progress=False,
                       overrides={"image_size": s["ldm_overrides"].get("ldm", {}).get("image_size", 64)})
    return {r["label"]: {k: r.get(k) for k in ("unet_evaluations", "seconds_per_image", "speedup")}
            for r in rep["results"]}


def infer(s: dict, device: str, out: Path, tiny: bool) -> dict:
    from dcl_cstp_ext.bench.infer import bench_infer

    rep = bench_infer(preset="cpu" if tiny else "paper", batch_size=1, steps=2 if tiny else 20, warmup=1 if tiny else 3,
                      device=device, channels_last=device.startswith("cuda"), json_path=str(out / "infer.json"))
    return {r["bundle"]: {k: r.get(k) for k in ("eager_ms", "torchscript_ms", "images_per_s_torchscript")}
            for r in rep["results"]}


def short_protocol(s: dict, device: str, data_root: str, out: Path, seconds: float, pretrain_step_s: float | None) -> dict:
    """DCL-CsTP pre-training for the epochs ``seconds`` allows (half of it), then both fine-tunings, in a child
    process with a time-out: a cut run still reports the pre-training epochs it finished."""
    n_train = 704 if s["pipeline_preset"] == "paper" else 16
    steps_per_epoch = max(1, n_train // s["batch_size"])
    epoch_s = (pretrain_step_s or 1.0) * steps_per_epoch * 1.3 + 5
    epochs = s.get("pretrain_epochs") or max(1, min(200, int(0.5 * seconds / epoch_s)))
    run = out / "protocol_run"
    overrides = {"pretrain": {"max_epochs": epochs, "val_interval": max(1, epochs)},
                 "finetune": {"max_epochs": s["finetune_epochs"], "val_interval": max(1, s["finetune_epochs"] // 4)}}
    cmd = [sys.executable, "-c", "from dcl_cstp_ext.cli import main; main()", "pipeline", "--task", "kvasir_seg",
           "--data-root", data_root, "--out", str(run), "--preset", s["pipeline_preset"], "--methods", "random,dcl_cstp",
           "--label-fractions", "1", "--seeds", "0", "--device", device, "--overrides", json.dumps(overrides)]
    env = {"PYTHONPATH": f"{REPO}:{':'.join(sys.path)}", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=seconds, capture_output=True, text=True)
        status = "finished" if proc.returncode == 0 else f"failed rc {proc.returncode}: {proc.stderr[-1500:]}"
    except subprocess.TimeoutExpired:
        status = f"cut at {seconds:.0f} s"
    result = {"status": status, "pretrain_epochs_planned": epochs, "dice": {}}
    metrics = run / "pretrain" / "dcl_cstp" / "eval" / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        result["pretrain_epochs_done"] = len(rows)
        result["pretrain_last"] = {k: rows[-1].get(k) for k in ("train_loss", "train_z_std", "knn_accuracy", "seconds")}
    for init in ("random", "dcl_cstp"):
        m = run / "finetune" / init / "lf1" / "seed0" / "evaluate" / "metrics.json"
        if m.is_file():
            result["dice"][init] = json.loads(m.read_text()).get("dice")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO / "benchmarks" / "gpu" / ".carry" / "kvasir-seg"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="the CPU dry run: tiny sizes, every step")
    ap.add_argument("--budget-s", type=float, default=510.0, help="stop starting steps after this (9 min less a margin)")
    a = ap.parse_args(argv)
    s = SETTINGS["tiny" if a.tiny else "gpu"]
    out = Path(a.out)
    rep = Report(out, a.budget_s, s, a.device)
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    rep.step("a_pretrain", 60, lambda: bench_pretrain_step(s, a.device, out))
    rep.step("b_loading_share", 45, lambda: loading_share(s, a.device, a.data_root))
    rep.step("c_sampling", 90, lambda: ldm_sampling(s, a.device, a.data_root, out))
    rep.step("d_infer", 30, lambda: infer(s, a.device, out, a.tiny))
    dcl = rep.data["steps"].get("a_pretrain", {}).get("result", {}).get("dcl_cstp", {})
    rep.step("e_short_protocol", 60, lambda: short_protocol(s, a.device, a.data_root, out, rep.left() - 15,
                                                            dcl.get("step_s_median")))
    print(f"wrote {out / 'gpu_check.json'} in {rep.data['elapsed_s']} s", flush=True)


if __name__ == "__main__":
    main()
