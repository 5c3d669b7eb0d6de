"""Zoo-style checks of every bundle (ci/verify_bundles.py): files, metadata schema, JSON format, network I/O,
TorchScript export equality."""

import importlib.util
import json

import pytest
from conftest import BUNDLES, REPO

spec = importlib.util.spec_from_file_location("verify_bundles", REPO / "ci" / "verify_bundles.py")
verify_bundles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verify_bundles)

NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())


def test_all_five_bundles_exist():
    assert {"dcl_pretrain", "ldm_synthesis", "pneumonia_cls", "isic_seg", "kvasir_seg"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bundle_passes_zoo_checks(name):
    verify_bundles.verify(name)


def test_checks_catch_a_broken_bundle(tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "bundles" / "dcl_pretrain"
    shutil.copytree(BUNDLES / "dcl_pretrain", broken)
    monkeypatch.setattr(verify_bundles, "BUNDLES", tmp_path / "bundles")
    meta = json.loads((broken / "configs" / "metadata.json").read_text())
    meta["version"] = "9.9.9"
    (broken / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(verify_bundles.BundleError, match="changelog"):
        verify_bundles.check_metadata(broken)
    meta["version"], meta["eval_metrics"] = "0.1.0", {"mean_dice": "see docs/README.md"}
    meta["changelog"] = {"0.1.0": "x"}
    meta["network_data_format"]["inputs"]["image"]["channel_def"] = {"0": "R"}
    (broken / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(verify_bundles.BundleError, match="eval_metrics.mean_dice is 'see docs/README.md', not a number"
                                                         ".*1 channel_def entries for num_channels 3"):
        verify_bundles.check_metadata(broken)
    readme = broken / "docs" / "README.md"
    readme.write_text(readme.read_text().replace("## Performance", "## Results"))
    with pytest.raises(verify_bundles.BundleError, match="Performance"):
        verify_bundles.check_files(broken)
    (broken / "LICENSE").unlink()
    with pytest.raises(verify_bundles.BundleError, match="LICENSE"):
        verify_bundles.check_files(broken)
    (broken / "configs" / "inference.json").write_text('{"a": 1}')
    with pytest.raises(verify_bundles.BundleError, match="not formatted"):
        verify_bundles.check_json_format(broken)


def test_the_offline_schema_is_the_zoos_published_one():
    """``ci/schema/meta_schema_20240725.json`` byte for byte as published (the URL in every bundle's ``schema``):
    it requires ``schema`` and accepts a tensor without ``channel_def`` (the zoo's latent-diffusion bundles),
    which the earlier hand-written schema did the other way round."""
    import hashlib

    import jsonschema

    assert hashlib.sha256(verify_bundles.SCHEMA.read_bytes()).hexdigest() == (
        "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678")
    schema = json.loads(verify_bundles.SCHEMA.read_text())
    meta = json.loads((BUNDLES / "ldm_synthesis" / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["latent"]["channel_def"]
    jsonschema.validate(meta, schema)
    del meta["schema"]
    with pytest.raises(jsonschema.ValidationError, match="'schema' is a required property"):
        jsonschema.validate(meta, schema)


def test_every_preset_names_itself_and_every_training_records_it():
    """``preset`` is a setting of every training config (``default``: the config's own values) that each
    ``configs/presets/<name>.json`` sets to its name, and the exports record it with the weights."""
    for name in NAMES:
        configs = BUNDLES / name / "configs"
        for preset in configs.glob("presets/*.json"):
            assert json.loads(preset.read_text())["preset"] == preset.stem, preset
        base = configs / ("train_autoencoder.json" if name == "ldm_synthesis" else "train.json")
        assert json.loads(base.read_text())["preset"] == "default", base
        assert '"preset": "@preset"' in "".join(p.read_text() for p in configs.glob("train*.json")), name


def _expressions(config):
    """Every ``$`` expression of a parsed config file."""
    if isinstance(config, dict):
        for value in config.values():
            yield from _expressions(value)
    elif isinstance(config, list):
        for value in config:
            yield from _expressions(value)
    elif isinstance(config, str) and config.startswith("$"):
        yield config


def test_no_long_expressions_in_the_bundles_configs():
    """Logic lives in ``dcl_cstp_ext`` and in ``_target_`` blocks: no ``$`` expression of any bundle config is longer
    than 100 characters (the zoo's spleen bundle's longest is about 73)."""
    files = list(BUNDLES.glob("*/configs/**/*.json"))
    assert len(files) > 30
    long = [(f.relative_to(BUNDLES), e) for f in files for e in _expressions(json.loads(f.read_text())) if len(e) > 100]
    assert not long, long
