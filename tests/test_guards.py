"""Issue #23, "Runs": a non-finite loss or non-finite weights stop a training before anything is saved from them;
divergence is warned about; a resume with a changed schedule applies it; killed writes leave no temporaries."""

import json
import logging
import pathlib

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from dcl_cstp_ext.engines import LossGuard, ResumableCheckpoint, build_lr_scheduler, non_finite_tensors
from dcl_cstp_ext.networks.export import remove_stale_temporaries

BUNDLES = pathlib.Path(__file__).resolve().parents[1] / "bundles"


class ScriptedLoss(torch.nn.Module):
    """MSE times the next of ``factors`` (one per iteration): a NaN factor gives a NaN loss at that iteration."""

    def __init__(self, factors):
        super().__init__()
        self.factors = list(factors)
        self.calls = 0

    def forward(self, pred, label):
        factor = self.factors[min(self.calls, len(self.factors) - 1)]
        self.calls += 1
        return torch.nn.functional.mse_loss(pred, label) * factor


def _trainer(factors, epochs=1, lr=0.1, guard=True, batches=2):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    data = [{"image": torch.rand(4, 3), "label": torch.rand(4, 1)} for _ in range(batches)]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    trainer = SupervisedTrainer("cpu", epochs, data, net, opt, ScriptedLoss(factors), decollate=False)
    if guard:
        LossGuard(net, opt).attach(trainer)
    return trainer, net


def test_a_nan_loss_stops_a_monai_trainer_before_its_step_naming_the_iteration_and_the_last_finite_loss():
    trainer, net = _trainer([1.0, 1.0, float("nan")], epochs=2)
    weights = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: weights.update({e.state.iteration: net.weight.clone()}))
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at iteration 3 \(epoch 2\); the last finite "
                                                 r"loss was [0-9.e-]+ at iteration 2 \(lr 0.1\)"):
        trainer.run()
    assert torch.equal(net.weight, weights[2])  # the NaN loss never reached a backward pass or a step
    assert not non_finite_tensors(net)


def test_without_the_guard_the_same_run_ends_with_non_finite_weights():
    """What the guard prevents (MONAI's trainer alone finishes the NaN run and leaves NaN weights)."""
    trainer, net = _trainer([1.0, 1.0, float("nan")], epochs=2, guard=False)
    trainer.run()
    assert non_finite_tensors(net) == ["weight", "bias"]


def test_non_finite_weights_stop_the_run_at_the_epoch_end_before_later_handlers():
    trainer, net = _trainer([1e30], lr=1e30, batches=1)  # a finite loss, but its step overflows the weights
    later = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: later.append(e.state.epoch))  # validation, saving
    with pytest.raises(FloatingPointError, match="weight tensors became non-finite in epoch 1"):
        trainer.run()
    assert later == []


def test_a_diverging_loss_is_warned_about_once_per_epoch(caplog):
    trainer, _ = _trainer([1.0, 1.0, 1e4, 1e4, 1.0, 1.0], epochs=3, lr=0.0)  # the loss alone grows, then recovers
    with caplog.at_level(logging.WARNING, logger="dcl_cstp_ext.engines.guards"):
        trainer.run()
    warned = [r.getMessage() for r in caplog.records if "diverges" in r.getMessage()]
    assert len(warned) == 1 and "epoch 2" in warned[0]


def test_a_first_step_without_negatives_does_not_make_every_epoch_look_diverged(caplog):
    """A memory-bank method's first loss is ~0 (no negatives in the empty bank); a steady run is not diverging."""
    trainer, _ = _trainer([1e-4, 1.0, 1.0, 1.0, 1.0, 1.0], epochs=3, lr=0.0)
    with caplog.at_level(logging.WARNING, logger="dcl_cstp_ext.engines.guards"):
        trainer.run()
    assert not [r for r in caplog.records if "diverges" in r.getMessage()]


def test_every_training_config_puts_the_guard_first():
    """Attached before validation, checkpoints and the scheduler, so they never see what it stops."""
    configs = sorted(BUNDLES.glob("*/configs/train*.json"))
    assert len(configs) == 6
    for path in configs:
        config = json.loads(path.read_text())
        handlers = config.get("train#handlers_all_ranks") or config["train"]["handlers_all_ranks"]
        assert handlers[0]["_target_"] == "dcl_cstp_ext.engines.LossGuard", path


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    net = torch.nn.Linear(2, 1)
    ckpt = ResumableCheckpoint(str(tmp_path), {"model": net})
    trainer, _ = _trainer([1.0], guard=False)
    ckpt.save(trainer)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="non-finite weight tensors .first: weight.; the last good"):
        ckpt.save(trainer)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def _scheduled(tmp_path, epochs, lr, schedule="cosine"):
    trainer, net = _trainer([1.0], epochs=epochs, lr=lr, guard=False)
    scheduler = build_lr_scheduler(trainer.optimizer, schedule, max_epochs=epochs, warmup_epochs=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    trainer.lrs = []  # the learning rate of each epoch run
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: e.lrs.append(e.optimizer.param_groups[0]["lr"]))
    ResumableCheckpoint(str(tmp_path), {"model": net, "optimizer": trainer.optimizer,
                                        "lr_scheduler": scheduler}).attach(trainer)
    return trainer


def test_resuming_with_a_changed_schedule_applies_the_new_one_and_names_the_differences(tmp_path, caplog):
    """A cosine run of 3 epochs at lr 0.1, continued as 6 epochs at lr 0.2: from epoch 4 on the learning rate is
    what a 6-epoch run at 0.2 has there (the old state would have kept T_max 2 and base lr 0.1)."""
    _scheduled(tmp_path / "a", 3, 0.1).run()
    with caplog.at_level(logging.WARNING, logger="dcl_cstp_ext.engines.checkpoint"):
        resumed = _scheduled(tmp_path / "a", 6, 0.2)
        resumed.run()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "changed optimiser / learning-rate schedule" in text
    assert "optimizer.param_groups[0].initial_lr: 0.1 -> 0.2" in text and "T_max: 2 -> 5" in text
    straight = _scheduled(tmp_path / "b", 6, 0.2)
    straight.run()
    assert resumed.state.epoch == 6 and len(resumed.lrs) == 3
    assert resumed.lrs == pytest.approx(straight.lrs[3:], abs=1e-12)  # epochs 4, 5, 6
    assert resumed.optimizer.param_groups[0]["initial_lr"] == 0.2


def test_resuming_with_the_same_schedule_is_silent(tmp_path, caplog):
    _scheduled(tmp_path, 3, 0.1).run()
    with caplog.at_level(logging.WARNING, logger="dcl_cstp_ext.engines.checkpoint"):
        _scheduled(tmp_path, 3, 0.1).run()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_constant_schedule_may_be_extended_with_more_epochs(tmp_path):
    _scheduled(tmp_path, 2, 0.1, "constant").run()
    longer = _scheduled(tmp_path, 4, 0.1, "constant")
    longer.run()
    assert longer.state.epoch == 4


def test_temporaries_of_killed_checkpoint_writes_are_removed_at_start(tmp_path):
    stale = [tmp_path / ".checkpoint.pt.k3v_9xqa", tmp_path / ".model.pt.abcdefgh"]
    kept = [tmp_path / "checkpoint.pt", tmp_path / ".notes.txt.abcdefgh", tmp_path / ".checkpoint.pt.short"]
    for p in stale + kept:
        p.write_bytes(b"x")
    trainer, net = _trainer([1.0], guard=False)
    ResumableCheckpoint(str(tmp_path), {"model": net}, resume=False).attach(trainer)
    trainer.run()
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []
