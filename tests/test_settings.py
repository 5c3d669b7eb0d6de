"""Issue #23, "Settings" and "Inputs": misspelt keys, wrong types and out-of-range values are refused before anything
runs, naming the key (with a did-you-mean), in bundle runs and in the pipeline's --overrides; a user's mistake is
the last thing a run prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from dcl_cstp_ext.data import DataError
from dcl_cstp_ext.pipeline import PipelineConfig, plan
from dcl_cstp_ext.pipeline.pipeline import check_overrides as pipeline_check
from dcl_cstp_ext.settings import SettingsError, check_command_line, check_overrides, command_line_overrides
from dcl_cstp_ext.short_errors import install, user_error

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
KVASIR = [str(BUNDLES / "kvasir_seg" / "configs" / c) for c in ("train.json", "presets/cpu.json")]


@pytest.fixture(scope="module")
def kvasir():
    parser = ConfigParser()
    parser.read_config(KVASIR)
    return parser.get()


def _refused(config, overrides, **kw) -> str:
    with pytest.raises(SettingsError) as err:
        check_overrides(config, overrides, **kw)
    return str(err.value)


def test_misspelt_keys_are_refused_with_a_did_you_mean(kvasir):
    text = _refused(kvasir, {"max_epoch": 1, "lerning_rate": 0.1, "batchsize": 4})
    assert "--max_epoch: unknown setting (did you mean --max_epochs?)" in text
    assert "--lerning_rate: unknown setting (did you mean --lr?)" in text
    assert "--batchsize: unknown setting (did you mean --batch_size?)" in text
    assert "--train#traner#x: unknown setting" in _refused(kvasir, {"train#traner#x": 1})


def test_new_keys_need_allow_new_keys_except_arguments_of_a_component(kvasir):
    check_overrides(kvasir, {"my_key": 1}, allow_new_keys=True)
    check_overrides(kvasir, {"train#trainer#epoch_length": 5})  # a new argument of SupervisedTrainer
    check_overrides(kvasir, {"output_dir": "/x", "tracking_uri": "file:///x"}, tracking=True)


def test_wrong_types_and_ranges_name_the_key(kvasir):
    assert "--max_epochs: expected an integer, got 'abc'" in _refused(kvasir, {"max_epochs": "abc"})
    assert "--image_size: must be an integer >= 16 (pixels), got -5" in _refused(kvasir, {"image_size": -5})
    assert "--image_size: the U-Net needs a multiple of 32, got 33 (try 32)" in _refused(kvasir, {"image_size": 33})
    assert "--lr: must be a number > 0, got 0" in _refused(kvasir, {"lr": 0})
    assert "--amp: expected True or False, got 'false'" in _refused(kvasir, {"amp": "false"})
    check_overrides(kvasir, {"max_epochs": 3, "lr": 1, "image_size": 96, "amp": False, "backbone": "resnet34",
                             "weight_decay": "$1e-3 * 2"})  # an expression is left to the run


def test_the_command_line_of_a_bundle_run_is_read_as_monai_reads_it(tmp_path):
    main = "/env/lib/monai/bundle/__main__.py"
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"config_file": KVASIR, "batch_size": 8}))
    files, pairs, tracking = command_line_overrides(
        [main, "run", "--args_file", str(args), "--max_epochs", "3", "--lr=1e-3", "--amp"])
    assert files == KVASIR and not tracking
    assert pairs["batch_size"] == 8 and pairs["max_epochs"] == 3 and pairs["lr"] == 0.001 and pairs["amp"] is True
    assert command_line_overrides(["/usr/bin/pytest", "-q"]) is None
    check_command_line(False, [main, "run", "--config_file", str(KVASIR), "--max_epochs", "2"])
    with pytest.raises(SettingsError, match="did you mean --max_epochs"):
        check_command_line(False, [main, "run", "--config_file", str(KVASIR), "--max_epoch", "2"])


def test_every_runnable_config_checks_its_command_line_first():
    for path in sorted(BUNDLES.glob("*/configs/*.json")):
        config = json.loads(path.read_text())
        if "initialize" in config:  # first the package, then the command line
            assert config["initialize"][:2] == ["$@required_package[0].__name__",
                                                "$dcl_cstp_ext.settings.check_command_line(@allow_new_keys)"], path
        if "imports" in config:  # a config that runs on its own
            assert config["allow_new_keys"] is False, path
            assert config["required_package"]["module"] == "dcl_cstp_ext", path


def test_a_bundle_run_without_the_package_says_what_to_install(tmp_path):
    """``dcl_cstp_ext`` made unimportable (``sys.modules[name] = None``): the run stops at its first step with
    MONAI's OptionalImportError naming the package and where it comes from, not a bare ``import dcl_cstp_ext``."""
    root = BUNDLES / "kvasir_seg"
    argv = ["monai.bundle", "run", "--config_file", str(root / "configs" / "inference.json"), "--bundle_root",
            str(root), "--meta_file", str(root / "configs" / "metadata.json"), "--dataset_dir", str(tmp_path)]
    code = ("import runpy, sys; sys.modules['dcl_cstp_ext'] = None; "
            f"sys.argv = {argv!r}; runpy.run_module('monai.bundle', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    assert "this bundle needs the dcl-cstp package, which is not installed (import dcl_cstp_ext)" in done.stderr
    assert "pip install the wheel dcl_cstp-<version>-py3-none-any.whl" in done.stderr
    assert not (tmp_path / "eval").exists()


def test_a_bundle_run_with_a_misspelt_key_stops_at_once_with_the_error_last(tmp_path):
    root = BUNDLES / "kvasir_seg"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(KVASIR), "--bundle_root", str(root),
           "--meta_file", str(root / "configs" / "metadata.json"), "--dataset_dir", str(tmp_path / "none"),
           "--output_dir", str(tmp_path / "eval"), "--ckpt_dir", str(tmp_path / "models"), "--max_epoch", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-3:-1] == ["error: invalid settings, nothing was run:",
                            "  --max_epoch: unknown setting (did you mean --max_epochs?); to add a new key on purpose, "
                            "also set allow_new_keys to True"]
    assert lines[-1].startswith("(the full traceback: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "models").exists()


def test_a_user_error_is_found_in_the_chain_and_printed_last(capsys):
    try:
        try:
            raise DataError("/data/x.png: cannot read image")
        except DataError as err:
            raise RuntimeError("Failed to evaluate ConfigExpression") from err
    except RuntimeError as err:
        wrapped = err
    assert isinstance(user_error(wrapped), DataError) and user_error(RuntimeError("x")) is None
    install()
    sys.excepthook(type(wrapped), wrapped, wrapped.__traceback__)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: /data/x.png: cannot read image"
    saved = Path(err[1].removeprefix("(the full traceback: ").removesuffix(")"))
    assert "Failed to evaluate ConfigExpression" in saved.read_text()
    sys.excepthook = sys.__excepthook__


def test_the_pipeline_refuses_overrides_that_no_stage_of_their_block_knows(tmp_path, demo_data):
    def check(overrides):
        cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                             preset="tiny", overrides=overrides)
        pipeline_check(cfg, plan(cfg))

    with pytest.raises(SettingsError) as err:
        check({"finetune": {"max_epoch": 3}, "ldm": {"num_sample": 8}, "pretrain": {"lr": "abc"}})
    assert str(err.value).splitlines()[1:] == [
        '  "finetune": --max_epoch: unknown setting (did you mean --max_epochs?); to add a new key on purpose, also '
        "set allow_new_keys to True",
        '  "ldm": --num_sample: unknown setting (did you mean --num_samples?); to add a new key on purpose, also set '
        "allow_new_keys to True",
        "  \"pretrain\": --lr: must be a number > 0, got 'abc'",
    ]
    check({"finetune": {"max_epochs": 3, "datalist_kwargs": {"num_classes": 3}}, "ldm": {"num_samples": 8},
           "pretrain": {"lr": None, "train#trainer#epoch_length": 3}, "ldm/diffusion": {"max_epochs": 1}})
    check({"finetune": {"my_key": 1, "allow_new_keys": True}})


def test_json_true_false_null_in_overrides_reach_the_configs_as_json():
    """``dcl-cstp pipeline --overrides '{"pretrain": {"amp": true}}'``: fire alone parses the text as Python and
    gives ``{"amp": "true"}`` (a truthy string, which crashed a run in its first step); the CLI keeps the text for
    JSON, also in the ``--overrides=...`` form."""
    import fire

    from dcl_cstp_ext.cli import _json_arg, keep_json_text

    text = '{"pretrain": {"amp": true, "resume": false, "queue_size": null, "lr": 0.1}}'
    got = {}
    fire.Fire(lambda overrides=None: got.update(o=_json_arg(overrides)), command=["--overrides", text])
    assert got["o"] == {"pretrain": {"amp": "true", "resume": "false", "queue_size": "null", "lr": 0.1}}  # the bug
    for argv in (["--overrides", text], [f"--overrides={text}"]):
        fire.Fire(lambda overrides=None: got.update(o=_json_arg(overrides)), command=keep_json_text(argv))
        assert got["o"] == {"pretrain": {"amp": True, "resume": False, "queue_size": None, "lr": 0.1}}
    assert keep_json_text(["pipeline", "--seeds", "0,1"]) == ["pipeline", "--seeds", "0,1"]


def test_yes_no_options_of_the_cli_read_false_as_false(monkeypatch, tmp_path):
    """fire hands ``--probe false`` over as the text 'false', which ``bool()`` reads as True."""
    import fire

    import dcl_cstp_ext.pipeline as pipeline
    from dcl_cstp_ext.cli import CLI, _bool, keep_json_text

    assert [_bool(v, "x") for v in (True, "true", "TRUE", "yes", "1", 1)] == [True] * 6
    assert [_bool(v, "x") for v in (False, "false", "False", "no", "0", 0)] == [False] * 6
    with pytest.raises(ValueError, match="--keep-checkpoints: expected true or false, got 'maybe'"):
        _bool("maybe", "keep_checkpoints")
    seen = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda cfg, report=True: seen.update(cfg=cfg, report=report) or "r")
    argv = ["pipeline", "--task", "kvasir_seg", "--data-root", str(tmp_path), "--out", str(tmp_path / "run"),
            "--probe", "false", "--ablations", "true", "--report", "false"]
    fire.Fire(CLI, command=keep_json_text(argv))
    assert seen["cfg"].probe is False and seen["cfg"].ablations is True and seen["report"] is False
