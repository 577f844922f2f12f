"""GAN objectives against hand-written formulas, and the WGAN-GP gradient penalty against a
hand-derived input gradient (so the double backward is checked, not assumed)."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.losses.gan import d_loss, g_loss, gradient_penalty


def test_losses_equal_their_formulas():
    torch.manual_seed(0)
    r, f = torch.randn(17) * 3, torch.randn(17) * 3
    sig = torch.sigmoid
    # bce: -log σ(r) - log(1 - σ(f)); one-sided smoothing s: -(1-s) log σ(r) - s log(1-σ(r))
    s = 0.1
    want = (-(1 - s) * sig(r).log() - s * (1 - sig(r)).log()).mean() - (1 - sig(f)).log().mean()
    assert torch.allclose(d_loss("bce", r, f, smooth=s), want, atol=1e-5)
    assert torch.allclose(g_loss("bce", f), -sig(f).log().mean(), atol=1e-5)
    assert torch.allclose(
        d_loss("bce", r, f), F.binary_cross_entropy(sig(r), torch.ones(17)) +
        F.binary_cross_entropy(sig(f), torch.zeros(17)), atol=1e-5
    )  # fmt: skip
    hinge = torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
    assert torch.allclose(d_loss("hinge", r, f), hinge)
    assert torch.allclose(g_loss("hinge", f), -f.mean())
    assert torch.allclose(d_loss("wgan", r, f), f.mean() - r.mean())
    assert torch.allclose(g_loss("wgan", f), -f.mean())
    # boundaries: hinge is 0 once D is confidently right
    assert d_loss("hinge", torch.full((3,), 1.0), torch.full((3,), -1.0)) == 0
    with pytest.raises(ConfigError, match="not one of"):
        d_loss("lsgan", r, f)


def test_gradient_penalty_equals_hand_written_double_backward():
    """Critic D(x) = vᵀ tanh(W x + b): ∇x D = Wᵀ (v ⊙ (1 - tanh²(Wx + b))) by hand; the
    penalty's value and its gradient w.r.t. W, b, v must match the closed form's."""
    torch.manual_seed(0)
    n, d, h = 6, 5, 8
    W = torch.randn(h, d, requires_grad=True)
    b = torch.randn(h, requires_grad=True)
    v = torch.randn(h, requires_grad=True)
    real, fake, eps = torch.randn(n, d), torch.randn(n, d), torch.rand(n)

    def critic(x):
        return torch.tanh(x @ W.T + b) @ v

    gp = gradient_penalty(critic, real, fake, eps)
    grads = torch.autograd.grad(gp, (W, b, v))

    x = eps[:, None] * real + (1 - eps[:, None]) * fake
    t = torch.tanh(x @ W.T + b)  # (n, h)
    grad_x = (v * (1 - t**2)) @ W  # (n, d): the hand-written input gradient
    want = ((grad_x.norm(dim=1) - 1) ** 2).mean()
    want_grads = torch.autograd.grad(want, (W, b, v))
    assert torch.allclose(gp, want, atol=1e-6)
    for a, e in zip(grads, want_grads):
        assert torch.allclose(a, e, atol=1e-5)


def test_gradient_penalty_boundaries():
    # a linear critic with ‖w‖ = 1 has zero penalty everywhere; ‖w‖ = 3 gives (3 - 1)² = 4
    w = torch.tensor([0.6, 0.8])
    real, fake, eps = torch.randn(4, 2), torch.randn(4, 2), torch.rand(4)
    assert gradient_penalty(lambda x: x @ w, real, fake, eps).item() == pytest.approx(0, abs=1e-7)
    assert gradient_penalty(lambda x: x @ (3 * w), real, fake, eps).item() == pytest.approx(4)
    with pytest.raises(ConfigError, match="differ"):
        gradient_penalty(lambda x: x.sum(1), real, fake[:2], eps)
