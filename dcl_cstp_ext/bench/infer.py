"""``dcl-cstp bench infer``: latency of each downstream bundle's exported model.

For each bundle (``pneumonia_cls``, ``isic_seg``, ``kvasir_seg``) the network of ``configs/inference.json`` (with a
preset overlay: ``cpu`` or ``paper``) is built, given the weights of ``models/model.pt`` when present (latency does
not depend on them), exported to TorchScript with MONAI's ``ckpt_export`` as a user would, and timed on one random
input of the bundle's size: eager PyTorch and the TorchScript export, batch ``batch_size``, ``steps`` timed calls
after ``warmup`` untimed ones, median reported. Pre-/post-processing is not included: that is data loading, measured
by ``dcl_cstp_ext.data.bench_loading``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser, ckpt_export

from ..networks.export import read_export

__all__ = ["bench_infer", "DOWNSTREAM"]

DOWNSTREAM = ("pneumonia_cls", "isic_seg", "kvasir_seg")
DEFAULT_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def _median_ms(fn, x: torch.Tensor, steps: int, warmup: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


def _measure_bundle(bundle: Path, preset: str | None, batch_size: int, steps: int, warmup: int, device: str,
                    channels_last: bool, overrides: dict) -> dict:

    configs = [str(bundle / "configs" / "inference.json")]
    if preset:
        p = bundle / "configs" / "presets" / f"{preset}.json"
        configs.append(str(p if p.is_file() else preset))
    meta = str(bundle / "configs" / "metadata.json")
    parser = ConfigParser()
    parser.read_config(configs)
    parser.read_meta(meta)
    parser.update({"bundle_root": str(bundle), **overrides})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    weights = bundle / "models" / "model.pt"
    trained = weights.is_file()
    if trained:
        net.load_state_dict(read_export(weights)[0])  # the export's weights, whatever its meta
    size, channels = int(parser.get_parsed_content("image_size")), int(parser.get_parsed_content("in_channels"))
    backbone = parser.get_parsed_content("backbone") if "backbone" in parser else None
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, ts = Path(tmp) / "model.pt", Path(tmp) / "model.ts"
        torch.save(net.state_dict(), ckpt)
        net_id = "export_network_def" if "export_network_def" in parser else "network_def"  # as the bundle README
        ckpt_export(net_id=net_id, filepath=str(ts), ckpt_file=str(ckpt), meta_file=meta,
                    config_file=configs, bundle_root=str(bundle), **overrides)
        scripted = torch.jit.load(str(ts), map_location=device).eval()
    dev = torch.device(device)
    net = net.to(dev)
    x = torch.rand(batch_size, channels, size, size, device=dev)
    if channels_last:
        net, scripted = net.to(memory_format=torch.channels_last), scripted.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    eager = _median_ms(net, x, steps, warmup)
    script = _median_ms(scripted, x, steps, warmup)
    return {
        "bundle": bundle.name, "preset": preset, "backbone": backbone, "image_size": size,
        "in_channels": channels, "batch_size": batch_size, "trained_weights": trained,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "eager_ms": eager, "torchscript_ms": script, "torchscript_ms_per_image": script / batch_size,
        "images_per_s_torchscript": 1000 * batch_size / script,
    }


def bench_infer(
    bundles: str | list[str] = ",".join(DOWNSTREAM),
    preset: str | None = "cpu",
    batch_size: int = 1,
    steps: int = 20,
    warmup: int = 3,
    device: str | None = None,
    channels_last: bool = False,
    threads: int | None = None,
    bundles_dir: str | None = None,
    json_path: str | None = None,
    overrides: dict | None = None,
) -> dict:
    """Time each bundle's exported model; print a table and write ``json_path``. Returns the report dict."""
    names = [b.strip() for b in bundles.split(",") if b.strip()] if isinstance(bundles, str) else list(bundles)
    root = Path(bundles_dir) if bundles_dir else DEFAULT_BUNDLES
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if threads:
        torch.set_num_threads(int(threads))
    results = []
    for name in names:
        bundle = root / name
        if not (bundle / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"{bundle}: no configs/inference.json (is {name!r} a downstream bundle?)")
        r = _measure_bundle(bundle, preset, batch_size, steps, warmup, device, channels_last, dict(overrides or {}))
        print(f"{name:>14} {r['backbone'] or '':>9} {r['image_size']:4d}px b{batch_size}: eager {r['eager_ms']:8.1f} ms"
              f"  TorchScript {r['torchscript_ms']:8.1f} ms  ({r['images_per_s_torchscript']:.1f} img/s)", flush=True)
        results.append(r)
    report = {
        "settings": {"preset": preset, "batch_size": batch_size, "steps": steps, "warmup": warmup, "device": device,
                     "channels_last": channels_last, "threads": torch.get_num_threads()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                    "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") else None},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "results": results,
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"wrote {json_path}")
    return report
