"""The optional fast paths of the training configs (issue #25), on the CPU: the optimiser implementations give the
same updates as torch's default, ``compile`` keeps the weights' names and the outputs, and the bundle settings
reach the objects they set. Their speed is measured by ``dcl-cstp bench pretrain`` (README, "Fast paths")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcl_cstp_ext.engines import build_optimizer
from dcl_cstp_ext.networks import to_device


def _net():
    """A conv-BN-linear net; the convolution without a bias, as in a ResNet (a bias before BatchNorm gets a gradient
    of rounding noise, which Adam's normalised step turns into +-lr: no two implementations would agree)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, 2))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
@pytest.mark.parametrize("impl", ["for_loop", "foreach", "fused"])
def test_each_optimizer_impl_makes_the_same_steps_as_the_default(name, impl):
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    nets = {}
    for which in (None, impl):
        net = _net()
        opt = build_optimizer(net.parameters(), name, lr=0.1, weight_decay=1e-4, impl=which)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        nets[which] = net
    for a, b in zip(nets[None].parameters(), nets[impl].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if impl == "fused":
        assert build_optimizer(_net().parameters(), name, impl=impl).defaults["fused"] is True


def test_an_unknown_optimizer_impl_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer impl 'fast'"):
        build_optimizer(_net().parameters(), impl="fast")


def test_compile_keeps_the_weights_names_and_the_outputs():
    x = torch.rand(2, 3, 8, 8)
    plain = to_device(_net().eval(), "cpu")
    compiled = to_device(_net().eval(), "cpu", compile=True)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints and exports are unchanged
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), rtol=1e-4, atol=1e-5)


def test_the_bundle_settings_reach_the_network_and_the_optimizer(demo_data, tmp_path):
    from conftest import BUNDLES
    from monai.bundle import ConfigParser

    root = BUNDLES / "dcl_pretrain"
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    parser.update({"bundle_root": str(root), "dataset_dir": str(demo_data["kvasir_seg"]), "device": "cpu",
                   "backbone": "resnet18", "output_dir": str(tmp_path), "ckpt_dir": str(tmp_path / "models"),
                   "optimizer_impl": "foreach", "compile": True})
    opt = parser.get_parsed_content("optimizer")
    assert opt.defaults["foreach"] is True
    net = parser.get_parsed_content("network")
    assert net._compiled_call_impl is not None  # nn.Module.compile: compiled in place
    assert parser.get("initialize")[3] == "$setattr(torch.backends.cudnn, 'benchmark', @cudnn_benchmark)"
