"""The stages of a pipeline run, as bundle runs: which bundle, which configs, which overrides, what each reads.

Every stage runs a bundle through MONAI's bundle API with the bundle's own configs, the preset's overlays and a few
overrides (paths, method, seed); nothing of the bundles' logic is repeated here. All stages read the run's one split
(:func:`write_split`).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..data import build_datalist
from ..data.layout import list_images
from .config import ABLATIONS, KEEP_FRACTION, SYNTHETIC_ONLY, PipelineConfig
from .presets import init_recipe_spec, preset_setting, preset_spec, task_spec
from .runner import BundleStage, merged_config

__all__ = ["datalist_kwargs", "finetune_stages", "ldm_stages", "missing_input", "plan", "pretrain_stage", "probe_stages",
           "split_file", "synthesis_count", "synthetic_ratios", "write_split"]

def _device(cfg: PipelineConfig) -> dict:
    return {"device": cfg.device} if cfg.device else {}


def synthetic_ratios(cfg: PipelineConfig) -> list[float]:
    """The synthetic ratios of the run's DCL-CsTP + synthetic pre-trainings (``--ratios`` and, with
    ``dcl_cstp_syn``, ``--synthetic-ratio``)."""
    return sorted(set(cfg.ratios) | ({cfg.synthetic_ratio} if "dcl_cstp_syn" in cfg.methods else set()))


def split_file(cfg: PipelineConfig) -> Path:
    """``RUN_DIR/splits/<task>.json``: the run's one training / validation split, read by every stage."""
    return Path(cfg.out) / "splits" / f"{cfg.task}.json"


def datalist_kwargs(cfg: PipelineConfig) -> dict:
    """The data set's options of the run's split (e.g. the pediatric chest X-rays' ``num_classes``): the
    ``finetune`` block's ``datalist_kwargs``, else the ``pretrain`` block's, else none."""
    for kind in ("finetune", "pretrain"):
        kwargs = cfg.overrides.get(kind, {}).get("datalist_kwargs")
        if kwargs is not None:
            return dict(kwargs)
    return {}


def write_split(cfg: PipelineConfig) -> dict:
    """Write the run's split unless it exists, and return it: :func:`split_file`, seed 0, the downstream bundle's
    data options (``TASKS[task]["split"]``) and :func:`datalist_kwargs`.

    Every stage reads this one file, so stage 1, the pre-trainings and the fine-tunings train on the same images
    and none sees a validation image. (Letting each stage split for itself went wrong as soon as the stages' data
    options differed: stage 1 split the pediatric chest X-rays by 2 classes, the fine-tuning by 3.)"""
    return _read_split(cfg, write=True)


def _read_split(cfg: PipelineConfig, write: bool = False, check_images: bool = True) -> dict:
    """The run's split: read from :func:`split_file` when it exists, else made (and written when ``write``)."""
    path = split_file(cfg)
    return build_datalist("auto", cfg.data_root, seed=0, split_file=path if write or path.is_file() else None,
                          check_images=check_images, **task_spec(cfg.task)["split"], **datalist_kwargs(cfg))


def _split(cfg: PipelineConfig) -> dict:
    """The overrides that point a stage at the run's split (and, where set, at its data options)."""
    kwargs = datalist_kwargs(cfg)
    return {"split_file": str(split_file(cfg)), **({"datalist_kwargs": kwargs} if kwargs else {})}


def synthesis_count(cfg: PipelineConfig, keep_fraction: float = KEEP_FRACTION) -> int:
    """How many images stage 1 generates when the preset does not say: enough that curation, which keeps
    ``keep_fraction`` of them, leaves the largest synthetic ratio asked for,
    ``ceil(max ratio x training images / keep_fraction)`` (at least 16; synthetic-only pre-training counts as ratio
    1). Kvasir-SEG's 704 training images at ratio 0.5: 704 generated, 352 kept (the paper generated 880 and kept
    440)."""
    ratio = max([*synthetic_ratios(cfg), *([1.0] if SYNTHETIC_ONLY in cfg.methods else [])], default=0.0)
    n_train = len(_read_split(cfg, check_images=False)["training"])  # the stages check the images
    return max(16, math.ceil(ratio * n_train / keep_fraction))


def ldm_stages(cfg: PipelineConfig, run: Path) -> tuple[list[BundleStage], Path]:
    """Autoencoder, diffusion, sampling and curation stages; returns them and the curated image folder."""
    task = task_spec(cfg.task)
    sample = {}
    asked = {**cfg.overrides.get("ldm", {}), **cfg.overrides.get("ldm/samples", {})}
    if preset_setting(cfg.preset, "ldm_synthesis", "num_samples") is None and "num_samples" not in asked:
        sample["num_samples"] = synthesis_count(cfg)
    common = {"dataset_dir": cfg.data_root, "in_channels": task["in_channels"], **_split(cfg), **_device(cfg)}
    ae_dir, dm_dir = run / "ldm" / "autoencoder", run / "ldm" / "diffusion"
    sample_dir, curate_dir = run / "ldm" / "samples", run / "ldm" / "curation"
    common["ckpt_dir"] = str(run / "ldm" / "models")  # autoencoder.pt and the diffusion model.pt
    user = cfg.overrides.get("ldm", {})

    def stage(name: str, configs: list[str], workdir: Path, overrides: dict, workflow: str = "train",
              needs: tuple[str, ...] = ()) -> BundleStage:
        return BundleStage(name, "ldm_synthesis", [*configs, *preset_spec(cfg.preset, "ldm_synthesis", configs)],
                           workdir, {**common, **overrides, **user, **cfg.overrides.get(name, {})}, workflow, needs)

    stages = [
        stage("ldm/autoencoder", ["train_autoencoder.json"], ae_dir, {"output_dir": str(ae_dir / "eval")}),
        stage("ldm/diffusion", ["train_autoencoder.json", "train_diffusion.json"], dm_dir,
              {"output_dir": str(dm_dir / "eval")}, needs=("ldm/autoencoder",)),
        stage("ldm/samples", ["inference.json"], sample_dir, {"output_dir": str(sample_dir), **sample}, "infer",
              needs=("ldm/diffusion",)),
        stage("ldm/curation", ["curate.json"], curate_dir,
              {"synthetic_dir": str(sample_dir), "output_dir": str(curate_dir),
               "feature_encoder": str(run / "pretrain" / "dcl_cstp" / "models" / "encoder.pt")},
              "infer", needs=("ldm/samples", "pretrain/dcl_cstp")),
    ]
    return stages, curate_dir / "curated"


def pretrain_stage(cfg: PipelineConfig, run: Path, name: str, method: str, synthetic: Path | None = None,
                   ratio: float = 0.0, synthetic_only: bool = False) -> BundleStage:
    task = task_spec(cfg.task)
    workdir = run / "pretrain" / name
    overrides = {
        "dataset_dir": cfg.data_root,
        "output_dir": str(workdir / "eval"),
        "ckpt_dir": str(workdir / "models"),
        "method": method,
        "in_channels": task["in_channels"],
        "queue_size_cap": task["queue_size_cap"],
        **_split(cfg),
        **_device(cfg),
        **cfg.overrides.get("pretrain", {}),
    }
    needs: tuple[str, ...] = ()
    if synthetic is not None:
        overrides.update(synthetic_dir=str(synthetic), synthetic_ratio=ratio)
        if synthetic_only:
            overrides["synthetic_only"] = True  # every kept synthetic image, no real one
        needs = ("ldm/curation",)
    return BundleStage(f"pretrain/{name}", "dcl_pretrain", ["train.json", *preset_spec(cfg.preset)], workdir, overrides,
                       needs=needs)


def finetune_stages(cfg: PipelineConfig, run: Path, init: str, encoder: Path | None, fraction: float,
                    seed: int) -> list[BundleStage]:
    task = task_spec(cfg.task)
    overlays = [*preset_spec(cfg.preset),
                *init_recipe_spec(cfg.preset, task["bundle"], "pretrained" if encoder else "random")]
    workdir = run / "finetune" / init / f"lf{fraction:g}" / f"seed{seed}"
    overrides = {
        "dataset_dir": cfg.data_root,
        "output_dir": str(workdir / "train"),
        "ckpt_dir": str(workdir / "models"),
        "in_channels": task["in_channels"],
        "pretrained_encoder": str(encoder) if encoder else None,
        "label_fraction": fraction,
        "seed": seed,
        **_split(cfg),
        **_device(cfg),
        **cfg.overrides.get("finetune", {}),
    }
    configs = ["train.json", *overlays]
    evaluate = {**overrides, "output_dir": str(workdir / "evaluate")}
    train = f"finetune/{init}/lf{fraction:g}/seed{seed}/train"
    return [
        BundleStage(train, task["bundle"], configs, workdir / "train", overrides,
                    needs=(f"pretrain/{init}",) if encoder else ()),
        BundleStage(f"finetune/{init}/lf{fraction:g}/seed{seed}/evaluate", task["bundle"],
                    ["train.json", "evaluate.json", *overlays], workdir / "evaluate", evaluate, "eval",
                    needs=(train,)),
    ]


def probe_stages(cfg: PipelineConfig, run: Path, pretrain: list[BundleStage]) -> list[BundleStage]:
    """The frozen-encoder probe (``dcl_pretrain`` ``configs/probe.json``): ``probe/random`` probes a random encoder,
    then ``probe/<init>`` each pre-trained one, compared with it image by image
    (:func:`~dcl_cstp_ext.engines.run_probe`). Same backbone as the pre-trainings, the fine-tunings' image size; each
    stage reads only its own encoder, so adding an initialisation to a run adds a stage and changes none."""
    if not cfg.probe or not pretrain:
        return []
    task = task_spec(cfg.task)
    finetune = finetune_stages(cfg, run, "random", None, 1.0, 0)[0]
    common = {"dataset_dir": cfg.data_root, "in_channels": task["in_channels"],
              "backbone": merged_config(pretrain[0])["backbone"], "image_size": merged_config(finetune)["image_size"],
              **_split(cfg), **_device(cfg)}
    reference = run / "probe" / "random"
    stages = [BundleStage("probe/random", "dcl_pretrain", ["probe.json"], reference,
                          {**common, "encoder": None, "output_dir": str(reference), **cfg.overrides.get("probe", {})},
                          "infer")]
    for st in pretrain:
        name = st.name.split("/", 1)[1]
        workdir = run / "probe" / name
        overrides = {**common, "encoder": str(Path(st.workdir) / "models" / "encoder.pt"),
                     "reference_dir": str(reference), "output_dir": str(workdir), **cfg.overrides.get("probe", {})}
        stages.append(BundleStage(f"probe/{name}", "dcl_pretrain", ["probe.json"], workdir, overrides, "infer",
                                  needs=("probe/random", st.name)))
    return stages


def plan(cfg: PipelineConfig) -> list[BundleStage]:
    """Every stage of the run, in order."""
    run = Path(cfg.out)
    stages: list[BundleStage] = []
    pretrain: dict[str, Path] = {}
    wanted = [m for m in cfg.methods if m not in ("random", "dcl_cstp_syn", SYNTHETIC_ONLY)]
    if cfg.needs_synthetic and "dcl_cstp" not in wanted:
        wanted.append("dcl_cstp")  # its encoder is the curation's feature space
    if cfg.ablations:
        wanted += [a for a in ABLATIONS if a not in wanted]
    for method in wanted:
        st = pretrain_stage(cfg, run, method, method)
        stages.append(st)
        pretrain[method] = Path(st.workdir) / "models" / "encoder.pt"
    if cfg.needs_synthetic:
        ldm, kept = ldm_stages(cfg, run)
        stages += ldm
        for r in synthetic_ratios(cfg):
            name = "dcl_cstp_syn" if r == cfg.synthetic_ratio else f"dcl_cstp_syn{r:g}"
            st = pretrain_stage(cfg, run, name, "dcl_cstp", synthetic=kept, ratio=r)
            stages.append(st)
            pretrain[name] = Path(st.workdir) / "models" / "encoder.pt"
        if SYNTHETIC_ONLY in cfg.methods:
            st = pretrain_stage(cfg, run, SYNTHETIC_ONLY, "dcl_cstp", synthetic=kept, synthetic_only=True)
            stages.append(st)
            pretrain[SYNTHETIC_ONLY] = Path(st.workdir) / "models" / "encoder.pt"
    stages += probe_stages(cfg, run, [s for s in stages if s.name.startswith("pretrain/")])
    inits = ["random"] if "random" in cfg.methods else []
    inits += [m for m in pretrain if m in cfg.methods or m.startswith("dcl_cstp_syn") or m in ABLATIONS]
    for init in inits:
        for fraction in cfg.label_fractions:
            for seed in cfg.seeds:
                stages += finetune_stages(cfg, run, init, pretrain.get(init), fraction, seed)
    return stages


def missing_input(stage: BundleStage) -> str | None:
    """Why ``stage`` cannot run (its synthetic images or its pre-trained encoder are missing), or None.

    Curation may keep no image at all (an LDM trained too briefly makes only outliers): the runs that need
    synthetic images are then skipped, and the report says so, rather than pre-training on real images only
    under a synthetic label."""
    synthetic = stage.overrides.get("synthetic_dir")
    if synthetic and stage.bundle == "dcl_pretrain":
        if not Path(synthetic).is_dir() or not list_images(Path(synthetic), recursive=True):
            return f"no synthetic image passed curation ({synthetic} is empty)"
    encoder = stage.overrides.get("pretrained_encoder") or (stage.name.startswith("probe/")
                                                            and stage.overrides.get("encoder"))
    if encoder and not Path(encoder).is_file():
        return f"its pre-trained encoder {encoder} was not produced"
    return None
