"""Demo material for the MONAI Label app (``make label`` runs this before starting the server).

- ``--studies DIR``: a MONAI Label studies folder of built-in demo images (no download): Kvasir-SEG style RGB
  JPEGs (``<id>.jpg``), ISIC 2018 style RGB JPEGs (``ISIC_<n>.jpg``) and grey chest X-ray PNGs
  (``<class>-<n>.png``), all at the top of DIR as MONAI Label's local datastore expects.
- ``--bundles-out DIR``: a bundles folder for ``--conf bundles DIR``: a bundle of ``bundles/`` that holds trained
  weights (``models/model.pt``) is linked as it is; one without gets a copy with freshly initialised tiny
  weights (``--backbone resnet18 --image-size 64`` by default, marked by ``models/RANDOM_WEIGHTS``) so that the
  app can be tried end to end before any training. Its answers are then meaningless.

    python monailabel_app/prepare.py --studies DIR [--bundles-out DIR [--bundles-src bundles] [--random]]
        [--backbone resnet18] [--image-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
BUNDLES = APP_DIR.parent / "bundles"
SEGMENTATION = ("kvasir_seg", "isic_seg")
CLASSIFICATION = ("pneumonia_cls",)
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"  # as lib/infers.py


def make_studies(out: str | Path, seed: int = 0, n_seg: int = 2, size: int = 128) -> dict[str, list[Path]]:
    """Write demo images into the studies folder ``out``; returns their paths per set
    (``kvasir_seg``, ``isic2018``, ``covid_radiography``: one grey X-ray per class)."""
    from dcl_cstp_ext.data import make_demo_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {k: Path(v) for k, v in make_demo_data(tmp, seed=seed, n_cls_per_class=1, n_seg=n_seg, size=size).items()}
        sources = {
            "kvasir_seg": sorted((roots["kvasir_seg"] / "Kvasir-SEG" / "images").glob("*.jpg")),
            "isic2018": sorted(roots["isic2018"].glob("ISIC2018_Task1-2_Training_Input/*.jpg")),
            "covid_radiography": sorted(roots["covid_radiography"].glob("*/*/images/*.png")),
        }
        for name, files in sources.items():
            if not files:
                raise FileNotFoundError(f"no demo images for {name} under {roots[name]}")
            written[name] = []
            for f in files:
                dst = out / f.name.replace(" ", "_")  # image ids without spaces
                shutil.copyfile(f, dst)
                written[name].append(dst)
    return written


def random_weights_bundle(name: str, out: str | Path, backbone: str = "resnet18", image_size: int = 64,
                          src: str | Path = BUNDLES, seed: int = 0) -> Path:
    """Copy bundle ``name`` to ``out/name`` with freshly initialised weights in ``models/model.pt``.

    Segmentation: ``backbone`` and ``image_size`` are set in the copy's ``configs/inference.json``.
    Classification: they go into the checkpoint's ``meta`` (which ``inference.json`` reads), with the
    metadata's class names, as a trained ``model.pt`` stores them."""
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    from dcl_cstp_ext.networks import save_export

    src, dst = Path(src) / name, Path(out) / name
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("models", "eval", "demo_data", "__pycache__"))
    config_file = dst / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    if name in SEGMENTATION:
        config.update(backbone=backbone, image_size=image_size)
        config_file.write_text(json.dumps(config, indent=4) + "\n")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(dst / "configs" / "metadata.json"))
    parser["bundle_root"] = str(dst)
    info = None
    if name in CLASSIFICATION:
        from dcl_cstp_ext.data import channel_def_names

        channel_def = parser.get_parsed_content("_meta_#network_data_format#outputs#pred#channel_def")
        info = {"class_names": channel_def_names(channel_def), "activation": "sigmoid", "loss": "bce",
                "backbone": backbone, "in_channels": 3, "cache_channels": 1, "image_size": image_size}
        parser["model_info"] = info
    set_determinism(seed=seed)
    network = parser.get_parsed_content("network_def")
    set_determinism(seed=None)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    (dst / "models").mkdir()
    save_export(dst / "models" / "model.pt", state, info)
    (dst / "models" / RANDOM_WEIGHTS_MARKER).write_text(
        f"models/model.pt holds untrained random weights ({backbone}, {image_size} px) written by "
        "monailabel_app/prepare.py for a demo; train the bundle for real ones.\n")
    return dst


def demo_bundles(out: str | Path, names=SEGMENTATION + CLASSIFICATION, random: bool = False, src: str | Path = BUNDLES,
                 **kwargs) -> dict[str, Path]:
    """``out/<name>`` for each bundle: a link to the trained bundle in ``src``, or a copy with random weights
    (always with ``random``)."""
    out, src = Path(out), Path(src)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in names:
        trained = (src / name / "models" / "model.pt").is_file()
        if trained and not random:
            dst = out / name
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            elif dst.exists():
                shutil.rmtree(dst)
            dst.symlink_to((src / name).resolve(), target_is_directory=True)
            print(f"{name}: trained weights, {dst} -> {src / name}")
        else:
            dst = random_weights_bundle(name, out, src=src, **kwargs)
            print(f"{name}: no trained weights in {src / name}/models; UNTRAINED random weights in {dst}/models")
        made[name] = dst
    return made


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", help="studies folder to fill with demo images")
    p.add_argument("--bundles-out", help="bundles folder to make (links to trained bundles, random weights otherwise)")
    p.add_argument("--bundles-src", default=str(BUNDLES), help="the repository's bundles folder (default: %(default)s)")
    p.add_argument("--random", action="store_true", help="random weights even for bundles that have trained ones")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not a.studies and not a.bundles_out:
        p.error("give --studies and/or --bundles-out")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if a.studies:
        files = make_studies(a.studies, seed=a.seed)
        print(f"studies: {sum(map(len, files.values()))} demo images in {a.studies}")
    if a.bundles_out:
        if Path(a.bundles_out).resolve() == Path(a.bundles_src).resolve():
            p.error("--bundles-out must differ from --bundles-src")
        demo_bundles(a.bundles_out, random=a.random, src=a.bundles_src, backbone=a.backbone, image_size=a.image_size,
                     seed=a.seed)


if __name__ == "__main__":
    main()
