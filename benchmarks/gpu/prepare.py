"""Prepare, on the CPU machine, everything the GPU check needs (``benchmarks/gpu/README.md``).

Writes into ``--out`` (default ``benchmarks/gpu/.carry``, ignored by git; the device tool's ``carry`` takes it along):

* ``wheels/``: the wheels of the packages the GPU machine's image lacks (:data:`GPU_MISSING`), at the versions this
  machine runs, for CPython 3.12 (pure-Python wheels; one built here when the index has only a source archive);
* ``kvasir-seg/``: the Kvasir-SEG images and masks resized to ``--image-size`` px, JPEG, in the data set's own layout
  (``Kvasir-SEG/{images,masks}/<id>.jpg`` and ``train.txt``), so the bundles read them unchanged;
* ``manifest.json``: versions, file counts and sizes.

The total is printed and must stay under ``--budget-mib`` (the device tool carries 64 MiB with the working tree).

    python benchmarks/gpu/prepare.py --data-root ../shared/data/kvasir-seg
    python benchmarks/gpu/prepare.py --data-root DIR --out /tmp/carry --no-wheels --limit 16   # what the test runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image

#: installed on this machine, missing from the GPU machine's image (../.library/device/KINDS.md, "Python packages
#: already there"): the project's requirements and theirs
GPU_MISSING = ("monai", "pytorch-ignite", "diffusers", "fire", "termcolor", "nibabel", "pydicom", "importlib-metadata")
#: what pip's ``--platform`` takes for a pure-Python wheel on the GPU machine (x86-64, glibc)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def pinned(names=GPU_MISSING) -> dict[str, str]:
    """``name -> version`` as installed here (the versions the test suite passes with)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError as err:
            raise SystemExit(f"prepare: {name} is not installed here; run `make setup` first") from err
    return out


def download_wheels(pins: dict[str, str], dest: Path) -> list[Path]:
    """Fetch each pinned wheel for CPython 3.12 (``pip download --no-deps``); a package with no wheel on the index is
    built here from its source archive (``pip wheel --no-deps``): all of them are pure Python."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    for name, ver in pins.items():
        spec = f"{name}=={ver}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", *platforms, "-d", str(dest), spec]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), spec],
                                   capture_output=True, text=True)
            if built.returncode != 0:
                raise SystemExit(f"prepare: no wheel for {spec}: {built.stderr.strip()[-500:]}")
    return sorted(dest.glob("*.whl"))


def resize_kvasir(data_root: Path, dest: Path, size: int, limit: int | None = None, quality: int = 90) -> int:
    """Write ``data_root``'s Kvasir-SEG pairs resized to ``size`` x ``size`` under ``dest`` in the same layout; returns
    the number of pairs. Images: bicubic, JPEG ``quality``; masks: nearest, JPEG 95 (read back with the threshold at
    128, as the originals)."""
    src = data_root / "Kvasir-SEG"
    if not (src / "images").is_dir() or not (src / "masks").is_dir():
        raise SystemExit(f"prepare: {src} has no images/ and masks/ (the Kvasir-SEG layout)")
    ids = sorted(p.stem for p in (src / "images").glob("*.jpg"))[:limit]
    if not ids:
        raise SystemExit(f"prepare: no .jpg images in {src / 'images'}")
    for sub in ("images", "masks"):
        (dest / "Kvasir-SEG" / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        with Image.open(src / "images" / f"{i}.jpg") as im:
            im.convert("RGB").resize((size, size), Image.BICUBIC).save(dest / "Kvasir-SEG" / "images" / f"{i}.jpg",
                                                                        quality=quality)
        with Image.open(src / "masks" / f"{i}.jpg") as m:
            binary = (np.asarray(m.convert("L").resize((size, size), Image.NEAREST)) >= 128).astype(np.uint8) * 255
            Image.fromarray(binary).save(dest / "Kvasir-SEG" / "masks" / f"{i}.jpg", quality=95)
    lst = data_root / "train.txt"
    if lst.is_file():
        keep = set(ids)
        lines = [s for s in lst.read_text().split() if s in keep]
        (dest / "train.txt").write_text("\n".join(lines) + "\n")
    return len(ids)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare(data_root: str, out: str = "benchmarks/gpu/.carry", image_size: int = 256, wheels: bool = True,
            limit: int | None = None, budget_mib: float = 60.0) -> dict:
    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    pins = pinned()
    files = download_wheels(pins, out_dir / "wheels") if wheels else []
    pairs = resize_kvasir(Path(data_root), out_dir / "kvasir-seg", image_size, limit)
    manifest = {"packages": pins, "wheels": [f.name for f in files], "kvasir_pairs": pairs, "image_size": image_size,
                "bytes": {"wheels": folder_bytes(out_dir / "wheels") if wheels else 0,
                          "kvasir-seg": folder_bytes(out_dir / "kvasir-seg")}}
    manifest["bytes"]["total"] = sum(manifest["bytes"].values())
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total_mib = manifest["bytes"]["total"] / 2**20
    print(f"prepared {out_dir}: {len(files)} wheels ({manifest['bytes']['wheels'] / 2**20:.1f} MiB), {pairs} Kvasir-SEG "
          f"pairs at {image_size} px ({manifest['bytes']['kvasir-seg'] / 2**20:.1f} MiB); total {total_mib:.1f} MiB")
    if total_mib > budget_mib:
        raise SystemExit(f"prepare: {total_mib:.1f} MiB is over the {budget_mib} MiB budget (the tree carries 64 MiB)")
    return manifest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, help="the Kvasir-SEG folder (holding Kvasir-SEG/ and train.txt)")
    ap.add_argument("--out", default="benchmarks/gpu/.carry")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--no-wheels", action="store_true", help="images only (no index needed)")
    ap.add_argument("--limit", type=int, default=None, help="the first N pairs only")
    ap.add_argument("--budget-mib", type=float, default=60.0)
    a = ap.parse_args(argv)
    prepare(a.data_root, a.out, a.image_size, not a.no_wheels, a.limit, a.budget_mib)


if __name__ == "__main__":
    main()
