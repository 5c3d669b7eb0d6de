"""The trainer base: the optimiser step (clipping, scaler), the non-finite-loss stop, mixed precision per device."""

import pytest
import torch
from ignite.engine import Events

from dcl_cstp_ext.engines import StepTrainer, amp_dtype, grad_scaler_for, optimizer_step


class Toy(StepTrainer):
    """Loss ``scale * mean(network(x)^2)``; records the autocast dtype of the forward."""

    def train_step(self, batch):
        x = self.to_device(batch["x"])
        with self.autocast():
            y = self.network(x)
        self.forward_dtype = y.dtype
        loss = y.float().pow(2).mean() * batch["scale"]
        self.backward_step(loss, {"y_mean": y.float().mean()})
        return {"loss": loss, "scale": batch["scale"]}


def _batches(scales, shape=(4, 3)):
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.rand(*shape, generator=g), "scale": s} for s in scales]


def _toy(scales, amp=False, grad_clip=None, lr=0.1):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    return Toy("cpu", 1, _batches(scales), net, torch.optim.SGD(net.parameters(), lr=lr), amp=amp,
               grad_clip=grad_clip)


def test_output_is_floats_with_the_learning_rate():
    trainer = _toy([1.0, 2.0])
    trainer.run()
    out = trainer.state.output
    assert set(out) == {"loss", "scale", "lr"} and all(type(v) is float for v in out.values())
    assert out["lr"] == 0.1 and trainer.last_finite_loss == (2, out["loss"])


def test_a_non_finite_loss_stops_before_its_step_naming_the_iteration_and_the_last_finite_loss():
    trainer = _toy([1.0, 1.0, float("nan"), 1.0])
    before = {}

    @trainer.on(Events.ITERATION_STARTED)
    def keep(engine):
        before.update({k: v.clone() for k, v in engine.network.state_dict().items()})

    with pytest.raises(FloatingPointError) as err:
        trainer.run()
    msg = str(err.value)
    last = trainer.last_finite_loss
    assert last[0] == 2 and "at iteration 3 (epoch 1)" in msg and f"{last[1]:.6g} at iteration 2" in msg
    assert "non-finite loss nan (y_mean=" in msg
    for k, v in trainer.network.state_dict().items():  # the refused step left the weights alone
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_grad_clip_bounds_the_step_also_through_a_scaler():
    net = torch.nn.Linear(3, 1)
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=1024.0)):
        w0 = [p.detach().clone() for p in net.parameters()]
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        opt.zero_grad()
        loss = 1e3 * net(torch.ones(2, 3)).sum()  # gradient norm far above the clip
        optimizer_step(loss, opt, net.parameters(), scaler=scaler, grad_clip=0.5)
        delta = torch.cat([(p.detach() - w).flatten() for p, w in zip(net.parameters(), w0)])
        torch.testing.assert_close(delta.norm(), torch.tensor(0.5))  # unscaled before clipping


def test_cpu_amp_is_bfloat16_without_a_scaler_across_run():
    trainer = _toy([1.0, 1.0], amp=True)
    assert trainer.scaler is None
    trainer.run()
    assert trainer.scaler is None and trainer.forward_dtype == torch.bfloat16  # MONAI's run would set a scaler
    plain = _toy([1.0, 1.0])
    plain.run()
    assert plain.scaler is None and plain.forward_dtype == torch.float32


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
def test_a_gradient_scaler_only_for_float16_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a GPU before Ampere
    assert amp_dtype("cuda") == torch.float16
    assert isinstance(grad_scaler_for("cuda", True), torch.amp.GradScaler)
    assert grad_scaler_for("cuda", False) is None
    assert grad_scaler_for("cpu", True) is None and grad_scaler_for(torch.device("cpu"), False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # Ampere and later: bfloat16, no scaler
    assert amp_dtype("cuda") == torch.bfloat16 and grad_scaler_for("cuda", True) is None
    assert amp_dtype("cpu") == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_trains_float16_with_the_trainers_own_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # the float16 path on any GPU
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).cuda()
    trainer = Toy("cuda", 1, _batches([1.0, 1.0]), net, torch.optim.SGD(net.parameters(), lr=0.1), amp=True)
    scaler = trainer.scaler
    trainer.run()
    assert trainer.scaler is scaler and scaler.is_enabled() and trainer.forward_dtype == torch.float16
    assert scaler.state_dict()["_growth_tracker"] == 2  # two finite steps through it


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()), reason="needs a bfloat16 GPU")
def test_cuda_amp_trains_bfloat16_without_a_scaler_where_the_gpu_can():
    net = torch.nn.Linear(3, 2).cuda()
    trainer = Toy("cuda", 1, _batches([1.0, 1.0]), net, torch.optim.SGD(net.parameters(), lr=0.1), amp=True)
    trainer.run()
    assert trainer.scaler is None and trainer.forward_dtype == torch.bfloat16


def test_channels_last_and_plain_tensors():
    from monai.data import MetaTensor

    net = torch.nn.Conv2d(3, 2, 1)
    trainer = Toy("cpu", 1, [], net, torch.optim.SGD(net.parameters(), lr=0.1), channels_last=True)
    x = trainer.to_device(MetaTensor(torch.rand(2, 3, 4, 4)))
    assert type(x) is torch.Tensor and x.is_contiguous(memory_format=torch.channels_last)
    idx = trainer.to_device(torch.arange(2))
    assert idx.shape == (2,)
    with pytest.raises(ValueError, match="Toy needs a batch dict with the keys"):
        trainer.require_keys({"y": 1}, ["x"])
