"""GAN objectives: the discriminator's and the generator's loss for each formulation, and
the WGAN-GP gradient penalty.

- ``bce`` (non-saturating, Goodfellow 2014): D minimises BCE(D(x), 1) + BCE(D(G(z)), 0);
  G minimises BCE(D(G(z)), 1) = softplus(-D(G(z))) (not -log(1-D), which saturates).
  ``smooth`` is one-sided label smoothing: real targets 1 - smooth (Salimans et al. 2016).
- ``hinge`` (Lim & Ye 2017; SN-GAN, BigGAN): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)).
- ``wgan`` (Arjovsky 2017): the critic maximises D(x) - D(G(z)): D: D(G(z)) - D(x); G: -D(G(z)).
  It needs a Lipschitz constraint: the gradient penalty below (WGAN-GP, Gulrajani 2017), or
  the original paper's weight clipping (``clip_weights_``: every critic weight in [-c, c],
  with RMSProp; cruder — it pushes weights to ±c and caps capacity).
- Noisy and flipped labels (Salimans et al. 2016; the "GAN hacks"): ``d_targets`` draws the
  BCE targets per sample — real in [1 - noise, 1], fake in [0, noise] — and swaps a sample's
  real/fake target with probability ``flip``, so D never becomes certain.

Logits are raw discriminator outputs, any shape (N, ...); losses are batch means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError

GAN_LOSSES = ("bce", "hinge", "wgan")


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ConfigError(f"GAN loss {kind!r} is not one of {', '.join(GAN_LOSSES)}")


def d_targets(
    n: int, uniform: torch.Tensor, noise: float = 0.0, flip: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample BCE targets (real (n,), fake (n,)) from ``uniform`` (3, n) U(0, 1) draws:
    row 0/1 place real/fake targets in [1 - noise, 1] / [0, noise]; a sample whose row-2
    draw is below ``flip`` has its two targets swapped."""
    if uniform.shape != (3, n):
        raise ConfigError(f"d_targets needs (3, {n}) uniform draws, got {tuple(uniform.shape)}")
    real = 1.0 - noise * uniform[0]
    fake = noise * uniform[1]
    swap = uniform[2] < flip
    return torch.where(swap, fake, real), torch.where(swap, real, fake)


def d_loss(
    kind: str,
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    smooth: float = 0.0,
    targets: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The discriminator's loss on real and (detached) fake logits; ``targets`` (bce only)
    are per-sample (real, fake) targets from ``d_targets`` (smoothing then scales real's)."""
    _check(kind)
    if kind == "bce":
        if targets is None:
            real_t, fake_t = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
        else:
            shape = (-1, *([1] * (real_logits.ndim - 1)))
            real_t = targets[0].to(real_logits).view(shape).expand_as(real_logits)
            fake_t = targets[1].to(fake_logits).view(shape).expand_as(fake_logits)
        real = F.binary_cross_entropy_with_logits(real_logits, real_t * (1.0 - smooth))
        return real + F.binary_cross_entropy_with_logits(fake_logits, fake_t)
    if targets is not None:
        raise ConfigError(f"noisy/flipped labels are BCE targets; loss={kind} has none")
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's logits of its samples."""
    _check(kind)
    if kind == "bce":
        return F.softplus(-fake_logits).mean()  # = BCE(fake_logits, 1)
    return -fake_logits.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP's E[(‖∇x̂ D(x̂)‖₂ - 1)²] at x̂ = ε·real + (1-ε)·fake, ε ~ U(0, 1) per sample.

    ``real``/``fake`` (N, ...), ``eps`` (N,) drawn by the caller (so a resume replays it).
    The input gradient is built with ``create_graph=True``, so backward of the penalty
    reaches the critic's weights (a double backward).
    """
    if real.shape != fake.shape:
        raise ConfigError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    e = eps.to(real.dtype).view(-1, *([1] * (real.ndim - 1)))
    x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@torch.no_grad()
def clip_weights_(model: torch.nn.Module, c: float) -> None:
    """WGAN's Lipschitz constraint (Arjovsky 2017): clamp every parameter to [-c, c] in place,
    after each critic step (the paper: c = 0.01, RMSProp lr 5e-5)."""
    if c <= 0:
        raise ConfigError(f"clip value {c} must be > 0")
    for p in model.parameters():
        p.clamp_(-c, c)


def info_loss(
    cat_logits: torch.Tensor,
    cont_pred: torch.Tensor,
    cat: torch.Tensor,
    cont: torch.Tensor,
    cont_weight: float = 1.0,
) -> torch.Tensor:
    """InfoGAN's mutual-information term (Chen et al. 2016), minimised by G and the Q head:
    CE(Q_cat(x), c_cat) + ``cont_weight``·½‖Q_cont(x) − c_cont‖² (a unit-variance Gaussian
    Q's negative log-likelihood up to a constant), batch mean. Lower is a tighter lower
    bound on I(c; G(z, c)) − H(c)."""
    ce = F.cross_entropy(cat_logits.float(), cat)
    if cont.shape[1] == 0:
        return ce
    return ce + cont_weight * 0.5 * (cont_pred.float() - cont).pow(2).sum(1).mean()
