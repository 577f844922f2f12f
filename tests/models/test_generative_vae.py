"""VAE pieces: the KL term against torch.distributions, the reparameterised sample's
distribution and gradients, and the model's two forward modes."""

import torch
from torch.distributions import Normal, kl_divergence

from cvcraft.models import create_model
from cvcraft.models.generative.vae import kl_to_standard_normal, reparameterize


def test_kl_equals_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5) * 2, torch.randn(7, 5)
    want = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), want, atol=1e-5)
    zero = kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3))
    assert torch.equal(zero, torch.zeros(2))  # q = prior: KL exactly 0


def test_reparameterize_distribution_and_gradients():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([1.5, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, 2 * torch.log(torch.tensor(3.0)).item()], requires_grad=True)
    eps = torch.randn(200_000, 2, generator=g)
    z = reparameterize(mu, logvar, eps)
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 3.0]), rtol=0.01)
    z.sum().backward()  # dz/dμ = 1, dz/dlogvar = ½ σ ε
    assert torch.allclose(mu.grad, torch.full((2,), 200_000.0))
    want = (0.5 * (0.5 * logvar.detach()).exp() * eps).sum(0)
    assert torch.allclose(logvar.grad, want, rtol=1e-4)


def test_vae_forward_modes():
    torch.manual_seed(0)
    vae = create_model("cvae", num_classes=3, in_chans=1, img_size=28, noise_dim=6, width=8).eval()
    y = torch.tensor([0, 2])
    sample = vae(torch.randn(2, 6), y)
    assert sample.shape == (2, 1, 28, 28) and sample.abs().max() <= 1
    recon, mu, logvar = vae(sample, y, eps=torch.zeros(2, 6))
    assert recon.shape == sample.shape and mu.shape == logvar.shape == (2, 6)
    assert torch.allclose(recon, vae(mu, y))  # ε = 0 decodes the mean
