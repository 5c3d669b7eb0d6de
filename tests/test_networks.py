"""Encoder, CsTP and heads: shapes, interchangeability, and encoder weights moving between MONAI networks."""

import copy

import pytest
import torch
from monai.networks.nets import FlexibleUNet, resnet50

from dcl_cstp_ext.methods import DCLCsTP
from dcl_cstp_ext.networks import (
    CrossScaleAttention,
    CrossScaleReduction,
    CrossScaleTokenProjection,
    ResNetClassifier,
    ResNetEncoder2D,
    build_projection_head,
    eval_mode,
    extract_encoder_state,
    load_encoder,
    unwrap,
)


@pytest.mark.parametrize("backbone,channels", [("resnet18", (64, 64, 128, 256, 512)), ("resnet34", None)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_encoder_shapes(backbone, channels, in_channels):
    enc = ResNetEncoder2D(backbone, in_channels)
    features, pooled = enc(torch.rand(2, in_channels, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in features] == list(enc.feature_channels)
    assert pooled.shape == (2, enc.out_dim)
    torch.testing.assert_close(pooled, features[-1].mean(dim=(2, 3)))


def test_encoder_rejects_wrong_channels():
    with pytest.raises(ValueError, match="1-channel"):
        ResNetEncoder2D("resnet18", 1)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="in_channels"):
        ResNetEncoder2D("resnet18", 2)
    with pytest.raises(ValueError, match="backbone"):
        ResNetEncoder2D("resnet99", 3)


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (5, 9), (1, 1), (2, 3)])
def test_cross_scale_reduction_halves_odd_and_even(hw):
    red = CrossScaleReduction(16)
    out = red(torch.rand(2, 16, *hw))
    assert out.shape == (2, 16, -(-hw[0] // 2), -(-hw[1] // 2))


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (4, 6), (3, 5), (1, 1)])
@pytest.mark.parametrize("kv_mode", ["cross_scale", "full"])
def test_cstp_output_shape(hw, kv_mode):
    head = CrossScaleTokenProjection(in_channels=32, out_dim=24, dim=16, num_heads=4, kv_mode=kv_mode)
    assert head(torch.rand(3, 32, *hw)).shape == (3, 24)


def test_csa_attends_over_reduced_tokens():
    """CSA's keys come from ceil(H/2)*ceil(W/2) tokens; plain attention's from all H*W."""
    seen = {}
    for mode in ("cross_scale", "full"):
        attn = CrossScaleAttention(16, num_heads=2, kv_mode=mode)
        attn.kv.register_forward_hook(lambda m, i, o, mode=mode: seen.__setitem__(mode, i[0].shape[1]))
        attn(torch.rand(2, 7 * 5, 16), (7, 5))
    assert seen == {"cross_scale": 4 * 3, "full": 35}


def test_cstp_output_depends_on_every_position():
    """Queries are full-resolution tokens: changing one input position changes the output."""
    torch.manual_seed(0)
    head = CrossScaleTokenProjection(8, 8, dim=8, num_heads=2).eval()
    x = torch.rand(2, 8, 5, 5)
    y = x.clone()
    y[:, :, 4, 4] += 1.0
    assert not torch.allclose(head(x), head(y))


@pytest.mark.parametrize("kind", ["cstp", "plain_attention", "mlp"])
def test_heads_are_interchangeable(kind):
    head = build_projection_head(kind, 64, 32, hidden_dim=48, **({} if kind == "mlp" else {"dim": 16}))
    assert head(torch.rand(4, 64, 3, 3)).shape == (4, 32)
    model = DCLCsTP("resnet18", 1, head=kind, queue_size=16, head_kwargs=None if kind == "mlp" else {"dim": 32})
    out = model.training_step([torch.rand(4, 1, 32, 32) for _ in range(3)])
    assert torch.isfinite(out["loss"])


def test_unknown_head():
    with pytest.raises(ValueError, match="unknown head"):
        build_projection_head("transformer", 8, 8)


def _features(module, x):
    module.eval()
    with torch.no_grad():
        return module(x)


def test_encoder_weights_round_trip_into_flexible_unet_and_classifier():
    torch.manual_seed(0)
    pretrain = DCLCsTP("resnet50", 3, queue_size=8)
    for p in pretrain.encoder.parameters():  # make the weights distinguishable from a fresh init
        p.data.add_(0.01 * torch.randn_like(p))
    x = torch.rand(2, 3, 64, 64)
    ref_maps, ref_pooled = _features(pretrain.encoder, x)

    unet = load_encoder(FlexibleUNet(3, 1, "resnet50", spatial_dims=2), pretrain.state_dict())
    for a, b in zip(_features(unet.encoder, x), ref_maps):
        torch.testing.assert_close(a, b)

    clf = load_encoder(ResNetClassifier(4, "resnet50", 3), unet.state_dict())
    torch.testing.assert_close(_features(clf.encoder, x)[1], ref_pooled)

    # MONAI's own resnet50 classifier takes the same keys (its extra key is only fc) when built, like
    # FlexibleUNet's encoder and torchvision, without a bias in the shortcut convolution
    monai_clf = resnet50(spatial_dims=2, n_input_channels=3, num_classes=4, bias_downsample=False)
    missing, unexpected = monai_clf.load_state_dict(extract_encoder_state(clf.state_dict()), strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    back = ResNetEncoder2D("resnet50", 3)
    load_encoder(back, monai_clf.state_dict())
    torch.testing.assert_close(_features(back, x)[1], ref_pooled)


def test_load_encoder_handles_ddp_prefix_and_gpu_style_file(tmp_path):
    enc = ResNetEncoder2D("resnet18", 1)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.encoder.{k}": v for k, v in enc.state_dict().items()}}, path)
    fresh = load_encoder(ResNetEncoder2D("resnet18", 1), path)
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


def test_load_encoder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_encoder(ResNetEncoder2D("resnet18", 1), tmp_path / "nope.pt")
    with pytest.raises(RuntimeError, match="do not fit"):
        load_encoder(ResNetEncoder2D("resnet18", 3), ResNetEncoder2D("resnet18", 1).state_dict())
    with pytest.raises(KeyError, match="no ResNet encoder"):
        extract_encoder_state({"decoder.weight": torch.zeros(1)})


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_encoder_and_classifier_are_torchscript_scriptable(backbone):
    """Model-zoo ckpt_export scripts the network (ResNet-18/34: MONAI's partial() shortcut is replaced)."""
    x = torch.rand(2, 1, 63, 64)
    for model in (ResNetEncoder2D(backbone, 1).eval(), ResNetClassifier(3, backbone, 1).eval()):
        scripted = torch.jit.script(model)
        a, b = scripted(x), model(x)
        torch.testing.assert_close(a[1] if isinstance(a, tuple) else a, b[1] if isinstance(b, tuple) else b)


def test_resnet18_shortcut_matches_monai_and_flexible_unet():
    """Same outputs as MONAI's own shortcut, and the weights still load into FlexibleUNet's ResNet-18 encoder."""
    torch.manual_seed(0)
    enc = ResNetEncoder2D("resnet18", 3).eval()
    unet = load_encoder(FlexibleUNet(3, 1, "resnet18", spatial_dims=2), enc.state_dict()).eval()
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        for a, b in zip(enc(x)[0], unet.encoder(x)):
            torch.testing.assert_close(a, b)


def test_cross_scale_attention_warns_on_a_degenerate_key_value_grid():
    import warnings

    from dcl_cstp_ext.networks import CrossScaleTokenProjection

    head = CrossScaleTokenProjection(64, 16, dim=32)
    with pytest.warns(UserWarning, match="1x1 key/value grid"):
        head(torch.rand(2, 64, 2, 2))  # ResNet C5 at 64 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CrossScaleTokenProjection(64, 16, dim=32)(torch.rand(2, 64, 4, 4))  # C5 at 128 px: a 2x2 grid


def test_fine_tuning_unet_trains_through_the_resnet18_shortcuts():
    """MONAI's ResNet-18 'A' shortcut cuts the identity path's gradient (``out.data``); the training network that
    ``init_encoder`` returns must not, and must give the pre-training encoder's gradients."""
    import functools

    from monai.networks.nets import FlexibleUNet

    from dcl_cstp_ext.networks import ZeroPadShortcut, init_encoder, scriptable_shortcuts

    def grads(net):
        torch.manual_seed(1)
        x = torch.rand(2, 3, 64, 64)
        net.train()
        net(x).square().mean().backward()
        return net.encoder.conv1.weight.grad.clone()

    torch.manual_seed(0)
    monai_net = FlexibleUNet(3, 1, "resnet18", spatial_dims=2)
    trained = init_encoder(copy.deepcopy(monai_net))
    reference = scriptable_shortcuts(copy.deepcopy(monai_net))
    downs = [m.downsample for m in trained.encoder.modules() if getattr(m, "downsample", None) is not None]
    assert downs and not any(isinstance(d, functools.partial) for d in downs)
    assert any(isinstance(d, ZeroPadShortcut) for d in downs)
    g_trained, g_ref, g_monai = grads(trained), grads(reference), grads(monai_net)
    torch.testing.assert_close(g_trained, g_ref)
    assert not torch.allclose(g_monai, g_ref)  # the cut identity path changes the encoder's gradient


def test_unwrap_takes_the_network_out_of_a_data_parallel_wrapper_only():
    net = torch.nn.Linear(2, 2)
    assert unwrap(torch.nn.DataParallel(net)) is net
    assert unwrap(net) is net and unwrap(None) is None
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert unwrap(opt) is opt


def test_eval_mode_restores_every_submodule_flag_also_after_an_error():
    a = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    a[1].eval()  # a frozen BatchNorm inside a training network keeps its own flag
    b = torch.nn.Linear(2, 2).eval()
    with pytest.raises(RuntimeError, match="inside"), eval_mode(a, b):
        assert not any(m.training for m in [*a.modules(), b])
        raise RuntimeError("inside")
    assert [m.training for m in a.modules()] == [True, True, False] and not b.training
