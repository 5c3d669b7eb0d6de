"""Split BatchNorm, the one-device stand-in for MoCo's shuffling BN, and how the momentum methods use it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcl_cstp_ext.methods import build_method
from dcl_cstp_ext.networks import SplitBatchNorm2d, deinterleave, interleave, use_split_batchnorm


def test_training_statistics_are_those_of_each_group():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    split = SplitBatchNorm2d(3, num_splits=2)
    with torch.no_grad():
        split.weight.uniform_(0.5, 2)
        split.bias.uniform_(-1, 1)
    per_group = [nn.BatchNorm2d(3) for _ in range(2)]
    for bn in per_group:
        bn.load_state_dict(split.state_dict())
    out = split(x)
    ref = torch.cat([bn(chunk) for bn, chunk in zip(per_group, x.chunk(2))])
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(split.running_mean, (per_group[0].running_mean + per_group[1].running_mean) / 2)
    torch.testing.assert_close(split.running_var, (per_group[0].running_var + per_group[1].running_var) / 2)
    assert not torch.allclose(out, nn.BatchNorm2d(3).train()(x))  # not the whole batch's statistics
    split.eval()
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(x), plain.eval()(x))
    with pytest.raises(ValueError, match="divisible"):
        split.train()(torch.randn(5, 3, 4, 4))


def test_conversion_keeps_keys_and_interleave_is_inverted():
    enc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    keys = set(enc.state_dict())
    use_split_batchnorm(enc, 4)
    assert set(enc.state_dict()) == keys
    assert sum(isinstance(m, SplitBatchNorm2d) and m.num_splits == 4 for m in enc.modules()) == 2
    x = torch.arange(8.0)
    assert interleave(x, 2).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(deinterleave(interleave(x, 4), 4), x)


@pytest.mark.parametrize("name", ["mocov2", "dcl_cstp"])
def test_query_and_key_share_batch_statistics_with_different_images(name):
    """bn_splits=2, batch 4: the query of image 0 is normalised with image 1 (contiguous groups), its key with
    image 2 (interleaved groups). Changing image 1 moves the query of image 0 and not its key."""
    torch.manual_seed(0)
    model = build_method(name, backbone="resnet18", in_channels=1, queue_size=8, bn_splits=2,
                         head_kwargs={"dim": 32}).train()
    assert isinstance(model.momentum_encoder.bn1, SplitBatchNorm2d) and isinstance(model.encoder.bn1, SplitBatchNorm2d)
    x = torch.rand(4, 1, 96, 96)
    y = x.clone()
    y[1] = torch.rand(1, 96, 96)
    with torch.no_grad():
        k_x, k_y = model.momentum_forward(x), model.momentum_forward(y)
        q_x, q_y = model.encode(x)[1], model.encode(y)[1]
    assert not torch.allclose(q_x[0], q_y[0])
    if name == "mocov2":  # (DCL-CsTP's CsTP ends in a BatchNorm1d over the whole batch, as the paper's head)
        torch.testing.assert_close(k_x[0], k_y[0])
    seen = []
    model.momentum_encoder.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    with torch.no_grad():
        model.momentum_forward(x)
    assert torch.equal(seen[0], interleave(x, 2))


def test_split_count_rule_and_a_bad_batch_is_refused_before_training(tmp_path, demo_data):
    from conftest import run_bundle

    from dcl_cstp_ext.networks import bn_splits_for

    assert [bn_splits_for(b) for b in (128, 64, 32, 48, 16, 4)] == [8, 4, 2, 3, 1, 1]
    with pytest.raises(Exception) as err:
        run_bundle("dcl_pretrain", ["train.json"], method="mocov2", backbone="resnet18", image_size=32, batch_size=6,
                   bn_splits=4, num_workers=0, device="cpu", amp=False, max_epochs=1,
                   dataset_dir=str(demo_data["kvasir_seg"]), output_dir=str(tmp_path / "eval"),
                   ckpt_dir=str(tmp_path / "models"))
    assert "batch_size 6 is not divisible by bn_splits 4" in repr(err.value) + repr(err.value.__cause__)
    assert not (tmp_path / "models" / "checkpoint.pt").exists()
