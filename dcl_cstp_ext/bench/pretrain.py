"""``dcl-cstp bench pretrain``: images/s and peak memory of one training step per pre-training method.

Every method runs on the same random batch of views, in its own child process (so that peak RSS on the CPU is the
method's own), after ``warmup`` untimed steps. The report gives each method's ratio of step time to SimSiam's.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import torch

from ..engines.optim import build_optimizer
from ..engines.step import amp_dtype, grad_scaler_for, ssl_train_step
from ..methods import build_method

__all__ = ["bench_pretrain"]


def _views(batch_size: int, channels: int, image_size: int, device: torch.device, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch_size, channels, image_size, image_size, generator=g).to(device) for _ in range(3)]


def _child(fn, cfg: dict, queue: mp.Queue) -> None:
    try:
        queue.put(fn(**cfg))
    except BaseException as err:  # report the failure to the parent instead of hanging it
        queue.put({"error": repr(err)})


def _in_child(ctx, fn, cfg: dict, what: str) -> dict:
    """``fn(**cfg)`` in a fresh process (so that its peak RSS is its own); raises naming ``what`` if it failed."""
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, cfg, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"benchmark of {what} failed: {result['error']}")
    return result


def _setup(method, backbone, image_size, batch_size, channels, dev, amp, channels_last, queue_size, seed, bn_splits,
           compile, optimizer_impl, head_dim):
    """``step()``: one training step of ``method`` on a fixed random batch of views, as the bundle's trainer runs it;
    and the model."""
    torch.manual_seed(seed)
    head_kwargs = {"dim": head_dim} if head_dim else None  # (only DCL-CsTP takes it: build_method drops it)
    model = build_method(method, backbone=backbone, in_channels=channels, queue_size=queue_size,
                         bn_splits=bn_splits, head_kwargs=head_kwargs).to(dev)
    views = _views(batch_size, channels, image_size, dev, seed)
    indices = torch.arange(batch_size, device=dev)  # as a real batch: the memory bank masks own-image keys
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    if compile:
        model.compile()  # in place, as the bundles' `compile` setting (networks.to_device)
    opt = build_optimizer(model.param_groups(), "sgd", lr=0.03, momentum=0.9, weight_decay=1e-4, impl=optimizer_impl)
    scaler = grad_scaler_for(dev, amp)

    def step():
        out = ssl_train_step(model, opt, views, amp=amp, scaler=scaler, indices=indices)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    return step, model


def _measure(
    method: str,
    backbone: str,
    image_size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    channels: int,
    device: str,
    amp: bool,
    channels_last: bool,
    queue_size: int,
    seed: int,
    threads: int | None,
    bn_splits: int = 1,
    compile: bool = False,
    optimizer_impl: str | None = None,
    head_dim: int | None = None,
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    step, model = _setup(method, backbone, image_size, batch_size, channels, dev, amp, channels_last, queue_size,
                         seed, bn_splits, compile, optimizer_impl, head_dim)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_warm = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - t_warm
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
        losses.append(float(out["loss"]))
    times.sort()
    median = times[len(times) // 2]
    result = {
        "method": method,
        "step_s_median": median,
        "step_s_mean": sum(times) / len(times),
        "images_per_s": batch_size / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_steps_mb": rss_before,
        "params_trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "warmup_s": warmup_s,  # with compile: the compilation
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "autocast_dtype": str(amp_dtype(dev)).removeprefix("torch.") if amp else None,
    }
    if dev.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _paired(methods: list[str], rounds: int, warmup: int, threads: int | None, device: str, **setup) -> dict:
    """Step time of each method relative to SimSiam's, measured in pairs: one process holds every method, and each
    round times one step of each (the order rotating from round to round), so that a slow patch of the machine
    falls on both sides of a ratio. Returns ``{method: {"median", "q1", "q3"} of the per-round ratios}``."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    steps = {m: _setup(m, dev=dev, **setup)[0] for m in methods}
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {m: [] for m in methods}
    for r in range(rounds):
        for m in methods[r % len(methods):] + methods[:r % len(methods)]:
            t0 = time.perf_counter()
            steps[m]()
            times[m].append(time.perf_counter() - t0)
    out = {}
    for m in methods:
        ratios = sorted(t / b for t, b in zip(times[m], times["simsiam"]))
        n = len(ratios)
        out[m] = {"median": ratios[n // 2], "q1": ratios[n // 4], "q3": ratios[(3 * n) // 4], "rounds": rounds}
    return out


def bench_pretrain(
    methods: str | list[str] = "dcl_cstp,simsiam,mocov2,simclr",
    backbone: str = "resnet18",
    image_size: int = 64,
    batch_size: int = 16,
    steps: int = 10,
    warmup: int = 2,
    channels: int = 3,
    device: str | None = None,
    amp: bool | None = None,
    channels_last: bool = False,
    queue_size: int = 4096,
    seed: int = 0,
    threads: int | None = None,
    json_path: str | None = None,
    bn_splits: int = 1,
    compile: bool = False,
    optimizer_impl: str | None = None,
    head_dim: int | None = None,
    paired_rounds: int = 0,
) -> dict:
    """Time ``steps`` training steps of each method and write a JSON report (``json_path``).

    ``bn_splits``: split BatchNorm of the momentum methods (MoCo-v2, DCL-CsTP), as the bundle's ``bn_splits``.
    The fast paths, as the bundles' settings of the same names: ``amp``, ``channels_last``, ``compile``
    (``torch.compile`` of the method, compiled during the ``warmup`` steps, whose time is reported) and
    ``optimizer_impl`` (``for_loop`` / ``foreach`` / ``fused`` SGD update; None: torch's choice).
    ``head_dim``: the token width of DCL-CsTP's CsTP head (the bundles' ``head_kwargs.dim``: 512 by default, 256 in
    the ``cpu`` preset); None: the head's default. ``paired_rounds`` > 0 (with SimSiam among the methods): also the
    ratios measured in pairs, every method in one process, one step of each per round (``step_time_vs_simsiam_paired``:
    median and quartiles of the per-round ratios), which a machine whose speed drifts moves much less than the
    ratio of two medians taken one after the other.

    Defaults: CUDA if available with AMP on, else CPU in float32. Returns the report dict.
    """
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    elif isinstance(methods, tuple):
        methods = list(methods)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    amp = (device.startswith("cuda")) if amp is None else amp
    ctx = mp.get_context("spawn")
    results = []
    for method in methods:
        cfg = dict(
            method=method, backbone=backbone, image_size=image_size, batch_size=batch_size, steps=steps,
            warmup=warmup, channels=channels, device=device, amp=amp, channels_last=channels_last,
            queue_size=queue_size, seed=seed, threads=threads, bn_splits=bn_splits, compile=compile,
            optimizer_impl=optimizer_impl, head_dim=head_dim,
        )
        res = _in_child(ctx, _measure, cfg, method)
        print(
            f"{method:>16}: {res['step_s_median'] * 1000:8.1f} ms/step  {res['images_per_s']:7.1f} img/s  "
            f"peak RSS {res['peak_rss_mb']:7.0f} MB" + (f"  peak CUDA {res['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in res else ""),
            flush=True,
        )
        results.append(res)
    base = next((r for r in results if r["method"] == "simsiam"), None)
    if base is not None:
        for r in results:
            r["step_time_vs_simsiam"] = r["step_s_median"] / base["step_s_median"]
            print(f"{r['method']:>16}: {r['step_time_vs_simsiam']:.3f}x SimSiam step time")
    if paired_rounds and base is not None:
        cfg = dict(methods=methods, rounds=paired_rounds, warmup=warmup, threads=threads, device=device,
                   backbone=backbone, image_size=image_size, batch_size=batch_size, channels=channels, amp=amp,
                   channels_last=channels_last, queue_size=queue_size, seed=seed, bn_splits=bn_splits,
                   compile=compile, optimizer_impl=optimizer_impl, head_dim=head_dim)
        paired = _in_child(ctx, _paired, cfg, "the paired rounds")
        for r in results:
            p = r["step_time_vs_simsiam_paired"] = paired[r["method"]]
            print(f"{r['method']:>16}: {p['median']:.3f}x SimSiam step time, paired over {paired_rounds} rounds "
                  f"(quartiles {p['q1']:.3f} - {p['q3']:.3f})")
    report = {
        "settings": dict(
            backbone=backbone, image_size=image_size, batch_size=batch_size, steps=steps, warmup=warmup,
            channels=channels, device=device, amp=amp, channels_last=channels_last, queue_size=queue_size,
            bn_splits=bn_splits, threads=threads or torch.get_num_threads(), compile=compile,
            optimizer_impl=optimizer_impl, head_dim=head_dim, paired_rounds=paired_rounds,
        ),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": mp.cpu_count(),
            "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "results": results,
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"wrote {json_path}")
    return report
