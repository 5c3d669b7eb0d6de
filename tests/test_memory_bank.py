"""The memory bank leaves out a query's own image and slots never filled; its size follows the data set."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcl_cstp_ext.losses import InfoNCELoss, RelationalKLLoss
from dcl_cstp_ext.methods import MemoryBank, build_method, derive_queue_size, resolve_queue_size


def _bank(keys, indices):
    bank = MemoryBank(size=len(keys), dim=keys.shape[1])
    bank.enqueue(keys, torch.as_tensor(indices))
    return bank


def test_mask_leaves_out_own_image_and_empty_slots():
    bank = MemoryBank(size=5, dim=2)
    assert not bank.negative_mask(torch.tensor([0, 1])).any()  # nothing filled yet: no negative at all
    bank.enqueue(torch.randn(3, 2), torch.tensor([4, 7, 4]))
    mask = bank.negative_mask(torch.tensor([4, 7, 9]))
    assert mask.tolist() == [
        [False, True, False, False, False],
        [True, False, True, False, False],
        [True, True, True, False, False],
    ]
    assert bank.negative_mask(None, batch_size=2).tolist() == [[True, True, True, False, False]] * 2
    assert bank.index.tolist() == [4, 7, 4, -1, -1]


def _nce64(q, k, n, tau):
    q, k, n = (F.normalize(t.double(), dim=-1) for t in (q, k, n))
    pos = torch.exp((q * k).sum() / tau)
    return -torch.log(pos / (pos + torch.exp(n @ q / tau).sum()))


def _kl64(q, k, n, tau):
    q, k, n = (F.normalize(t.double(), dim=-1) for t in (q, k, n))
    p_, q_ = torch.softmax(n @ k / tau, 0), torch.softmax(n @ q / tau, 0)
    return 0.5 * (p_ * (p_ / q_).log()).sum() + 0.5 * (q_ * (q_ / p_).log()).sum()


def test_masked_losses_equal_the_losses_over_each_querys_own_negatives():
    """By hand in float64: query b is scored against the rows its mask keeps, and nothing else."""
    g = torch.Generator().manual_seed(0)
    q, k, n = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(6, 8, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    nce = InfoNCELoss(0.2)(q, k, n, mask)
    kl = RelationalKLLoss(0.2)(q, k, n, mask)
    nce_ref = torch.stack([_nce64(q[b], k[b], n[mask[b]], 0.2) for b in range(3)]).mean()
    kl_ref = torch.stack([_kl64(q[b], k[b], n[mask[b]], 0.2) for b in range(3)]).mean()
    torch.testing.assert_close(nce.double(), nce_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kl.double(), kl_ref, rtol=1e-4, atol=1e-6)
    full = torch.ones(3, 6, dtype=torch.bool)  # a mask that keeps everything is the paper's loss unchanged
    torch.testing.assert_close(InfoNCELoss(0.2)(q, k, n, full), InfoNCELoss(0.2)(q, k, n))
    torch.testing.assert_close(RelationalKLLoss(0.2)(q, k, n, full), RelationalKLLoss(0.2)(q, k, n))


def test_a_query_with_no_negative_left_scores_zero_and_gets_no_nan():
    q = torch.randn(2, 4, requires_grad=True)
    k, n = torch.randn(2, 4), torch.randn(3, 4)
    mask = torch.tensor([[False] * 3, [True, False, True]])
    nce = InfoNCELoss(0.2)(q[:1], k[:1], n, mask[:1])
    kl = RelationalKLLoss(0.2)(q[:1], k[:1], n, mask[:1])
    assert float(nce.detach()) == 0.0 and float(kl.detach()) == 0.0
    total = InfoNCELoss(0.2)(q, k, n, mask) + RelationalKLLoss(0.2)(q, k, n, mask)
    total.backward()
    assert torch.isfinite(q.grad).all() and q.grad[1].abs().sum() > 0


def test_dcl_cstp_step_ignores_the_stale_key_of_the_querys_own_image():
    """Each query of a step is scored against the bank less the keys of its own image (by hand, float64)."""
    torch.manual_seed(0)
    model = build_method("dcl_cstp", backbone="resnet18", in_channels=1, queue_size=8, head_kwargs={"dim": 32})
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(4, 1, 64, 64, generator=g) for _ in range(3)]
    batch = torch.tensor([10, 11, 12, 13])
    owners = torch.tensor([10, 20, 11, 21, 10, 12, 23, 24])  # stale keys of images 10 (twice), 11 and 12
    model.queue.enqueue(torch.randn(8, 512, generator=g), owners)
    seen = {}
    original = model.criterion.forward

    def spy(q2, q3, key, negatives, p2_hat, p3_hat, negative_mask=None):
        seen.update(q2=q2.detach(), key=key, negatives=negatives, mask=negative_mask)
        return original(q2, q3, key, negatives, p2_hat, p3_hat, negative_mask=negative_mask)

    model.criterion.forward = spy
    out = model.training_step(views, batch)
    assert seen["mask"].tolist() == [(owners != b).tolist() for b in batch.tolist()]
    expected = torch.stack([
        _nce64(seen["q2"][b], seen["key"][b], seen["negatives"][owners != batch[b]], 0.2) for b in range(4)
    ]).mean()
    torch.testing.assert_close(out["nce"].double(), expected, rtol=1e-5, atol=1e-6)


def test_first_step_has_no_random_negatives():
    """A fresh bank holds no keys yet: the first step's InfoNCE sees its positive alone, not random vectors."""
    torch.manual_seed(0)
    model = build_method("dcl_cstp", backbone="resnet18", in_channels=1, queue_size=16, head_kwargs={"dim": 32})
    out = model.training_step([torch.rand(4, 1, 64, 64) for _ in range(3)], torch.arange(4))
    assert float(out["nce"]) == 0.0 and float(out["kl"]) == 0.0 and float(out["cs"]) != 0.0


def test_queue_size_rule():
    assert derive_queue_size(704, 512) == 352  # Kvasir-SEG's training split
    assert derive_queue_size(4173, 4096) == 2086  # pediatric chest X-rays
    assert derive_queue_size(20000, 4096) == 4096  # the paper's size is the cap
    assert derive_queue_size(1, 512) == 1
    assert resolve_queue_size(64, 704, 512) == 64 and resolve_queue_size(None, 704, 512) == 352
    with pytest.raises(ValueError):
        derive_queue_size(0, 512)
