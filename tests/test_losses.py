"""Tests of dcl_cstp_ext.losses against direct float64 formulas, hand-computed cases, gradients and autocast."""

from __future__ import annotations

import math

import pytest
import torch

from dcl_cstp_ext.losses import (
    DCLCsTPLoss,
    InfoNCELoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    RelationalKLLoss,
    SymmetricNegativeCosineLoss,
)

B, D, N = 4, 8, 16
TAU = 0.2


def rand(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(requires_grad)


# ----------------------------------------------------------------------------------------------------------
# direct float64 references, written with explicit loops (independent of the code under test)
# ----------------------------------------------------------------------------------------------------------
def _unit(v):
    v = [float(x) for x in v]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def ref_info_nce(q, k, n, tau):
    total = 0.0
    for b in range(q.shape[0]):
        qb, kb = _unit(q[b]), _unit(k[b])
        pos = math.exp(_dot(qb, kb) / tau)
        neg = sum(math.exp(_dot(qb, _unit(n[i])) / tau) for i in range(n.shape[0]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [x / s for x in e]


def ref_relational_kl(q, k, n, tau):
    total = 0.0
    for b in range(q.shape[0]):
        qb, kb = _unit(q[b]), _unit(k[b])
        negs = [_unit(n[j]) for j in range(n.shape[0])]
        p_dist = _softmax([_dot(kb, nj) / tau for nj in negs])
        q_dist = _softmax([_dot(qb, nj) / tau for nj in negs])
        kl_pq = sum(p * math.log(p / q_) for p, q_ in zip(p_dist, q_dist))
        kl_qp = sum(q_ * math.log(q_ / p) for p, q_ in zip(p_dist, q_dist))
        total += 0.5 * kl_pq + 0.5 * kl_qp
    return total / q.shape[0]


def ref_neg_cos(p, z):
    return -sum(_dot(_unit(p[b]), _unit(z[b])) for b in range(p.shape[0])) / p.shape[0]


def ref_nt_xent(za, zb, tau):
    bsz = za.shape[0]
    z = [_unit(za[b]) for b in range(bsz)] + [_unit(zb[b]) for b in range(bsz)]
    total = 0.0
    for i in range(2 * bsz):
        pos = (i + bsz) % (2 * bsz)
        num = math.exp(_dot(z[i], z[pos]) / tau)
        den = sum(math.exp(_dot(z[i], z[k]) / tau) for k in range(2 * bsz) if k != i)
        total += -math.log(num / den)
    return total / (2 * bsz)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------
# InfoNCE
# ----------------------------------------------------------------------------------------------------------
def test_info_nce_matches_float64_formula():
    q, k, n = rand(B, D, seed=1), rand(B, D, seed=2), rand(N, D, seed=3)
    got = InfoNCELoss(TAU)(q, k, n)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref_info_nce(q.double(), k.double(), n.double(), TAU), rel=1e-5)


def test_info_nce_hand_computed():
    # q = p = e1 (unnormalised on input), negatives e2 and -e1, tau = 1:
    # L = -log(e / (e + 1 + e^-1)) = log(1 + e^-1 + e^-2)
    q, k, n = t([3.0, 0.0]), t([0.5, 0.0]), t([0.0, 2.0], [-1.0, 0.0])
    got = InfoNCELoss(temperature=1.0)(q, k, n)
    assert got.item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-6)


def test_info_nce_in_batch_negatives_when_none():
    q, k = rand(B, D, seed=1), rand(B, D, seed=2)
    got = InfoNCELoss(TAU)(q, k, None)
    # sample b: positive k_b, negatives the other keys of the batch
    expected = 0.0
    for b in range(B):
        others = torch.cat([k[:b], k[b + 1 :]]).double()
        expected += ref_info_nce(q[b : b + 1].double(), k[b : b + 1].double(), others, TAU)
    assert got.item() == pytest.approx(expected / B, rel=1e-5)


def test_info_nce_gradients():
    q, k, n = (
        rand(B, D, seed=1, requires_grad=True),
        rand(B, D, seed=2, requires_grad=True),
        rand(N, D, seed=3, requires_grad=True),
    )
    InfoNCELoss(TAU)(q, k, n).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and n.grad is None


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError):
        InfoNCELoss()(rand(B, D), rand(B, D + 1), rand(N, D))
    with pytest.raises(ValueError):
        InfoNCELoss()(rand(B, D), rand(B, D), rand(N, D + 1))


# ----------------------------------------------------------------------------------------------------------
# relational KL
# ----------------------------------------------------------------------------------------------------------
def test_relational_kl_matches_float64_formula():
    q, k, n = rand(B, D, seed=4), rand(B, D, seed=5), rand(N, D, seed=6)
    got = RelationalKLLoss(TAU)(q, k, n)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref_relational_kl(q.double(), k.double(), n.double(), TAU), rel=1e-4)


def test_relational_kl_hand_computed():
    # q = e1, p = e2, negatives e1, e2, tau = 1: Q = (s, 1-s), P = (1-s, s) with s = e / (1 + e);
    # KL(P||Q) = KL(Q||P) = (2s - 1) log(s / (1 - s)) = (e - 1) / (e + 1) = tanh(1/2)
    q, k, n = t([2.0, 0.0]), t([0.0, 1.0]), t([1.0, 0.0], [0.0, 3.0])
    got = RelationalKLLoss(temperature=1.0)(q, k, n)
    assert got.item() == pytest.approx(math.tanh(0.5), rel=1e-6)


def test_relational_kl_zero_iff_equal_and_symmetric():
    q, k, n = rand(B, D, seed=7), rand(B, D, seed=8), rand(N, D, seed=9)
    loss = RelationalKLLoss(TAU)
    assert loss(q, q.clone(), n).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(q, 2.5 * q, n).item() == pytest.approx(0.0, abs=1e-6)  # same direction after normalisation
    assert loss(q, k, n).item() > 1e-3
    assert loss(q, k, n).item() == pytest.approx(loss(k, q, n).item(), rel=1e-6)


def test_relational_kl_gradients():
    q, k, n = (
        rand(B, D, seed=4, requires_grad=True),
        rand(B, D, seed=5, requires_grad=True),
        rand(N, D, seed=6, requires_grad=True),
    )
    RelationalKLLoss(TAU)(q, k, n).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and n.grad is None


def test_relational_kl_needs_negatives():
    with pytest.raises(ValueError):
        RelationalKLLoss()(rand(B, D), rand(B, D), None)
    with pytest.raises(ValueError):
        RelationalKLLoss()(rand(B, D), rand(B, D), torch.zeros(0, D))


# ----------------------------------------------------------------------------------------------------------
# negative cosine
# ----------------------------------------------------------------------------------------------------------
def test_negative_cosine_matches_float64_formula():
    p, z = rand(B, D, seed=10), rand(B, D, seed=11)
    got = NegativeCosineSimilarity()(p, z)
    assert got.item() == pytest.approx(ref_neg_cos(p.double(), z.double()), rel=1e-5)


def test_symmetric_negative_cosine_matches_float64_formula():
    pa, zb, pb, za = (rand(B, D, seed=s) for s in (12, 13, 14, 15))
    got = SymmetricNegativeCosineLoss()(pa, zb, pb, za)
    expected = 0.5 * ref_neg_cos(pa.double(), zb.double()) + 0.5 * ref_neg_cos(pb.double(), za.double())
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_negative_cosine_hand_computed():
    # cos(e1, (1,1)) = 1/sqrt(2); cos((0,2), -e1) = 0
    assert NegativeCosineSimilarity()(t([1.0, 0.0]), t([1.0, 1.0])).item() == pytest.approx(-1 / math.sqrt(2))
    got = SymmetricNegativeCosineLoss()(t([1.0, 0.0]), t([1.0, 1.0]), t([0.0, 2.0]), t([-1.0, 0.0]))
    assert got.item() == pytest.approx(-0.5 / math.sqrt(2), rel=1e-6)
    assert NegativeCosineSimilarity()(t([1.0, 2.0]), t([-3.0, -6.0])).item() == pytest.approx(1.0)


def test_negative_cosine_gradients():
    pa, zb, pb, za = (rand(B, D, seed=s, requires_grad=True) for s in (12, 13, 14, 15))
    SymmetricNegativeCosineLoss()(pa, zb, pb, za).backward()
    assert pa.grad is not None and pa.grad.abs().sum() > 0
    assert pb.grad is not None and pb.grad.abs().sum() > 0
    assert zb.grad is None and za.grad is None


# ----------------------------------------------------------------------------------------------------------
# NT-Xent
# ----------------------------------------------------------------------------------------------------------
def test_nt_xent_matches_float64_formula():
    za, zb = rand(B, D, seed=16), rand(B, D, seed=17)
    got = NTXentLoss(TAU)(za, zb)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref_nt_xent(za.double(), zb.double(), TAU), rel=1e-5)


def test_nt_xent_hand_computed():
    # z_a = z_b = (e1, e2), tau = 1: each sample has s_pos = 1, negatives with s = 0, 1, 0 (its in-view
    # neighbour and the other view's two rows): L = -log(e / (e + 2)) = log(1 + 2/e)
    za = t([1.0, 0.0], [0.0, 1.0])
    got = NTXentLoss(temperature=1.0)(za, za.clone() * 3)
    assert got.item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)
    # B = 1: no negatives at all, the loss is 0
    assert NTXentLoss(temperature=1.0)(t([1.0, 0.0]), t([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-7)


def test_nt_xent_agrees_with_monai_contrastive_loss():
    from monai.losses import ContrastiveLoss

    za, zb = rand(B, D, seed=18), rand(B, D, seed=19)
    ours = NTXentLoss(0.5)(za, zb)
    theirs = ContrastiveLoss(temperature=0.5)(za, zb)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_nt_xent_gradients_reach_both_views():
    za, zb = rand(B, D, seed=16, requires_grad=True), rand(B, D, seed=17, requires_grad=True)
    NTXentLoss(TAU)(za, zb).backward()
    assert za.grad.abs().sum() > 0 and zb.grad.abs().sum() > 0
    assert torch.isfinite(za.grad).all() and torch.isfinite(zb.grad).all()


def test_nt_xent_small_temperature_is_finite():
    za, zb = rand(B, D, seed=16), rand(B, D, seed=17)
    assert torch.isfinite(NTXentLoss(temperature=1e-3)(za, zb))


# ----------------------------------------------------------------------------------------------------------
# DCL-CsTP total
# ----------------------------------------------------------------------------------------------------------
def _dcl_inputs(requires_grad=False):
    return {
        "q2": rand(B, D, seed=20, requires_grad=requires_grad),
        "q3": rand(B, D, seed=21, requires_grad=requires_grad),
        "key": rand(B, D, seed=22, requires_grad=requires_grad),
        "negatives": rand(N, D, seed=23, requires_grad=requires_grad),
        "p2_hat": rand(B, D, seed=24, requires_grad=requires_grad),
        "p3_hat": rand(B, D, seed=25, requires_grad=requires_grad),
    }


def test_dcl_cstp_is_weighted_sum_of_terms():
    x = {k: v.double() for k, v in _dcl_inputs().items()}
    out = DCLCsTPLoss(temperature=TAU, alpha=0.3, beta=0.7)(**_dcl_inputs())
    assert set(out) == {"loss", "nce", "kl", "cs"}
    nce = ref_info_nce(x["q2"], x["key"], x["negatives"], TAU)
    kl = ref_relational_kl(x["q2"], x["key"], x["negatives"], TAU)
    cs = 0.5 * ref_neg_cos(x["q2"], x["p3_hat"]) + 0.5 * ref_neg_cos(x["q3"], x["p2_hat"])
    assert out["nce"].item() == pytest.approx(nce, rel=1e-5)
    assert out["kl"].item() == pytest.approx(kl, rel=1e-4)
    assert out["cs"].item() == pytest.approx(cs, rel=1e-5)
    assert out["loss"].item() == pytest.approx(nce + 0.3 * kl + 0.7 * cs, rel=1e-5)
    for name in ("nce", "kl", "cs"):
        assert not out[name].requires_grad


def test_dcl_cstp_other_weights():
    x = _dcl_inputs()
    out = DCLCsTPLoss(temperature=TAU, alpha=2.0, beta=0.1)(**x)
    expected = out["nce"] + 2.0 * out["kl"] + 0.1 * out["cs"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_dcl_cstp_ablation_without_global():
    x = _dcl_inputs()
    full = DCLCsTPLoss(temperature=TAU)(**x)
    out = DCLCsTPLoss(temperature=TAU, use_global=False)(**{**x, "key": None, "negatives": None})
    assert out["nce"].item() == 0.0 and out["kl"].item() == 0.0
    assert out["cs"].item() == pytest.approx(full["cs"].item())
    assert out["loss"].item() == pytest.approx(0.7 * full["cs"].item(), rel=1e-6)


def test_dcl_cstp_ablation_without_local():
    x = _dcl_inputs()
    full = DCLCsTPLoss(temperature=TAU)(**x)
    out = DCLCsTPLoss(temperature=TAU, use_local=False)(**{**x, "q3": None, "p2_hat": None, "p3_hat": None})
    assert out["cs"].item() == 0.0
    assert out["nce"].item() == pytest.approx(full["nce"].item())
    assert out["loss"].item() == pytest.approx(full["nce"].item() + 0.3 * full["kl"].item(), rel=1e-6)


def test_dcl_cstp_missing_inputs_raise():
    x = _dcl_inputs()
    with pytest.raises(ValueError):
        DCLCsTPLoss()(**{**x, "negatives": None})
    with pytest.raises(ValueError):
        DCLCsTPLoss()(**{**x, "p3_hat": None})
    with pytest.raises(ValueError):
        DCLCsTPLoss(use_global=False, use_local=False)


def test_dcl_cstp_gradients():
    x = _dcl_inputs(requires_grad=True)
    DCLCsTPLoss(temperature=TAU)(**x)["loss"].backward()
    assert x["q2"].grad.abs().sum() > 0 and x["q3"].grad.abs().sum() > 0
    for name in ("key", "negatives", "p2_hat", "p3_hat"):
        assert x[name].grad is None, name
    # q2 gets the gradient of both streams
    q2 = x["q2"].detach().clone().requires_grad_(True)
    loss_global = InfoNCELoss(TAU)(q2, x["key"], x["negatives"]) + 0.3 * RelationalKLLoss(TAU)(
        q2, x["key"], x["negatives"]
    )
    loss_local = 0.7 * 0.5 * NegativeCosineSimilarity()(q2, x["p3_hat"])
    (loss_global + loss_local).backward()
    torch.testing.assert_close(x["q2"].grad, q2.grad)


# ----------------------------------------------------------------------------------------------------------
# autocast
# ----------------------------------------------------------------------------------------------------------
CASES = [
    ("info_nce", lambda a, b, c, d, n: InfoNCELoss(TAU)(a, b, n)),
    ("relational_kl", lambda a, b, c, d, n: RelationalKLLoss(TAU)(a, b, n)),
    ("neg_cos", lambda a, b, c, d, n: NegativeCosineSimilarity()(a, b)),
    ("sym_neg_cos", lambda a, b, c, d, n: SymmetricNegativeCosineLoss()(a, b, c, d)),
    ("nt_xent", lambda a, b, c, d, n: NTXentLoss(TAU)(a, b)),
    ("dcl_cstp", lambda a, b, c, d, n: DCLCsTPLoss(TAU)(a, c, b, n, d, b)["loss"]),
]


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_autocast_bfloat16(name, fn):
    torch.manual_seed(0)
    layer = torch.nn.Linear(D, D)
    raw = [rand(B, D, seed=30 + i) for i in range(4)] + [rand(N, D, seed=40)]
    fp32_inputs = [layer(x) for x in raw]
    fp32_value = fn(*fp32_inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_inputs = [layer(x) for x in raw]
        assert all(x.dtype == torch.bfloat16 for x in bf16_inputs)
        value = fn(*bf16_inputs)
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    # logits are computed in float32 even under autocast: same value as the float32 path on the same inputs
    exact = fn(*[x.float() for x in bf16_inputs])
    assert value.item() == pytest.approx(exact.item(), rel=1e-5, abs=1e-6)
    # and close to the full float32 value (the difference comes from the bf16 inputs only)
    assert value.item() == pytest.approx(fp32_value.item(), rel=5e-2, abs=5e-2)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
