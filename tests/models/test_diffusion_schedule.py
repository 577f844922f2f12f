"""DDPM/DDIM math against diffusers' DDPMScheduler / DDIMScheduler (to 1e-6): β schedules,
q(x_t | x_0), the posterior variance, the ancestral step and the DDIM update."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is the oracle (dev extra)")

from cvcraft.errors import ConfigError  # noqa: E402
from cvcraft.models.generative.diffusion import DiffusionSchedule  # noqa: E402

KINDS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_and_q_sample(kind):
    ours = DiffusionSchedule(kind, 1000)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind])
    assert torch.allclose(ours.betas, ref.betas, atol=1e-6)
    assert torch.allclose(ours.alphas_cumprod, ref.alphas_cumprod, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1, torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    assert torch.allclose(ours.q_sample(x0, t, noise), ref.add_noise(x0, noise, t), atol=1e-6)
    for s in (1, 2, 50, 999):  # β̃_t (index 0 is clamped to 1e-20 by both)
        _, var = ours.posterior(x0[:1], x0[:1], s)
        assert float(var) == pytest.approx(float(ref._get_variance(s)), abs=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ddpm_ancestral_step(kind, t):
    ours = DiffusionSchedule(kind, 1000)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind])
    ref.set_timesteps(1000)
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    want = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(ours.ddpm_step(eps, t, x_t, noise), want, atol=1e-6)


def test_posterior_mean_equals_diffusers_noise_free_step():
    # with x̂_0 given exactly (no clipping), the step's mean is μ̃(x_0, x_t)
    ours = DiffusionSchedule("linear", 1000, clip_x0=False)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    ref.set_timesteps(1000)
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 1, 4, 4, generator=g)
    t = 300
    x_t = ours.q_sample(x0, t, noise)
    mean, var = ours.posterior(x0, x_t, t)
    out = ref.step(noise, t, x_t, generator=torch.Generator().manual_seed(3)).prev_sample
    z = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mean + var.sqrt() * z, out, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_update(kind, eta):
    ours = DiffusionSchedule(kind, 1000)
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule=KINDS[kind])
    ref.set_timesteps(50)
    ts = ours.ddim_timesteps(50)
    assert ts == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(4)
    for i in (0, 1, 25, 49):  # includes the last step to the clean end (ᾱ = 1)
        t = ts[i]
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
        want = ref.step(eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(5))
        noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
        got = ours.ddim_step(eps, t, prev, x_t, eta=eta, noise=noise)
        assert torch.allclose(got, want.prev_sample, atol=1e-6), (t, eta)


@pytest.mark.parametrize("t", [999, 500, 20])
def test_ddim_clipped_eps_equals_diffusers_clipped_model_output(t):
    # x̂_0 far outside [-1, 1] (large ε̂ error at large t): the clipped-x̂_0 ε re-derivation
    # equals diffusers' use_clipped_model_output=True and differs from the raw-ε̂ update
    ours = DiffusionSchedule("linear", 1000)
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000)
    ref.set_timesteps(50)
    g = torch.Generator().manual_seed(6)
    x_t, eps = torch.randn(2, 1, 6, 6, generator=g), torch.randn(2, 1, 6, 6, generator=g)
    x0 = ours.predict_x0(x_t, t, eps)
    a = ours.alphas_cumprod[t]
    assert ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).abs().max() > 1.5  # clipping is active
    assert x0.abs().max() <= 1
    prev = t - 20
    want = ref.step(eps, t, x_t, use_clipped_model_output=True).prev_sample
    got = ours.ddim_step(eps, t, prev, x_t, clipped_eps=True)
    assert torch.allclose(got, want, atol=1e-5)
    raw = ours.ddim_step(eps, t, prev, x_t)
    assert (got - raw).abs().max() > 1e-2
    # no clipping (latent diffusion): the re-derived ε is ε̂ itself
    free = DiffusionSchedule("linear", 1000, clip_x0=False)
    assert torch.allclose(
        free.ddim_step(eps, t, prev, x_t, clipped_eps=True), free.ddim_step(eps, t, prev, x_t)
    )


def test_bad_input():
    with pytest.raises(ConfigError, match="not one of linear, cosine"):
        DiffusionSchedule("sigmoid")
    with pytest.raises(ConfigError, match="steps=0 must be in 1..1000"):
        DiffusionSchedule().ddim_timesteps(0)
