"""Pre-training methods: gradients, momentum, memory bank, cost of a step, and that they learn."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcl_cstp_ext.engines.step import ssl_train_step
from dcl_cstp_ext.methods import METHODS, DCLCsTP, MemoryBank, MomentumMethod, bank_gap, build_method, collapse_std

ALL = sorted(METHODS)


def _views(n=3, b=4, c=1, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, s, s, generator=g) for _ in range(n)]


def _small(name, **kw):
    torch.manual_seed(0)
    return build_method(name, backbone="resnet18", in_channels=1, queue_size=32, **kw)


def _filled(model):
    """``model`` with its memory bank (if any) full of random keys of no known image, as after the first steps."""
    if getattr(model, "queue", None) is not None:
        model.queue.enqueue(torch.randn(model.queue.size, model.queue.bank.shape[1]))
    return model


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_trainable_parameters_only(name):
    model = _small(name)
    pooled_grads = []

    def watch(module, inputs, output):  # the pooled feature is a stop-gradient target: nothing may flow into it
        if output.requires_grad:
            output.register_hook(lambda g: pooled_grads.append(g))

    model.encoder.avgpool.register_forward_hook(watch)
    out = model.training_step(_views())
    out["loss"].backward()
    for pname, p in model.named_parameters():
        if pname.startswith("momentum_"):
            assert not p.requires_grad and p.grad is None, pname
        else:
            assert p.requires_grad and p.grad is not None, f"{name}: {pname} got no gradient"
    assert not pooled_grads, "gradient reached the stop-gradient pooled targets"
    if isinstance(model, MomentumMethod) and model.queue is not None:
        assert model.queue.bank.grad is None and not model.queue.bank.requires_grad


def test_dcl_cstp_step_costs_two_online_and_one_momentum_forward():
    model = _small("dcl_cstp")
    calls = {"online": 0, "momentum": 0}
    model.encoder.register_forward_hook(lambda *a: calls.__setitem__("online", calls["online"] + 1))
    model.momentum_encoder.register_forward_hook(lambda *a: calls.__setitem__("momentum", calls["momentum"] + 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ssl_train_step(model, opt, _views())
    assert calls == {"online": 2, "momentum": 1}


def test_dcl_cstp_query_is_shared_by_both_streams():
    """q2 feeds L_NCE, L_KL and L_CS: the loss equals the criterion applied to one q2 tensor."""
    model = _small("dcl_cstp")
    captured = {}
    original = model.criterion.forward

    def spy(q2, q3, key, negatives, p2_hat, p3_hat, negative_mask=None):
        captured.update(q2=q2, p2_hat=p2_hat, p3_hat=p3_hat)
        return original(q2, q3, key, negatives, p2_hat, p3_hat, negative_mask=negative_mask)

    model.criterion.forward = spy
    model.training_step(_views())
    assert captured["q2"].requires_grad and not captured["p2_hat"].requires_grad
    assert captured["p2_hat"].shape == captured["q2"].shape == (4, model.feature_dim)


def test_momentum_update_formula():
    model = _small("dcl_cstp", momentum=0.9)
    online = [p.detach().clone() for p in model.encoder.parameters()]
    before = [p.detach().clone() for p in model.momentum_encoder.parameters()]
    for p in model.encoder.parameters():
        p.data.add_(1.0)
    model.momentum_update()
    for w, wm0, wm in zip(online, before, model.momentum_encoder.parameters()):
        torch.testing.assert_close(wm, 0.9 * wm0 + 0.1 * (w + 1.0))


def test_momentum_copies_start_equal_and_follow_after_a_step():
    model = _small("mocov2")
    for a, b in zip(model.encoder.parameters(), model.momentum_encoder.parameters()):
        assert torch.equal(a, b)
    ssl_train_step(model, torch.optim.SGD(model.parameters(), lr=0.5), _views(2))
    moved = [not torch.equal(a, b) for a, b in zip(model.encoder.parameters(), model.momentum_encoder.parameters())]
    assert any(moved), "momentum encoder is not distinct from the online encoder after a step"
    assert any(not torch.equal(a, b) for a, b in zip(model.head.parameters(), model.momentum_head.parameters()))


def test_queue_fifo_and_wrap_around():
    bank = MemoryBank(size=5, dim=2)
    keys = F.normalize(torch.arange(1, 15, dtype=torch.float).reshape(7, 2), dim=1)
    bank.enqueue(keys[:3])
    torch.testing.assert_close(bank.bank[:3], keys[:3])
    assert int(bank.ptr) == 3
    bank.enqueue(keys[3:7])  # rows 3, 4 then wrap to 0, 1
    torch.testing.assert_close(bank.bank[3:5], keys[3:5])
    torch.testing.assert_close(bank.bank[0:2], keys[5:7])
    torch.testing.assert_close(bank.bank[2], keys[2])
    assert int(bank.ptr) == 2


def test_queue_keeps_newest_when_batch_exceeds_size_and_normalises():
    bank = MemoryBank(size=3, dim=2)
    keys = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    bank.enqueue(keys)
    expected = F.normalize(keys[1:], dim=1)
    assert {tuple(r) for r in bank.bank.tolist()} == {tuple(r) for r in expected.tolist()}


def test_queue_and_pointer_round_trip_through_state_dict(tmp_path):
    model = _small("dcl_cstp")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(3):
        ssl_train_step(model, opt, _views())
    assert int(model.queue.ptr) == 12
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    other = _small("dcl_cstp")
    assert not torch.equal(other.queue.bank, model.queue.bank)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(other.queue.bank, model.queue.bank) and int(other.queue.ptr) == 12
    assert "queue.bank" in model.state_dict() and "queue.ptr" in model.state_dict()


def test_step_enqueues_the_momentum_keys():
    model = _small("dcl_cstp")
    views = _views()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no change to weights: keys are reproducible
    with torch.no_grad():
        expected = model.momentum_head(model.encode(views[0], model.momentum_encoder)[0])
    ssl_train_step(model, opt, views, indices=torch.tensor([7, 3, 5, 1]))
    torch.testing.assert_close(model.queue.bank[:4], F.normalize(expected, dim=1), atol=1e-5, rtol=1e-4)
    assert model.queue.index[:4].tolist() == [7, 3, 5, 1] and (model.queue.index[4:] == -1).all()


def _objective(model, views):
    """Loss at the current weights with the queue frozen (no side effects)."""
    state = copy.deepcopy(model.state_dict())
    model.train()
    with torch.no_grad():
        loss = float(model.training_step(views)["loss"])
    model.load_state_dict(state)  # undo BN running-stat updates
    model._pending = None
    return loss


@pytest.mark.parametrize("name", ALL)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name):
    model = _filled(_small(name))
    views = _views(b=8)
    queue_state = copy.deepcopy(model.queue.state_dict()) if getattr(model, "queue", None) is not None else None
    before = _objective(model, views)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        ssl_train_step(model, opt, views)
    if queue_state is not None:  # compare the same objective: same negatives
        model.queue.load_state_dict(queue_state)
    after = _objective(model, views)
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


def test_collapse_signal():
    assert collapse_std(torch.ones(16, 8)) < 1e-3
    assert 0.8 < collapse_std(torch.randn(512, 64)) < 1.2


def test_bank_gap_by_hand_and_in_every_momentum_method():
    e = torch.eye(4)
    q = torch.stack([e[0], e[0] + e[1]])  # cos(q0, q1) = 1/sqrt(2)
    keys = q.clone()  # key j of image j: each query meets the other image's key
    bank = torch.stack([e[2], e[0]])  # cos with q0: 0, 1; with q1: 0, 1/sqrt(2)
    r = 2 ** -0.5
    fresh, stale = (r + r) / 2, ((0 + 1) / 2 + (0 + r) / 2) / 2
    assert float(bank_gap(q, keys, bank)) == pytest.approx(fresh - stale)
    mask = torch.tensor([[True, False], [False, False]])  # q1 has no negative: left out; q0 uses only e2
    assert float(bank_gap(q, keys, bank, mask)) == pytest.approx(r - 0.0)
    assert float(bank_gap(q, keys, bank, torch.zeros(2, 2, dtype=torch.bool))) == 0.0  # the empty bank
    g = torch.Generator().manual_seed(0)  # collapsed keys round a common direction that drifts: the bank lags
    centre = torch.randn(16, generator=g)
    now = centre + 0.2 * torch.randn(64, 16, generator=g)
    then = centre + torch.randn(16, generator=g) + 0.2 * torch.randn(64, 16, generator=g)
    assert float(bank_gap(now, now, then)) > 0.1
    assert abs(float(bank_gap(now[:32], now[:32], now[32:]))) < 0.02  # a bank of today's keys: ~0
    for name in ("mocov2", "dcl_cstp", "centred_target"):
        out = _filled(_small(name)).training_step(_views())
        assert "bank_gap" in out and torch.isfinite(out["bank_gap"]), name
    assert "bank_gap" not in _filled(_small("no_global")).training_step(_views())


def test_build_method_rejects_misspelt_argument_and_drops_unused():
    with pytest.raises(TypeError, match="quueue_size"):
        build_method("dcl_cstp", quueue_size=5)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("byol")
    model = build_method("simsiam", backbone="resnet18", in_channels=1, queue_size=7, alpha=0.1)
    assert model.num_views == 2


def test_ablations_switch_the_right_parts():
    assert not hasattr(_small("no_global"), "momentum_encoder")
    assert _small("no_global").queue is None
    nl = _filled(_small("no_local"))
    out = nl.training_step(_views())
    assert float(out["cs"]) == 0.0 and float(out["nce"]) > 0
    assert type(_small("mlp_head").head).__name__ == "MLPHead"
    assert _small("plain_attention").head.attn.kv_mode == "full"
    with pytest.raises(ValueError):
        DCLCsTP("resnet18", 1, use_global=False, use_local=False)


def test_too_few_views():
    with pytest.raises(ValueError, match="needs 3 views"):
        _small("dcl_cstp").training_step(_views(n=2))


def test_mocov2_at_its_papers_settings():
    """No BatchNorm in the projector; the symmetric loss over both views, each query against the other view's key;
    two online and two momentum passes; both keys enqueued with their images' indices."""
    model = _filled(_small("mocov2"))
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.head.modules())
    calls = {"online": 0, "momentum": 0}
    model.encoder.register_forward_hook(lambda *a: calls.__setitem__("online", calls["online"] + 1))
    model.momentum_encoder.register_forward_hook(lambda *a: calls.__setitem__("momentum", calls["momentum"] + 1))
    views = _views(n=2)
    with torch.no_grad():
        q1, q2 = model.head(model.encode(views[0])[0]), model.head(model.encode(views[1])[0])
        k1, k2 = model.momentum_forward(views[0]), model.momentum_forward(views[1])
        out = model.training_step(views, torch.arange(4))
    mask = model.queue.negative_mask(torch.arange(4))
    expected = 0.5 * (model.criterion(q1, k2, model.queue.negatives, mask) + model.criterion(q2, k1, model.queue.negatives, mask))
    torch.testing.assert_close(out["loss"], expected)
    assert calls == {"online": 4, "momentum": 4}  # 2 + 2 here, 2 + 2 in the step
    model.on_train_batch_end()
    assert model.queue.index[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # the counterfactual projector (MoCo v3's BatchNorms): its output has no common direction over the batch
    bn = build_method("mocov2", backbone="resnet18", in_channels=1, queue_size=16, projector_bn=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in bn.head.modules()) == 2
    z = bn.head(torch.rand(8, bn.stage_channels) + 5.0)
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)


def test_simsiam_predictor_keeps_its_learning_rate():
    from dcl_cstp_ext.engines import build_lr_scheduler, build_optimizer, method_lr

    model = _small("simsiam")
    lr = method_lr("simsiam", 32)
    assert lr == pytest.approx(0.5 * 32 / 256)  # solo-learn's small-data rate (METHOD.md)
    opt = build_optimizer(model.param_groups(), lr=lr)
    sched = build_lr_scheduler(opt, "cosine", max_epochs=4, warmup_epochs=1)
    assert [g.get("fix_lr", False) for g in opt.param_groups] == [False, True]
    lrs = []
    for _ in range(3):
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    assert all(pred == pytest.approx(lr) for _, pred in lrs)
    assert lrs[-1][0] < lrs[0][0] < lr + 1e-12  # the rest follows the cosine schedule
    state = sched.state_dict()
    again = build_lr_scheduler(opt, "cosine", max_epochs=4, warmup_epochs=1)
    again.load_state_dict(state)
    assert opt.param_groups[1]["lr"] == pytest.approx(lr)


def test_learning_rates_scale_with_the_batch_by_each_papers_rule():
    from dcl_cstp_ext.engines import method_lr

    assert method_lr("dcl_cstp", 128) == pytest.approx(0.03)  # the paper's batch 128, lr 0.03
    assert method_lr("dcl_cstp", 32) == pytest.approx(0.0075)
    assert method_lr("no_local", 32) == method_lr("dcl_cstp", 32)  # the ablations are DCL-CsTP
    assert method_lr("mocov2", 256) == pytest.approx(0.03)
    assert method_lr("simclr", 128) == pytest.approx(0.06)
    assert method_lr("simsiam", 256) == pytest.approx(0.5)  # solo-learn's CIFAR recipe, not the ImageNet 0.05
    assert method_lr("simclr", 32, lr=0.1) == 0.1  # a config's lr wins


def test_centred_target_is_an_ablation_and_the_default_is_the_papers():
    paper = _small("dcl_cstp")
    assert paper.target_norm is None
    pooled = torch.rand(6, paper.feature_dim) + 1.0  # post-ReLU: all positive, a narrow cone
    torch.testing.assert_close(paper.local_target(pooled), pooled)
    centred = _small("centred_target").train()
    t = centred.local_target(pooled)
    torch.testing.assert_close(t.mean(0), torch.zeros(paper.feature_dim), atol=1e-5, rtol=0)
    assert not t.requires_grad and not any(p.requires_grad for p in centred.target_norm.parameters())


def test_a_head_on_an_earlier_stage_is_refused():
    with pytest.raises(ValueError, match="layer4"):
        build_method("dcl_cstp", backbone="resnet18", in_channels=1, feature_stage=3)


def test_a_step_budget_gives_whole_epochs_and_max_epochs_still_caps_it():
    from dcl_cstp_ext.engines import epochs_for

    assert epochs_for(200, None, 704, 32) == epochs_for(200, -1, 704, 32) == 200  # no step budget: the epochs
    with pytest.raises(ValueError, match="or -1"):
        epochs_for(200, 0, 704, 32)
    assert [epochs_for(200, 1320, n, 32) for n in (704, 1868, 4173)] == [60, 23, 10]  # 1320, 1334, 1300 steps
    assert epochs_for(30, 1320, 704, 32) == 30  # whichever comes first, as Lightning's max_epochs / max_steps
    assert epochs_for(200, 5, 704, 32) == 1  # at least one epoch
    with pytest.raises(ValueError, match="no batch of 32"):
        epochs_for(200, 1320, 20, 32)


def test_the_cpu_preset_is_a_step_budget_wired_to_the_trainer_and_the_schedule():
    from monai.bundle import ConfigParser

    root = Path(__file__).resolve().parents[1] / "bundles" / "dcl_pretrain" / "configs"
    parser = ConfigParser()
    parser.read_config([str(root / "train.json"), str(root / "presets" / "cpu.json")])
    assert parser["max_steps"] == 1320 and parser["amp"] is True
    assert parser["train#trainer#max_epochs"] == parser["lr_scheduler#max_epochs"] == "@train_epochs"
    parser["pretrain_items"] = [{"image": f"{i}.png"} for i in range(704)]  # Kvasir-SEG's training images
    assert parser.get_parsed_content("train_epochs") == 60
    parser["max_epochs"] = 15
    assert parser.get_parsed_content("train_epochs", lazy=False) == 15
