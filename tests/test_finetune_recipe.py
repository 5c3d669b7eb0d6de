"""The fine-tuning recipe's options (issue #20): encoder lr scale and layer-wise decay, test-time flips, and the
per-initialisation preset overlay."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import FlexibleUNet

from dcl_cstp_ext.engines import FlipTTAInferer, build_lr_scheduler, build_optimizer, finetune_param_groups
from dcl_cstp_ext.networks import ResNetClassifier


def _lr_of(optimizer, network):
    """name -> learning rate of each parameter of ``network``."""
    lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {name: lr[id(p)] for name, p in network.named_parameters()}


def test_default_groups_are_one_group_at_the_base_lr():
    net = FlexibleUNet(3, 1, "resnet18", spatial_dims=2)
    opt = build_optimizer(finetune_param_groups(net), name="adamw", lr=1e-3)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 1e-3
    assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))


def test_encoder_lr_scale_and_layer_decay_per_stage():
    net = FlexibleUNet(3, 1, "resnet18", spatial_dims=2)
    opt = build_optimizer(finetune_param_groups(net, encoder_lr_scale=0.1, layer_decay=0.5), name="adamw", lr=1e-3)
    lr = _lr_of(opt, net)
    assert lr["decoder.blocks.0.convs.conv_0.conv.weight"] == pytest.approx(1e-3)
    assert lr["segmentation_head.0.weight"] == pytest.approx(1e-3)
    assert lr["encoder.layer4.0.conv1.weight"] == pytest.approx(1e-4 * 0.5)
    assert lr["encoder.layer1.0.conv1.weight"] == pytest.approx(1e-4 * 0.5**4)
    assert lr["encoder.conv1.weight"] == pytest.approx(1e-4 * 0.5**5)
    assert lr["encoder.bn1.weight"] == pytest.approx(1e-4 * 0.5**5)
    # every parameter in exactly one group
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_scaled_groups_follow_the_schedule_in_proportion():
    net = ResNetClassifier(num_classes=3, backbone="resnet18", in_channels=1)
    opt = build_optimizer(finetune_param_groups(net, encoder_lr_scale=0.25), name="adamw", lr=1e-3)
    sched = build_lr_scheduler(opt, "cosine", max_epochs=6, warmup_epochs=2)
    for _ in range(3):
        sched.step()
        head, enc = (_lr_of(opt, net)[k] for k in ("fc.weight", "encoder.layer2.0.conv1.weight"))
        assert enc == pytest.approx(0.25 * head)


def test_frozen_encoder_parameters_are_left_out():
    net = FlexibleUNet(3, 1, "resnet18", spatial_dims=2)
    for p in net.encoder.parameters():
        p.requires_grad_(False)
    opt = build_optimizer(finetune_param_groups(net, encoder_lr_scale=0.1), name="adamw", lr=1e-3)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {
        id(p) for p in net.parameters() if p.requires_grad
    }


@pytest.mark.parametrize("kw", [{"encoder_lr_scale": 0.0}, {"layer_decay": 1.5}, {"layer_decay": 0.0}])
def test_bad_factors_are_refused(kw):
    with pytest.raises(ValueError, match="encoder_lr_scale|layer_decay"):
        finetune_param_groups(FlexibleUNet(3, 1, "resnet18", spatial_dims=2), **kw)


def test_flip_tta_averages_flipped_back_dense_outputs():
    x = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    # a network that is not flip-equivariant: its output depends on position
    ramp = torch.linspace(0, 1, 6).view(1, 1, 1, 6)

    def net(t):
        return t * ramp

    out = FlipTTAInferer("h")(x, net)
    expected = (x * ramp + torch.flip(torch.flip(x, (-1,)) * ramp, (-1,))) / 2
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(FlipTTAInferer("none")(x, net), x * ramp)
    hv = FlipTTAInferer("hv")(x, lambda t: t * 2)  # an equivariant network: TTA changes nothing
    torch.testing.assert_close(hv, x * 2)


def test_flip_tta_averages_class_logits_without_flipping_them():
    x = torch.randn(3, 1, 8, 8)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    out = FlipTTAInferer("hv")(x, net)
    passes = [net(x), net(torch.flip(x, (-1,))), net(torch.flip(x, (-2,))), net(torch.flip(x, (-2, -1)))]
    torch.testing.assert_close(out, sum(passes) / 4)


def test_unknown_flips_are_refused():
    with pytest.raises(ValueError, match="unknown test-time flips 'x'"):
        FlipTTAInferer("x")


def test_segmentation_crops_come_from_the_larger_cache(tmp_path, demo_data):
    """``cache_size`` > ``image_size``: the training images are cached larger and the random resized crop cuts
    ``image_size`` views from them (as pre-training does); validation stays at ``image_size``."""
    from conftest import BUNDLES
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLES / "kvasir_seg" / "configs" / "train.json")])
    parser.update({"bundle_root": str(BUNDLES / "kvasir_seg"), "dataset_dir": str(demo_data["kvasir_seg"]),
                   "output_dir": str(tmp_path), "image_size": 32, "cache_size": 64, "num_workers": 0})
    cached, view = parser.get_parsed_content("train#cache")[0], parser.get_parsed_content("train#dataset")[0]
    assert tuple(cached["image"].shape) == (3, 64, 64) and tuple(cached["label"].shape) == (1, 64, 64)
    assert tuple(view["image"].shape) == (3, 32, 32) and set(view["label"].unique().tolist()) <= {0.0, 1.0}
    assert tuple(parser.get_parsed_content("validate#dataset")[0]["image"].shape) == (3, 32, 32)
