"""Samplers of the latent diffusion model: shared betas, correct integration on a Gaussian, image shape/dtype/range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from dcl_cstp_ext.generative import (
    SAMPLERS,
    ddim_from_ddpm,
    dpm_solver_from_ddpm,
    generate_images,
    latent_shape_of,
    make_sampler_scheduler,
    sample_latents,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks on a shared CPU run faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ddpm(t: int = 1000) -> DDPMScheduler:
    return DDPMScheduler(t, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0195, clip_sample=False)


def test_dpm_solver_and_ddim_use_the_betas_of_the_ddpm_schedule():
    ddpm = _ddpm()
    dpm = dpm_solver_from_ddpm(ddpm, 20)
    ddim = ddim_from_ddpm(ddpm, 50)
    ref = ddpm.betas.double()
    assert ref[0].item() == pytest.approx(0.0015) and ref[-1].item() == pytest.approx(0.0195)
    torch.testing.assert_close(torch.as_tensor(dpm.betas).double(), ref, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(torch.as_tensor(dpm.alphas_cumprod).double(), ddpm.alphas_cumprod.double(), rtol=1e-5,
                               atol=1e-9)
    torch.testing.assert_close(ddim.alphas_cumprod, ddpm.alphas_cumprod)
    assert dpm.config.prediction_type == "epsilon" and dpm.config.algorithm_type == "sde-dpmsolver++"
    ode = make_sampler_scheduler("dpm_solver_ode", ddpm, 20)
    assert ode.config.algorithm_type == "dpmsolver++"
    torch.testing.assert_close(torch.as_tensor(ode.betas).double(), ref, rtol=1e-6, atol=1e-9)
    assert len(dpm.timesteps) == 20 and int(dpm.timesteps[0]) == 999
    # DDIM's steps are spaced by exactly the stride its step() assumes
    assert len(ddim.timesteps) == 50 and set(np.diff(ddim.timesteps.numpy()).tolist()) == {-(1000 // 50)}
    # a schedule built from other betas is not the same schedule (the check above can fail)
    other = dpm_solver_from_ddpm(DDPMScheduler(1000, "linear_beta", clip_sample=False), 20)
    assert not torch.allclose(torch.as_tensor(other.betas).double(), ref)


class _GaussianDenoiser(torch.nn.Module):
    """The exact epsilon predictor for data ~ N(0, s^2): eps(x_t, t) = sqrt(1 - a_t) x_t / (a_t s^2 + 1 - a_t)."""

    def __init__(self, alphas_cumprod: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("ac", alphas_cumprod.clone())
        self.s = s
        self.weight = torch.nn.Parameter(torch.zeros(1))  # samplers look up a parameter for the device

    def forward(self, x, timesteps):
        a = self.ac[timesteps.long()].view(-1, 1, 1, 1).to(x)
        return (1 - a).sqrt() * x / (a * self.s**2 + 1 - a)


@pytest.mark.parametrize("s", [0.5, 2.0])
@pytest.mark.parametrize("sampler,steps,tol", [("ddpm", None, 0.03), ("ddim", 50, 0.1), ("dpm_solver", 20, 0.05),
                                               ("dpm_solver_ode", 20, 0.03)])
def test_samplers_reproduce_a_gaussian_with_its_exact_denoiser(sampler, steps, tol, s):
    """With the exact denoiser every sampler must end at data of standard deviation s: a wrong schedule, timestep
    offset or sign shows up as a wrong spread (e.g. DPM-Solver++ on the default linear betas is 13% off at s=2)."""
    ddpm = _ddpm()
    model = _GaussianDenoiser(ddpm.alphas_cumprod, s)
    z = sample_latents(model, make_sampler_scheduler(sampler, ddpm, steps), (8, 1, 32, 32),
                       torch.Generator().manual_seed(0))
    assert abs(z.std().item() / s - 1) < tol
    assert abs(z.mean().item()) < 0.05 * s


def _tiny_models(channels: int):
    torch.manual_seed(0)
    ae = AutoencoderKL(spatial_dims=2, in_channels=channels, out_channels=channels, channels=(8, 16, 16),
                       num_res_blocks=1, attention_levels=(False, False, False), latent_channels=3, norm_num_groups=8,
                       with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=3, out_channels=3, channels=(16, 16), num_res_blocks=1,
                              attention_levels=(False, False), norm_num_groups=8)
    return ae, unet


@pytest.mark.parametrize("sampler,channels", [("ddpm", 1), ("ddim", 3), ("dpm_solver", 3), ("dpm_solver_ode", 1)])
def test_each_sampler_returns_seeded_images_of_the_right_shape_dtype_and_range(sampler, channels):
    ae, unet = _tiny_models(channels)
    ddpm = _ddpm(20)  # a short chain keeps the full-chain DDPM cheap here
    latent = latent_shape_of(ae, channels, 32)
    assert latent == (3, 8, 8)  # two down-samplings: factor 4
    steps = {"ddpm": None, "ddim": 5, "dpm_solver": 5, "dpm_solver_ode": 5}[sampler]
    kw = dict(sampler=sampler, num_inference_steps=steps, batch_size=2, progress=False)
    a = generate_images(ae, unet, ddpm, 1.3, latent, 3, seed=7, **kw)
    b = generate_images(ae, unet, ddpm, 1.3, latent, 3, seed=7, **kw)
    c = generate_images(ae, unet, ddpm, 1.3, latent, 3, seed=8, **kw)
    assert a.shape == (3, channels, 32, 32) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    if sampler == "ddim":  # eta > 0 makes DDIM stochastic (seeded)
        d = generate_images(ae, unet, ddpm, 1.3, latent, 3, seed=7, ddim_eta=1.0, **kw)
        assert not torch.equal(a, d)


def test_ddpm_runs_the_full_chain_only():
    ddpm = _ddpm(50)
    assert len(make_sampler_scheduler("ddpm", ddpm).timesteps) == 50
    with pytest.raises(ValueError, match="full chain"):
        make_sampler_scheduler("ddpm", ddpm, 10)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler_scheduler("euler", ddpm)
    assert set(SAMPLERS) == {"ddpm", "ddim", "dpm_solver", "dpm_solver_ode"}
