"""One split per run: stage 1, the pre-trainings and the fine-tunings of a pipeline train on the same images.

The regression: stage 1 used to split the pediatric chest X-rays for itself, by 2 classes, while the fine-tuning
split them by 3 (``datalist_kwargs``), so the LDM trained on some of the fine-tuning's validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dcl_cstp_ext.pipeline import PipelineConfig, plan
from dcl_cstp_ext.pipeline.runner import bundles_dir
from dcl_cstp_ext.pipeline.stages import split_file, write_split


def _pediatric_cxr(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for i in range(per_class):
        for folder, name in (("NORMAL", f"IM-{i:04d}-0001"), ("PNEUMONIA", f"person{i}_bacteria_{i}"),
                             ("PNEUMONIA", f"person{i}_virus_{i}")):
            path = root / "chest_xray" / "train" / folder / f"{name}.jpeg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(path)
    return root / "chest_xray"


def _images(datalist: dict, part: str = "training") -> set[str]:
    return {str(Path(it["image"]).resolve()) for it in datalist[part]}


def _datalist(stage, **overrides) -> dict:
    """The datalist of ``stage``'s bundle config, as the bundle would build it (the stage is not run)."""
    from monai.bundle import ConfigParser

    root = bundles_dir() / stage.bundle
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / c) for c in stage.configs])
    parser.update({"bundle_root": str(root), **stage.overrides, **overrides})
    return parser.get_parsed_content("datalist")


def test_every_stage_reads_the_runs_one_split(tmp_path):
    data = _pediatric_cxr(tmp_path / "data")
    three = {"datalist_kwargs": {"num_classes": 3}}
    cfg = PipelineConfig(task="pneumonia_cls", data_root=str(data), out=str(tmp_path / "run"), preset="tiny",
                         methods=("dcl_cstp_syn",), overrides={"pretrain": three, "finetune": three})
    split = write_split(cfg)
    assert split_file(cfg).is_file() and split["class_names"] == ["normal", "bacterial", "viral"]
    expected = _images(split)

    # the stage-1 split the old pipeline got (2 classes, its own stratification) is another set of images
    from dcl_cstp_ext.data import build_datalist

    two = _images(build_datalist("auto", data, seed=0))
    assert two != expected

    stages = {st.name: st for st in plan(cfg)}
    for name in ("ldm/autoencoder", "ldm/diffusion", "ldm/curation", "pretrain/dcl_cstp", "pretrain/dcl_cstp_syn",
                 "finetune/dcl_cstp_syn/lf1/seed0/train"):
        assert stages[name].overrides["split_file"] == str(split_file(cfg)), name
        assert _images(_datalist(stages[name])) == expected, name


def test_segmentation_split_is_the_downstream_bundles(tmp_path, demo_data):
    """The pipeline writes the split the fine-tuning bundle would write for itself (its data options), and passes
    no ``datalist_kwargs`` to bundles that take none."""
    cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                         preset="tiny", methods=("random", "dcl_cstp"))
    split = write_split(cfg)
    stages = plan(cfg)
    assert all("datalist_kwargs" not in st.overrides for st in stages)
    train = next(st for st in stages if st.name == "finetune/random/lf1/seed0/train")
    own = _datalist(train, split_file=str(tmp_path / "own.json"), seed=0)  # the bundle's own split, seed 0
    for part in ("training", "validation", "test"):
        assert _images(_datalist(train), part) == _images(own, part) == _images(split, part), part
