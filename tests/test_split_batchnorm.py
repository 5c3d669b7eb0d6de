"""Split BatchNorm, the one-device stand-in for MoCo's shuffling BN, and the momentum stream's memory format."""

from __future__ import annotations

import pytest
import torch

from dcl_cstp_ext.methods import build_method
from dcl_cstp_ext.networks import deinterleave, interleave


@pytest.mark.parametrize("name", ["mocov2", "dcl_cstp"])
def test_training_statistics_are_those_of_each_group(name):
    """In training mode with bn_splits=2 the encoder runs on each half of the batch (BatchNorm statistics per
    group); in eval mode on the whole batch, as a plain encoder."""
    torch.manual_seed(0)
    model = build_method(name, backbone="resnet18", in_channels=1, queue_size=8, bn_splits=2,
                         head_kwargs={"dim": 32}).train()
    x = torch.rand(4, 1, 64, 64) * 2 + 1
    with torch.no_grad():
        maps, pooled = model.encode(x)
        halves = [model.encoder(chunk) for chunk in x.chunk(2)]
        torch.testing.assert_close(pooled, torch.cat([h[1] for h in halves]))
        torch.testing.assert_close(maps, torch.cat([h[0][-1] for h in halves]))
        assert not torch.allclose(pooled, model.encoder(x)[1])  # not the whole batch's statistics
        model.eval()
        torch.testing.assert_close(model.encode(x)[1], model.encoder(x)[1])
    with pytest.raises(ValueError, match="not divisible by bn_splits=2"):
        model.train().encode(torch.rand(3, 1, 64, 64))


def test_interleave_is_inverted():
    x = torch.arange(8.0)
    assert interleave(x, 2).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(deinterleave(interleave(x, 4), 4), x)


def test_momentum_copies_are_channels_last_with_the_same_values_and_keys():
    """The momentum stream runs forward only, in channels-last (faster on the CPU): its weights have the online
    weights' values and names, and the momentum update is exact across the two memory formats."""
    torch.manual_seed(0)
    model = build_method("dcl_cstp", backbone="resnet18", in_channels=1, queue_size=8, momentum=0.0,
                         head_kwargs={"dim": 32})
    conv = model.momentum_encoder.layer1[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert set(model.momentum_encoder.state_dict()) == set(model.encoder.state_dict())
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    model.momentum_update()  # m = 0: the copy becomes the online weights
    for (n, p), q in zip(model.encoder.named_parameters(), model.momentum_encoder.parameters()):
        torch.testing.assert_close(q, p, msg=n)


@pytest.mark.parametrize("name", ["mocov2", "dcl_cstp"])
def test_query_and_key_share_batch_statistics_with_different_images(name):
    """bn_splits=2, batch 4: the query of image 0 is normalised with image 1 (contiguous groups), its key with
    image 2 (interleaved groups). Changing image 1 moves the query of image 0 and not its key."""
    torch.manual_seed(0)
    model = build_method(name, backbone="resnet18", in_channels=1, queue_size=8, bn_splits=2,
                         head_kwargs={"dim": 32}).train()
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
    assert torch.equal(torch.cat(seen), interleave(x, 2))  # one group after the other


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
