"""``dcl-cstp bench sample``: seconds per image and sample quality of each sampler on one trained latent diffusion model.

The model is the one of an ``ldm_synthesis`` bundle (built from its ``configs/inference.json``, a preset and overrides,
weights from ``ckpt_dir``). Every sampler draws ``num_images`` images with the same seed and batch size; wall-clock
and process CPU time are measured around the whole sampling (denoising and decoding; model loading and one warm-up
batch excluded). With ``dataset_dir``, the Frechet distance, k-NN precision/recall and MS-SSIM diversity of each
sampler's images are computed against the real training images (see :mod:`dcl_cstp_ext.generative.quality` and :mod:`dcl_cstp_ext.generative.feature_encoder` for the
feature encoder), with a bootstrap standard deviation and the real-vs-real Frechet distance of two disjoint real sets
of the same size as the noise floor.

Run directly: ``python -m dcl_cstp_ext.bench.sample --preset cpu --ckpt_dir ... --dataset_dir ... --json out.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from ..data import build_datalist
from ..generative import (
    build_feature_encoder,
    check_schedule,
    extract_image_features,
    generate_images,
    knn_precision_recall,
)
from ..generative.curation import load_images
from ..generative.quality import feature_statistics, frechet_distance, frechet_distance_from_features, ms_ssim_diversity
from ..generative.samplers import latent_shape_of, make_sampler_scheduler, unet_evaluations
from ..reports.images import save_grid

__all__ = ["bench_sample", "parse_samplers", "DEFAULT_BUNDLE"]

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ldm_synthesis"
#: the speed / quality targets of the project for DPM-Solver++ (20 steps) against the full DDPM chain
SPEEDUP_TARGET = 40.0
FD_TOLERANCE = 0.10


def parse_samplers(spec: str | Sequence[str]) -> list[tuple[str, int | None]]:
    """``"ddpm:1000,ddim:50,dpm_solver:20"`` (or a list of such items) -> ``[("ddpm", 1000), ...]``; a missing
    step count means the sampler's default."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    out = []
    for item in filter(None, items):
        name, _, steps = item.partition(":")
        out.append((name.strip(), int(steps) if steps.strip() else None))
    return out


def _build(bundle_root: Path, config_files: Sequence[str], preset: str | None, overrides: Mapping) -> dict:
    files = [str(bundle_root / f) for f in config_files]
    if preset:
        p = Path(preset)
        files.append(str(p if p.suffix == ".json" else bundle_root / "configs" / "presets" / f"{preset}.json"))
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(bundle_root)
    for k, v in overrides.items():
        parser[k] = v
    parser.parse()
    ckpt_meta = parser.get_parsed_content("checkpointloader")
    parser.get_parsed_content("autoencoder_loader")

    check_schedule(ckpt_meta, parser.get_parsed_content("noise_scheduler"))
    return {
        "autoencoder": parser.get_parsed_content("autoencoder").eval(),
        "network": parser.get_parsed_content("network").eval(),
        "scheduler": parser.get_parsed_content("noise_scheduler"),
        "scale_factor": float(parser.get_parsed_content("scale_factor")),
        "in_channels": int(parser.get_parsed_content("in_channels")),
        "image_size": int(parser.get_parsed_content("image_size")),
        "ckpt_path": str(parser.get_parsed_content("ckpt_path")),
        "ckpt_meta": {k: v for k, v in ckpt_meta.items() if k not in ("scheduler",)},
    }


def _fd_with_bootstrap(real: torch.Tensor, fake: torch.Tensor, rounds: int, seed: int) -> tuple[float, float]:
    mu_r, s_r = feature_statistics(real)
    fd = frechet_distance(mu_r, s_r, *feature_statistics(fake))
    if rounds <= 0:
        return fd, float("nan")
    rng = np.random.default_rng(seed)
    vals = [frechet_distance(mu_r, s_r, *feature_statistics(fake[rng.integers(0, len(fake), len(fake))]))
            for _ in range(rounds)]
    return fd, float(np.std(vals))


def bench_sample(
    bundle_root: str | None = None,
    config_files: str | Sequence[str] = ("configs/inference.json",),
    preset: str | None = None,
    ckpt_dir: str | None = None,
    samplers: str | Sequence[str] = "ddpm:1000,ddim:50,dpm_solver:20",
    num_images: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    dataset_dir: str | None = None,
    dataset: str = "auto",
    num_real: int | None = None,
    feature_encoder: str | None = None,
    bootstrap: int = 200,
    out_dir: str | None = None,
    json_path: str | None = None,
    overrides: Mapping | None = None,
    progress: bool = True,
    ddim_eta: float = 0.0,
) -> dict:
    """Time each sampler on the same trained model and, with real data, compare their sample quality.

    Args:
        bundle_root: the ``ldm_synthesis`` bundle (default: the one of this repository).
        config_files: bundle configs defining the networks (relative to ``bundle_root``).
        preset: a preset name (``cpu``, ``paper``) or a JSON file overlaid on the configs: it must match training.
        ckpt_dir: folder of ``autoencoder.pt`` and ``model.pt`` (default: ``<bundle_root>/models``).
        samplers: ``"name:steps,..."`` among ``ddpm`` (full chain), ``ddim``, ``dpm_solver`` (SDE-DPM-Solver++),
            ``dpm_solver_ode`` (DPM-Solver++); the first is the reference of the speed-ups and Frechet-distance
            ratios. ``ddim_eta``: DDIM's noise weight.
        num_images, batch_size, seed: images per sampler, batch size, seed (the same for every sampler).
        device: ``cuda`` if available else ``cpu`` by default. threads: torch CPU threads.
        dataset_dir, dataset: real data (training split) for the quality measures; None skips them.
        num_real: at most this many real images (seeded subset). feature_encoder: see ``build_feature_encoder``.
        bootstrap: bootstrap rounds of the Frechet-distance standard deviation.
        out_dir: if given, each sampler's first 16 images as a PNG grid. json_path: write the report there.
        overrides: further config overrides (e.g. network sizes when no preset fits).

    Returns the report (also printed as a table): per sampler ``seconds_per_image`` (wall), ``cpu_seconds_per_image``,
    ``unet_evaluations``, ``speedup`` and ``cpu_speedup`` vs the reference, and with real data
    ``frechet_distance`` (+ ``fd_bootstrap_std``), ``fd_ratio`` vs the reference, ``precision``, ``recall``,
    ``ms_ssim``; ``checks`` holds the project's targets for DPM-Solver++ (>= 40x faster, FD within 10%).
    """

    root = Path(bundle_root) if bundle_root else DEFAULT_BUNDLE
    config_files = [config_files] if isinstance(config_files, str) else list(config_files)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if threads:
        torch.set_num_threads(int(threads))
    ov = dict(overrides or {})
    ov["device"] = f"$torch.device('{device}')"
    if ckpt_dir:
        ov["ckpt_dir"] = str(ckpt_dir)
    built = _build(root, config_files, preset, ov)
    ae, unet, ddpm = built["autoencoder"], built["network"], built["scheduler"]

    latent = latent_shape_of(ae, built["in_channels"], built["image_size"])
    plan = parse_samplers(samplers)
    results: list[dict] = []
    images: dict[str, torch.Tensor] = {}
    for name, steps in plan:
        evals = unet_evaluations(make_sampler_scheduler(name, ddpm, steps))
        with torch.no_grad():  # warm-up: one denoiser call and one decode at the batch size
            z = torch.randn(min(batch_size, num_images), *latent, device=device)
            unet(z, timesteps=torch.full((z.shape[0],), 500, device=device, dtype=torch.long))
            ae.decode_stage_2_outputs(z)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        imgs = generate_images(ae, unet, ddpm, built["scale_factor"], latent, num_images, sampler=name,
                               num_inference_steps=steps, batch_size=batch_size, seed=seed, device=device,
                               progress=progress, ddim_eta=ddim_eta)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        label = f"{name}-{evals}"
        images[label] = imgs
        results.append({"sampler": name, "label": label, "unet_evaluations": evals, "num_images": num_images,
                        "seconds": round(wall, 3), "seconds_per_image": wall / num_images,
                        "cpu_seconds_per_image": cpu / num_images})
        print(f"{label:>16}: {wall / num_images:9.4f} s/image wall, {cpu / num_images:9.4f} s/image CPU", flush=True)
        if out_dir:
            save_grid(imgs[:16], Path(out_dir) / f"samples_{label}.png")
    ref = results[0]
    for r in results:
        r["speedup"] = ref["seconds_per_image"] / r["seconds_per_image"]
        r["cpu_speedup"] = ref["cpu_seconds_per_image"] / r["cpu_seconds_per_image"]

    quality: dict = {}
    if dataset_dir:

        reals = build_datalist(dataset, dataset_dir, seed=seed)["training"]
        if num_real is not None and len(reals) > num_real:
            pick = np.sort(np.random.default_rng(seed).choice(len(reals), size=num_real, replace=False))
            reals = [reals[i] for i in pick]
        real_img = load_images(reals, built["image_size"], built["in_channels"])
        encoder, enc_info = build_feature_encoder(feature_encoder, built["in_channels"], seed=seed,
                                                  calibration_images=real_img, device=device)
        f_real = extract_image_features(encoder, real_img)
        half = min(num_images, len(f_real) // 2)
        perm = torch.as_tensor(np.random.default_rng(seed).permutation(len(f_real)))
        floor = frechet_distance_from_features(f_real[perm[:half]], f_real[perm[half : 2 * half]])
        quality = {"feature_encoder": enc_info, "num_real": len(reals),
                   "real_vs_real_frechet_distance": {"size": half, "value": floor},
                   "real_ms_ssim": ms_ssim_diversity(real_img[perm[:num_images]], seed=seed)["ms_ssim"]}
        for r in results:
            f_fake = extract_image_features(encoder, images[r["label"]])
            r["frechet_distance"], r["fd_bootstrap_std"] = _fd_with_bootstrap(f_real, f_fake, bootstrap, seed)
            pr = knn_precision_recall(f_real, f_fake, k=3)
            r["precision"], r["recall"] = pr["precision"], pr["recall"]
            r["ms_ssim"] = ms_ssim_diversity(images[r["label"]], seed=seed)["ms_ssim"]
        for r in results:
            r["fd_ratio"] = r["frechet_distance"] / ref["frechet_distance"]

    print(f"{'sampler':>16} {'s/img':>9} {'CPU s/img':>9} {'speedup':>8} {'CPU x':>7}"
          + (f" {'FD':>9} {'+-':>6} {'FD/ref':>7} {'prec':>5} {'rec':>5} {'MS-SSIM':>7}" if quality else ""))
    for r in results:
        line = (f"{r['label']:>16} {r['seconds_per_image']:9.4f} {r['cpu_seconds_per_image']:9.4f} "
                f"{r['speedup']:8.1f} {r['cpu_speedup']:7.1f}")
        if quality:
            line += (f" {r['frechet_distance']:9.3f} {r['fd_bootstrap_std']:6.3f} {r['fd_ratio']:7.3f} "
                     f"{r['precision']:5.2f} {r['recall']:5.2f} {r['ms_ssim']:7.3f}")
        print(line)
    if quality:
        fl = quality["real_vs_real_frechet_distance"]
        print(f"real vs real Frechet distance ({fl['size']} vs {fl['size']} images): {fl['value']:.3f}")

    checks = {}
    if ref["sampler"] == "ddpm":
        for r in results:
            if not r["sampler"].startswith("dpm_solver"):
                continue
            checks[f"{r['label']}_speedup"] = {"value": r["speedup"], "cpu_value": r["cpu_speedup"],
                                               "target": SPEEDUP_TARGET, "pass": r["speedup"] >= SPEEDUP_TARGET}
            if quality:
                checks[f"{r['label']}_fd_vs_ddpm"] = {"value": r["fd_ratio"] - 1, "target": FD_TOLERANCE,
                                                      "pass": abs(r["fd_ratio"] - 1) <= FD_TOLERANCE}
        for k, v in checks.items():
            print(f"check {k}: {'PASS' if v['pass'] else 'FAIL'} ({v})")
    report = {
        "settings": {"bundle_root": str(root), "config_files": config_files, "preset": preset,
                     "ckpt_path": built["ckpt_path"], "samplers": plan, "num_images": num_images,
                     "batch_size": batch_size, "seed": seed, "ddim_eta": ddim_eta, "device": device,
                     "threads": torch.get_num_threads(),
                     "scale_factor": built["scale_factor"], "latent_shape": list(latent),
                     "image_shape": [built["in_channels"], built["image_size"], built["image_size"]],
                     "dataset_dir": dataset_dir, "checkpoint": built["ckpt_meta"]},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": __import__("os").cpu_count(),
                    "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "results": results,
        "quality": quality,
        "checks": checks,
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {json_path}")
    return report


def _main(*args, **kwargs) -> None:
    bench_sample(*args, **kwargs)  # the report is printed and written, not echoed by fire


_main = functools.wraps(bench_sample)(_main)  # --help shows bench_sample's arguments


if __name__ == "__main__":
    import fire

    fire.Fire(_main)
