"""Resume checkpoints: plain data only (``weights_only=True``), a planted file refused, exact resume."""

import pathlib
import pickle
import random

import numpy as np
import pytest
import torch

from dcl_cstp_ext.engines import ResumableCheckpoint, RNGState, StepTrainer, optimizer_step


class NoisyToy(StepTrainer):
    """A loss drawn from python's, numpy's and torch's generators: exact resume needs all three restored."""

    def train_step(self, batch):
        x = self.to_device(batch["x"])
        noise = torch.randn(x.shape[0], 1) + random.random() + float(np.random.rand())
        loss = (self.network(x) * noise).pow(2).mean()
        self.backward_step(loss)
        return {"loss": loss}


def _trainer(max_epochs, ckpt_dir=None):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    data = [{"x": torch.rand(4, 3, generator=torch.Generator().manual_seed(i))} for i in range(2)]
    trainer = NoisyToy("cpu", max_epochs, data, net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    if ckpt_dir is not None:
        ResumableCheckpoint(str(ckpt_dir), {"model": net, "optimizer": trainer.optimizer}).attach(trainer)
    return trainer


def _seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_rng_state_is_plain_data_and_restores_every_generator(tmp_path):
    _seed(0)
    random.gauss(0, 1), np.random.randn()  # python's and numpy's Gaussian caches are part of the state
    torch.save(RNGState().state_dict(), tmp_path / "rng.pt")
    draws = [random.gauss(0, 1), random.random(), np.random.randn(), np.random.rand(), torch.rand(2)]
    _seed(1)
    RNGState().load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = [random.gauss(0, 1), random.random(), np.random.randn(), np.random.rand(), torch.rand(2)]
    assert draws[:4] == again[:4] and torch.equal(draws[4], again[4])


def test_resume_reproduces_the_uninterrupted_weights_bit_for_bit(tmp_path):
    _seed(0)
    straight = _trainer(2)
    straight.run()
    _seed(0)
    _trainer(1, tmp_path).run()  # "killed" after epoch 1
    _seed(7)  # a new process: other generator states until the checkpoint's are restored
    resumed = _trainer(2, tmp_path)
    resumed.run()
    assert resumed.state.iteration == 4
    for k, v in straight.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[k], v, rtol=0, atol=0)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"] == {"epoch": 2, "iteration": 4}


def test_a_legacy_checkpoint_with_numpy_rng_arrays_still_resumes(tmp_path):
    _seed(0)
    _trainer(1, tmp_path).run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    _seed(3)
    state["rng"].update(python=random.getstate(), numpy=np.random.get_state())  # the format before plain data
    torch.save(state, tmp_path / "checkpoint.pt")
    _seed(0)
    resumed = _trainer(2, tmp_path)
    resumed.run()
    assert resumed.state.iteration == 4


class _WritesMarker:
    """Unpickling this calls ``Path.write_text``: code run by an unsafe load."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code ran")


def test_a_checkpoint_that_would_run_code_is_refused_at_resume(tmp_path):
    _seed(0)
    _trainer(1, tmp_path).run()
    path = tmp_path / "checkpoint.pt"
    marker = tmp_path / "marker.txt"
    state = torch.load(path, weights_only=True)
    state["trainer"]["note"] = _WritesMarker(marker)
    torch.save(state, path)
    pickle.loads(pickle.dumps(_WritesMarker(marker)))  # the payload is real: unpickling it runs it
    assert marker.read_text() == "code ran"
    marker.unlink()

    with pytest.raises(RuntimeError, match="refusing to resume from") as err:
        _trainer(2, tmp_path).run()
    assert str(path) in str(err.value) and "could run code" in str(err.value)
    assert not marker.exists()


def test_the_float16_loss_scaler_is_saved_and_restored(tmp_path):
    """A GPU without bfloat16 trains in float16 with a ``GradScaler``: its scale and growth count resume too (here a
    CPU ``GradScaler`` stands in for the CUDA one; the checkpoint treats both alike)."""
    first = _trainer(1, tmp_path)
    first.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)  # grows every finite step
    first.run()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["grad_scaler"]["scale"] == pytest.approx(2.0**12)  # two finite steps, doubled twice
    resumed = _trainer(2, tmp_path)
    resumed.scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1)
    resumed.run()
    assert resumed.scaler.get_scale() == pytest.approx(2.0**14)  # 2**12 restored, then two more steps
    no_scaler = _trainer(1, tmp_path / "plain")  # a run without float16 writes no scaler entry
    no_scaler.run()
    assert "grad_scaler" not in torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)


class TwoScalerToy(NoisyToy):
    """A trainer with a second network and loss scaler, as the LDM autoencoder's discriminator."""

    def train_step(self, batchdata):
        out = super().train_step(batchdata)
        d_loss = self.disc(batchdata["x"]).square().mean()
        optimizer_step(d_loss, self.d_optimizer, self.disc.parameters(), self.d_scaler)
        return out

    def loss_scalers(self):
        return {"grad_scaler": self.scaler, "d_grad_scaler": self.d_scaler}


def test_every_loss_scaler_of_the_trainer_is_saved_and_restored(tmp_path):
    """The autoencoder trains its discriminator with its own float16 scaler: it resumes as the generator's does."""
    from types import SimpleNamespace

    from dcl_cstp_ext.generative import AutoencoderTrainer

    gen, disc = object(), object()
    assert AutoencoderTrainer.loss_scalers(SimpleNamespace(scaler=gen, d_scaler=disc)) == {
        "grad_scaler": gen, "d_grad_scaler": disc}

    def trainer(max_epochs, d_scale):
        torch.manual_seed(0)
        net, d_net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)
        data = [{"x": torch.rand(4, 3, generator=torch.Generator().manual_seed(i))} for i in range(2)]
        t = TwoScalerToy("cpu", max_epochs, data, net, torch.optim.SGD(net.parameters(), lr=0.1))
        t.disc, t.d_optimizer = d_net, torch.optim.SGD(d_net.parameters(), lr=0.1)
        t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
        t.d_scaler = torch.amp.GradScaler("cpu", init_scale=d_scale, growth_interval=1)  # doubles every step
        ResumableCheckpoint(str(tmp_path), {"model": net, "optimizer": t.optimizer, "disc": d_net,
                                            "d_optimizer": t.d_optimizer}).attach(t)
        return t

    trainer(1, 2.0**3).run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["d_grad_scaler"]["scale"] == pytest.approx(2.0**5)
    resumed = trainer(2, 1.0)
    resumed.run()
    assert resumed.d_scaler.get_scale() == pytest.approx(2.0**7)  # 2**5 restored, then two more steps
