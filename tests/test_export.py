"""The project's one export format, ``{"model": state_dict, "meta": {...}}``: its writer, its reader, the earlier
forms it still reads, and MONAI's readers of the same file."""

from __future__ import annotations

import pytest
import torch
from monai.handlers import CheckpointLoader
from torch import nn

from dcl_cstp_ext.data import DataError
from dcl_cstp_ext.networks import (
    ExportMeta,
    meta_sidecar,
    read_export,
    read_export_meta,
    save_export,
    split_export,
    split_for_release,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_save_and_read_round_trip_the_weights_and_the_meta(tmp_path):
    net, path = _net(), tmp_path / "sub" / "model.pt"
    meta = {"backbone": "resnet18", "image_size": 128, "class_names": ["a", "b"], "betas": torch.linspace(0, 1, 4)}
    save_export(path, net.state_dict(), meta)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "meta"}
    state, got = read_export(path)
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert got["class_names"] == ["a", "b"] and got["image_size"] == 128
    torch.testing.assert_close(got["betas"], meta["betas"])
    assert read_export_meta(path)["backbone"] == "resnet18"
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # written atomically: no temporary file left


def test_earlier_forms_still_read(tmp_path):
    sd = _net().state_dict()
    assert split_export(sd) == (dict(sd), {})  # a bare state dict
    assert split_export({"model": sd, "info": {"class_names": ["x"]}})[1] == {"class_names": ["x"]}  # classifier
    assert split_export({"model": sd, "scale_factor": 0.5, "epoch": 3})[1] == {"scale_factor": 0.5, "epoch": 3}
    with pytest.raises(TypeError, match="m.pt: expected a dict"):
        split_export([1, 2], "m.pt")
    with pytest.raises(FileNotFoundError, match="none.pt"):
        read_export(tmp_path / "none.pt")


def test_monai_checkpoint_saver_and_loader_speak_the_format(tmp_path):
    """``CheckpointSaver(save_dict={"model": net, "meta": ExportMeta(...)})`` writes it; ``CheckpointLoader`` with
    ``load_dict={"model": net}`` loads its weights (what the bundles' evaluate / inference configs do)."""
    from ignite.engine import Engine
    from monai.handlers import CheckpointSaver

    net = _net()
    engine = Engine(lambda e, b: None)
    CheckpointSaver(str(tmp_path), {"model": net, "meta": ExportMeta(image_size=64)}, save_final=True,
                    final_filename="model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    state, meta = read_export(tmp_path / "model.pt")
    assert meta == {"image_size": 64} and torch.equal(state["0.weight"], net[0].weight)
    other = _net()
    with torch.no_grad():
        other[0].weight.zero_()
    CheckpointLoader(str(tmp_path / "model.pt"), {"model": other}).attach(engine2 := Engine(lambda e, b: None))
    engine2.run([0], max_epochs=1)
    assert torch.equal(other[0].weight, net[0].weight)


def test_a_planted_pickle_is_refused(tmp_path):
    """Every read is ``weights_only=True``: a ``torch.save``'d file whose meta would run code when unpickled (here:
    create a file) is refused, and the code does not run."""
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "model.pt"
    torch.save({"model": _net().state_dict(), "meta": {"x": Planted()}}, path)
    with pytest.raises(DataError, match=r"model\.pt: holds .*open besides tensors and plain data; loading it could "
                                        r"run code, so it is refused") as err:
        read_export(path)
    assert "weights_only" not in str(err.value)  # never torch's advice to load it unsafely
    with pytest.raises(DataError, match="could run code"):
        read_export_meta(path)
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    """Issue #22: an empty file or random bytes as ``--pretrained_encoder`` named, without torch's unsafe advice."""
    empty, noise = tmp_path / "empty.pt", tmp_path / "noise.pt"
    empty.write_bytes(b"")
    noise.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"empty\.pt: empty file, not a PyTorch checkpoint"):
        read_export(empty)
    with pytest.raises(DataError, match=r"noise\.pt: not a PyTorch checkpoint \(or a damaged one\)") as err:
        read_export(noise)
    assert "weights_only" not in str(err.value)


def test_inference_reads_the_trained_settings_and_checks_what_it_is_asked(tmp_path, caplog):
    """Issue #23: inference at another image size than the model's is warned about, another architecture refused;
    unset, the settings are the model's (``trained_settings``)."""
    import logging

    from dcl_cstp_ext.networks import check_against_training, save_export, trained_settings
    from dcl_cstp_ext.settings import SettingsError

    path = tmp_path / "model.pt"
    save_export(path, {"w": torch.zeros(1)}, {"backbone": "resnet18", "in_channels": 3, "image_size": 32})
    defaults = {"backbone": "resnet50", "in_channels": 3, "out_channels": 1, "image_size": 256}
    assert trained_settings(path, defaults) == {"backbone": "resnet18", "in_channels": 3, "out_channels": 1,
                                                "image_size": 32}
    assert trained_settings(tmp_path / "missing.pt", defaults) == defaults
    with caplog.at_level(logging.WARNING):
        check_against_training(path, backbone="resnet18", image_size=32)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
        check_against_training(path, backbone="resnet18", image_size=256)
    assert "trained at image_size 32 but runs at 256" in caplog.text
    with pytest.raises(SettingsError, match="trained with backbone 'resnet18'; this run asks for backbone 'resnet50'"):
        check_against_training(path, backbone="resnet50", image_size=32)
    check_against_training(tmp_path / "missing.pt", backbone="x")


def test_a_released_bare_state_dict_reads_its_meta_from_the_sidecar(tmp_path):
    """The release form (``split_for_release``): bare weights that every MONAI tool loads, and the meta as JSON
    beside them, which the project's readers pick up; a damaged sidecar is named."""
    net = torch.nn.Linear(3, 2)
    save_export(tmp_path / "model.pt", net.state_dict(), {"backbone": "resnet18", "betas": torch.tensor([0.5, 0.25])})
    data, meta_json = split_for_release(tmp_path / "model.pt")
    assert split_for_release(tmp_path / "model.pt") == (data, meta_json)  # the same bytes every time
    out = tmp_path / "release"
    out.mkdir()
    (out / "model.pt").write_bytes(data)
    meta_sidecar(out / "model.pt").write_bytes(meta_json)
    assert meta_sidecar(out / "model.pt").name == "model.meta.json"
    bare = torch.load(out / "model.pt", weights_only=True)
    assert set(bare) == {"weight", "bias"}
    state, meta = read_export(out / "model.pt")
    torch.testing.assert_close(state["weight"], net.weight.detach())
    assert meta == {"backbone": "resnet18", "betas": [0.5, 0.25]} == read_export_meta(out / "model.pt")
    meta_sidecar(out / "model.pt").write_text("[1, 2]")
    with pytest.raises(DataError, match="model.meta.json"):
        read_export_meta(out / "model.pt")
