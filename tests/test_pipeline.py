"""The main job end to end on the built-in data (tiny preset), its report, and resume after an interruption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from browser import assert_reads_as_a_page, find_browser
from PIL import Image

from dcl_cstp_ext.pipeline import PipelineConfig, plan, run_pipeline
from dcl_cstp_ext.pipeline import pipeline as pipeline_module
from dcl_cstp_ext.pipeline.presets import INIT_KINDS, PRESETS
from dcl_cstp_ext.reports.pipeline_figures import plot_pretrain_curves


def _cfg(tmp_path, demo_data, **kw):
    return PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                          **{"preset": "tiny", "device": "cpu", **kw})


def test_plan_orders_stages_and_validates_options(tmp_path, demo_data):
    names = [s.name for s in plan(_cfg(tmp_path, demo_data))]
    assert names.index("pretrain/dcl_cstp") < names.index("ldm/curation") < names.index("pretrain/dcl_cstp_syn")
    assert sum(n.endswith("/evaluate") for n in names) == 6  # six initialisations, one fraction, one seed
    with pytest.raises(ValueError, match="unknown initialisation"):
        _cfg(tmp_path, demo_data, methods=("random", "byol"))
    with pytest.raises(FileNotFoundError):
        PipelineConfig(task="kvasir_seg", data_root=str(tmp_path / "none"), out=str(tmp_path))


def test_stage_overrides_reach_their_stages_only(tmp_path, demo_data):
    overrides = {"pretrain": {"max_epochs": 3}, "finetune": {"max_epochs": 2, "datalist_kwargs": {"num_classes": 3}},
                 "ldm": {"num_workers": 1}, "probe": {"folds": 3}}
    stages = plan(_cfg(tmp_path, demo_data, methods=("random", "dcl_cstp", "dcl_cstp_syn"), overrides=overrides))
    for st in stages:
        kind = ("probe" if st.name.startswith("probe/") else "pretrain" if st.bundle == "dcl_pretrain"
                else "ldm" if st.bundle == "ldm_synthesis" else "finetune")
        for key, value in overrides[kind].items():
            assert st.overrides[key] == value, (st.name, key)
    assert stages[-1].overrides["datalist_kwargs"] == {"num_classes": 3}  # the evaluate stage too
    pre = next(st for st in stages if st.name == "pretrain/dcl_cstp")
    assert pre.overrides["max_epochs"] == 3  # not the finetune block's 2
    # the data options are the run's split's: every stage gets them (tests/test_pipeline_split.py)
    assert pre.overrides["datalist_kwargs"] == {"num_classes": 3}
    with pytest.raises(ValueError, match="overrides"):
        _cfg(tmp_path, demo_data, overrides={"train": {}})


def test_the_probe_stages_compare_each_pretrained_encoder_with_one_random_probe(tmp_path, demo_data):
    stages = {s.name: s for s in plan(_cfg(tmp_path, demo_data, methods=("random", "simclr", "dcl_cstp")))}
    probes = [n for n in stages if n.startswith("probe/")]
    assert probes == ["probe/random", "probe/simclr", "probe/dcl_cstp"]
    random, simclr = stages["probe/random"], stages["probe/simclr"]
    assert random.overrides["encoder"] is None and "reference_dir" not in random.overrides
    assert simclr.needs == ("probe/random", "pretrain/simclr")
    assert simclr.overrides["encoder"] == str(Path(stages["pretrain/simclr"].workdir) / "models" / "encoder.pt")
    assert simclr.overrides["reference_dir"] == str(random.workdir)
    # the pre-trainings' backbone, the fine-tunings' image size, the run's split
    assert _setting(simclr, "backbone") == _setting(stages["pretrain/simclr"], "backbone") == "resnet18"
    assert simclr.overrides["image_size"] == _setting(stages["finetune/random/lf1/seed0/train"], "image_size")
    assert simclr.overrides["split_file"] == stages["pretrain/simclr"].overrides["split_file"]
    assert not any(n.startswith("probe/") for n in (s.name for s in plan(_cfg(tmp_path, demo_data, probe=False))))
    assert not any(s.name.startswith("probe/") for s in plan(_cfg(tmp_path, demo_data, methods=("random",))))


def test_cpu_preset_sizes_synthesis_to_the_largest_ratio(tmp_path, demo_data):
    """Without a preset count, stage 1 generates ceil(max ratio x training images / 0.5): curation keeps half."""
    from dcl_cstp_ext.data import build_datalist

    n_train = len(build_datalist("auto", demo_data["kvasir_seg"], seed=0)["training"])

    def sample_stage(**kw):
        cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "r"),
                             preset="cpu", **kw)
        return next(st for st in plan(cfg) if st.name == "ldm/samples")

    st = sample_stage(methods=("dcl_cstp_syn",), ratios=(0.1, 1.0))
    assert st.overrides["num_samples"] == max(16, 2 * n_train)
    assert _setting(st, "sampler") == "dpm_solver" and _setting(st, "num_inference_steps") == 20  # the cpu overlay
    assert sample_stage(methods=("dcl_cstp_syn",)).overrides["num_samples"] == max(16, n_train)  # ratio 0.5
    assert sample_stage(methods=("dcl_cstp_syn",), overrides={"ldm": {"num_samples": 7}}).overrides["num_samples"] == 7
    tiny = next(st for st in plan(_cfg(tmp_path, demo_data)) if st.name == "ldm/samples")
    assert "num_samples" not in tiny.overrides and _setting(tiny, "num_samples") == 8  # a preset's own count stays


def _setting(stage, key):
    """``key`` as the stage will run it: its bundle's configs layered in order, then its overrides."""
    from monai.bundle import ConfigParser

    from dcl_cstp_ext.pipeline import bundles_dir

    parser = ConfigParser()
    parser.read_config([str(bundles_dir() / stage.bundle / "configs" / c) for c in stage.configs])
    parser.update(stage.overrides)
    return parser[key]


@pytest.mark.slow
def test_pipeline_end_to_end_report_and_resume(tmp_path, demo_data, monkeypatch):
    cfg = _cfg(tmp_path, demo_data, methods=("random", "dcl_cstp", "dcl_cstp_syn"))
    assert plan(cfg)
    real_run_stage = pipeline_module.run_stage
    calls = []

    def interrupted(stage, force=False, **kw):  # "kill" the run when the last fine-tuning stage starts
        calls.append(stage.name)
        if stage.name == "finetune/dcl_cstp/lf1/seed0/train":
            raise KeyboardInterrupt
        return real_run_stage(stage, force, **kw)

    monkeypatch.setattr(pipeline_module, "run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    run = tmp_path / "run"
    done_before = {p: p.stat().st_mtime for p in run.rglob("DONE.json")}
    assert len(done_before) >= 1

    skipped = []
    monkeypatch.setattr(pipeline_module, "run_stage", real_run_stage)
    monkeypatch.setattr(pipeline_module.logger, "info", lambda msg, *a: None)
    import dcl_cstp_ext.pipeline.runner as runner

    monkeypatch.setattr(runner.logger, "info", lambda msg, *a: skipped.append(msg) if msg.startswith("[skip]") else None)
    report = run_pipeline(cfg)
    assert len(skipped) == len(done_before)  # everything finished before the interruption was skipped
    assert all(p.stat().st_mtime == t for p, t in done_before.items())
    assert calls[-1] == "finetune/dcl_cstp/lf1/seed0/train"

    text = report.read_text()
    assert "## Results" in text and "| dcl_cstp |" in text and "| random |" in text
    skipped = json.loads((run / "skipped.json").read_text())
    curated = list((run / "ldm" / "curation" / "curated").glob("*.png"))
    if not curated:  # a one-epoch LDM makes noise: curation drops it all and the synthetic runs say why
        assert "pretrain/dcl_cstp_syn" in skipped and "## Skipped stages" in text
    else:
        assert "| dcl_cstp_syn |" in text
    assert (run / "ldm" / "curation" / "curation.json").is_file()
    assert "s per image**" in text  # the sampler's timing
    for init in ("random", "dcl_cstp"):
        metrics = json.loads((run / "finetune" / init / "lf1" / "seed0" / "evaluate" / "metrics.json").read_text())
        with open(run / "finetune" / init / "lf1" / "seed0" / "evaluate" / "metrics_per_image.csv") as fh:
            dice = [float(row["dice"]) for row in csv.DictReader(fh)]
        assert metrics["n"] == len(dice) and metrics["dice"]["mean"] == pytest.approx(sum(dice) / len(dice), abs=1e-5)
    assert (run / "figures" / "pretrain_curves.png").stat().st_size > 1000
    epochs = [json.loads(line) for line in (run / "pretrain" / "dcl_cstp" / "eval" / "metrics.jsonl").open()]
    assert all("train_bank_gap" in e and "train_z_std" in e for e in epochs)  # the bank's staleness, every epoch
    probe = json.loads((run / "probe" / "dcl_cstp" / "probe.json").read_text())
    assert probe["reference"] == str(run / "probe" / "random") and "dense_dice_vs_random" in probe
    assert "## Frozen features" in text and "| dcl_cstp |" in text.split("## Frozen features")[1]
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    info = json.loads((run / "run_info.json").read_text())
    assert len(info) == 2 and info[-1]["packages"]["torch"]
    assert (run / "pretrain" / "dcl_cstp" / "config.json").is_file()
    # finished stages keep their exported weights and drop their resume checkpoints (disk: 2-3x the weights)
    assert not list(run.rglob("*checkpoint*.pt"))
    assert (run / "pretrain" / "dcl_cstp" / "models" / "encoder.pt").is_file()
    assert (run / "ldm" / "models" / "autoencoder.pt").is_file() and (run / "ldm" / "models" / "model.pt").is_file()
    assert (run / "finetune" / "dcl_cstp" / "lf1" / "seed0" / "models" / "model.pt").is_file()
    if find_browser():  # the page as shown: pictures loaded at a readable size, no raw Markdown (test_report_page.py)
        assert_reads_as_a_page(run / "report.html", tmp_path)


def test_report_header_lists_every_finished_run_not_only_the_last_command(tmp_path):
    from dcl_cstp_ext.reports.pipeline_report import write_report

    run = tmp_path / "run"
    for init, fraction, seed, dice in [("random", "1", 0, 0.6), ("random", "0.1", 1, 0.4), ("dcl_cstp", "0.1", 0, 0.5),
                                       ("dcl_cstp", "0.1", 1, 0.45)]:
        out = run / "finetune" / init / f"lf{fraction}" / f"seed{seed}" / "evaluate"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"dice": {"mean": dice}, "split": "test", "n": 100}))
        train = out.parent / "train"  # the resolved config and DONE.json the fine-tuning stage wrote
        train.mkdir()
        pretrained = init != "random"
        (train / "config.json").write_text(json.dumps({"lr": 0.001, "encoder_lr_scale": 0.1 if pretrained else 1.0,
                                                       "layer_decay": 1.0, "warmup_epochs": 2, "tta": "hv"}))
        overlays = ["presets/cpu.json", *(["presets/init_pretrained/cpu.json"] if pretrained else [])]
        (train / "DONE.json").write_text(json.dumps({"stage": f"finetune/{init}/train", "seconds": 1.0,
                                                     "configs": ["train.json", *overlays]}))
    # the last command asked only for dcl_cstp, 10% of the labels, seed 1
    (run / "pipeline.json").write_text(json.dumps({
        "task": "kvasir_seg", "preset": "cpu", "data_root": "data", "methods": ["dcl_cstp"], "synthetic_ratio": 0.5,
        "label_fractions": [0.1], "seeds": [1]}))
    text = write_report(run).read_text()
    header = text.split("## Results")[0]
    assert "initialisations random, dcl_cstp; label fractions 1, 0.1; seeds 0, 1." in header
    assert "The last command asked for initialisations dcl_cstp" in header
    assert "| dcl_cstp | 2 | 47.50 ± 3.54 |" in text  # both seeds of the 10% table, whichever command ran them
    assert "Evaluated on the test (100 images) split. Nothing was selected on it" in text
    # the paired comparison comes first; seed 1 is the only seed both ran at 10%
    stats = header.split("## What pre-training changed")[1]
    assert "| dcl_cstp | 1 | +5.00 | +5.00 (1 pair) | n/a | 1 | within noise (1 of 3 seeds) |" in stats
    assert "| random | 1 | -5.00 | -5.00 (1 pair) | n/a | 1 | within noise (1 of 3 seeds) |" in stats
    assert "the signed-rank p cannot go below 1 with 1 pair, all differences of one sign" in stats
    assert json.loads((run / "statistics.json").read_text())["comparisons"][0]["differences"] == [5.0]
    # each initialisation's recipe, as its fine-tunings ran
    assert "| random | 0.001 | 1.0 | 1.0 | 2 | None | None | None | hv | presets/cpu.json |" in text
    assert "| dcl_cstp | 0.001 | 0.1 | 1.0 | 2 | None | None | None | hv | presets/cpu.json, " \
           "presets/init_pretrained/cpu.json |" in text


def test_synthetic_only_pretrains_on_the_kept_synthetic_images_alone(tmp_path, demo_data):
    """``dcl_cstp_synonly``: the ratio table's "synthetic only" row, its own pre-training and fine-tunings."""
    from dcl_cstp_ext.data import build_datalist

    cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "r"),
                         preset="cpu", methods=("random", "dcl_cstp_synonly"))
    names = [st.name for st in plan(cfg)]
    assert len(names) == len(set(names))
    stages = {st.name: st for st in plan(cfg)}
    from dcl_cstp_ext.methods import METHODS

    assert all(st.overrides["method"] in METHODS for st in stages.values() if st.name.startswith("pretrain/"))
    only = stages["pretrain/dcl_cstp_synonly"]
    assert only.overrides["synthetic_only"] is True and only.needs == ("ldm/curation",)
    assert only.overrides["synthetic_dir"].endswith("ldm/curation/curated") and only.overrides["method"] == "dcl_cstp"
    assert "synthetic_only" not in stages["pretrain/dcl_cstp"].overrides  # the curation's feature encoder
    assert stages["finetune/dcl_cstp_synonly/lf1/seed0/train"].needs == ("pretrain/dcl_cstp_synonly",)
    n_train = len(build_datalist("auto", demo_data["kvasir_seg"], seed=0)["training"])
    assert stages["ldm/samples"].overrides["num_samples"] == max(16, 2 * n_train)  # kept: as many as real images
    assert "dcl_cstp_synonly" not in [st.name.split("/")[1] for st in plan(_cfg(tmp_path, demo_data))]  # opt-in


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_bundle_has_the_presets_overlays_and_they_set_known_keys(preset):
    """A preset is JSON overlays inside every bundle; each key an overlay sets exists in one of the bundle's own
    configs (a misspelt key would otherwise be added silently)."""
    import json

    from dcl_cstp_ext.pipeline import bundles_dir

    def ids(config, prefix=""):  # every config id, nested ones as "a#b"
        for key, value in config.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from ids(value, prefix + key + "#")

    for bundle in ("ldm_synthesis", "dcl_pretrain", "pneumonia_cls", "isic_seg", "kvasir_seg"):
        configs = bundles_dir() / bundle / "configs"
        known = {i for f in configs.glob("*.json") if f.name != "metadata.json" for i in ids(json.loads(f.read_text()))}
        for overlay in PRESETS[preset]:
            path = configs / overlay
            assert path.is_file(), f"{bundle}: {overlay} missing"
            unknown = set(json.loads(path.read_text())) - known
            assert not unknown, f"{bundle}/{overlay}: unknown keys {sorted(unknown)}"
        for stage in (configs / "presets").glob(f"*/{preset}.json"):  # a stage config's / an init kind's own values
            init_kind = stage.parent.name.removeprefix("init_")
            config = configs / ("train.json" if init_kind in INIT_KINDS else f"{stage.parent.name}.json")
            assert config.is_file(), f"{bundle}: {stage} belongs to no config"
            unknown = set(json.loads(stage.read_text())) - set(ids(json.loads(config.read_text())))
            assert not unknown, f"{bundle}/{stage}: keys not in {config.name}: {sorted(unknown)}"


def test_finetuning_of_a_pretrained_init_layers_its_own_recipe(tmp_path, demo_data, monkeypatch):
    """``presets/init_pretrained/<preset>.json`` (issue #20) is layered after the preset for the fine-tunings of
    pre-trained encoders only, in training and evaluation, so each stage's config records the recipe it used."""
    import shutil

    from dcl_cstp_ext.pipeline import bundles_dir, presets

    fake = tmp_path / "bundles"
    shutil.copytree(bundles_dir() / "kvasir_seg" / "configs", fake / "kvasir_seg" / "configs")
    (fake / "kvasir_seg" / "configs" / "presets" / "init_pretrained").mkdir(exist_ok=True)
    (fake / "kvasir_seg" / "configs" / "presets" / "init_pretrained" / "cpu.json").write_text('{"encoder_lr_scale": 0.1}')
    monkeypatch.setattr(presets, "bundles_dir", lambda: fake)
    stages = plan(_cfg(tmp_path, demo_data, preset="cpu", methods=("random", "simclr")))
    configs = {st.name: st.configs for st in stages if st.name.startswith("finetune/")}
    assert configs and all(c[-1] == "presets/init_pretrained/cpu.json" for n, c in configs.items() if "/simclr/" in n)
    assert not any("presets/init_pretrained/cpu.json" in c for n, c in configs.items() if "/random/" in n)
    with pytest.raises(ValueError, match="initialisation kind"):
        presets.init_recipe_spec("cpu", "kvasir_seg", "imagenet")


def test_the_ldm_stages_read_their_own_preset_values_and_override_blocks(tmp_path, demo_data):
    """The two ldm training stages share the key names ``batch_size`` / ``max_epochs`` / ``lr``: each layers its own
    ``presets/<stage config>/<preset>.json`` after the preset (so sampling and curation keep their own
    ``batch_size``), and each stage's own ``--overrides`` block comes after the ``ldm`` block."""
    from monai.bundle import ConfigParser

    from dcl_cstp_ext.pipeline import bundles_dir

    cfg = _cfg(tmp_path, demo_data, preset="cpu", overrides={"ldm": {"max_epochs": 3, "lr": 0.5},
                                                             "ldm/diffusion": {"max_epochs": 7}})
    stages = {st.name: st for st in plan(cfg)}
    ae, dm = stages["ldm/autoencoder"], stages["ldm/diffusion"]
    assert ae.configs == ["train_autoencoder.json", "presets/cpu.json", "presets/train_autoencoder/cpu.json"]
    assert dm.configs == ["train_autoencoder.json", "train_diffusion.json", "presets/cpu.json",
                          "presets/train_diffusion/cpu.json"]
    assert (ae.overrides["max_epochs"], dm.overrides["max_epochs"], dm.overrides["lr"]) == (3, 7, 0.5)

    def resolved(stage, key):
        parser = ConfigParser()
        parser.read_config([str(bundles_dir() / "ldm_synthesis" / "configs" / c) for c in stage.configs])
        return parser[key]

    assert (resolved(ae, "batch_size"), resolved(dm, "batch_size")) == (16, 32)  # the cpu preset's per stage
    assert resolved(stages["ldm/curation"], "batch_size") == 64  # curate.json's own
    with pytest.raises(ValueError, match="ldm/diffusion"):
        _cfg(tmp_path, demo_data, overrides={"ldm/difusion": {"max_epochs": 1}})


def test_pretrain_curves_add_the_bank_staleness_panel_when_a_run_logs_it(tmp_path):
    def write(run, name, rows):
        path = run / "pretrain" / name / "eval" / "metrics.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_z_std": 0.9} for e in (1, 2)]
    widths = {}
    for case, gap in (("without", None), ("with", 0.02)):
        run = tmp_path / case
        write(run, "simsiam", rows)
        write(run, "mocov2", [{**r, **({"train_bank_gap": gap} if gap else {})} for r in rows])
        (run / "figures").mkdir()
        widths[case] = Image.open(plot_pretrain_curves(run, run / "figures")).size[0]
    assert widths["with"] == pytest.approx(widths["without"] * 4 / 3, rel=0.02)  # a fourth panel of the same width


def test_finetune_curves_average_finished_seeds_and_pair_each_init_with_random_by_seed(tmp_path):
    from dcl_cstp_ext.reports.pipeline_figures import plot_finetune_curves
    from dcl_cstp_ext.reports.pipeline_results import finetune_curves, paired_curve_gap

    def write(init, seed, dice, done=True):
        train = tmp_path / "finetune" / init / "lf0.1" / f"seed{seed}" / "train"
        train.mkdir(parents=True)
        (train / "val_metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e + 1, "val_mean_dice": d}) + "\n" for e, d in enumerate(dice)))
        (train / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e + 1, "train_loss": 1 - d}) + "\n" for e, d in enumerate(dice)))
        if done:
            (train / "DONE.json").write_text("{}")

    write("random", 0, [0.2, 0.4, 0.6])
    write("random", 1, [0.3, 0.5, 0.7, 0.8])  # a longer run: the group is cut to the epochs every seed logged
    write("dcl_cstp", 0, [0.5, 0.6, 0.6])
    write("dcl_cstp", 2, [0.1, 0.1, 0.1])  # no random seed 2: left out of the pairing
    write("simclr", 0, [0.9, 0.9], done=False)  # still running: left out
    curves = finetune_curves(tmp_path, "val_metrics.jsonl", "val_mean_dice")
    assert list(curves) == [("random", "0.1"), ("dcl_cstp", "0.1")]
    assert curves[("random", "0.1")]["seeds"] == ["0", "1"]
    assert curves[("random", "0.1")]["values"].tolist() == [[0.2, 0.4, 0.6], [0.3, 0.5, 0.7]]
    epochs, gap, seeds = paired_curve_gap(curves, ("dcl_cstp", "0.1"))
    assert seeds == ["0"] and epochs.tolist() == [1, 2, 3]
    assert gap == pytest.approx([0.3, 0.2, 0.0])  # the lead that random init closes by the last epoch
    assert paired_curve_gap(curves, ("random", "0.1")) is None
    (tmp_path / "figures").mkdir()
    width = Image.open(plot_finetune_curves(tmp_path, tmp_path / "figures")).size[0]
    assert width == pytest.approx(3 * 6 * 90, rel=0.02)  # loss, validation metric, and the lead over random init


def test_the_evaluated_split_names_its_image_count_for_classification_and_segmentation(tmp_path):
    """The classifier's evaluation keeps its count in ``summary.num_images``, the segmenters' in ``n``."""
    from dcl_cstp_ext.reports.pipeline_results import evaluated_splits_sentence

    for task, metrics in [("cls", {"split": "validation", "summary": {"num_images": 1043, "accuracy": 0.78}}),
                          ("seg", {"split": "test", "n": 100, "dice": {"mean": 0.5}})]:
        out = tmp_path / task / "finetune" / "random" / "lf0.1" / "seed0" / "evaluate"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(metrics))
    assert evaluated_splits_sentence(tmp_path / "cls").startswith("Evaluated on the validation (1043 images) split.")
    assert evaluated_splits_sentence(tmp_path / "seg").startswith("Evaluated on the test (100 images) split.")
