"""Multi-label losses against hand-written float64 formulas, torch's own BCE/focal and autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.losses import asymmetric_loss, bce_multilabel, build_loss, focal_bce


def _data(seed=0, n=7, c=5, unknown=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    z[0, 0], z[1, 1] = 30.0, -30.0  # saturated logits must stay finite
    t = torch.randint(0, 2, (n, c), generator=g).double()
    if unknown:
        t[torch.rand(n, c, generator=g) < 0.2] = -1
    return z, t


def _asl_ref(z, t, gp, gn, m, pw=None):
    """ASL written from the paper with numpy float64, element by element."""
    z, t = z.numpy(), t.numpy()
    p, q = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z))  # q = 1 - p without cancellation
    pm = np.maximum(p - m, 0)
    w = np.ones_like(z) if pw is None else np.broadcast_to(np.asarray(pw), z.shape)
    lp = w * q**gp * -np.log1p(np.exp(-z))
    ln = pm**gn * np.log(np.minimum(q + m, 1.0))  # 1 - p_m = min(1 - p + m, 1)
    loss = -np.where(t == 1, lp, ln)
    known = t >= 0
    return np.where(known, loss, 0), known


def _focal_ref(z, t, gamma, alpha, pw=None):
    z, t = z.numpy(), t.numpy()
    s = np.where(t == 1, z, -z)
    pt = 1 / (1 + np.exp(-s))
    a = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    w = np.ones_like(z) if pw is None else np.where(t == 1, np.broadcast_to(pw, z.shape), 1)
    loss = -a * w * (1 - pt) ** gamma * -np.log1p(np.exp(-s))
    return np.where(t >= 0, loss, 0), t >= 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gp,gn,m", [(0.0, 4.0, 0.05), (1.0, 2.0, 0.0), (0.0, 0.0, 0.2)])
def test_asl_equals_hand_formula(seed, gp, gn, m):
    z, t = _data(seed)
    pw = [1.0, 2.0, 0.5, 3.0, 1.5]
    ref, known = _asl_ref(z, t, gp, gn, m, pw)
    got = asymmetric_loss(z, t, gp, gn, m, pos_weight=pw, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    mean = asymmetric_loss(z, t, gp, gn, m, pos_weight=pw)
    np.testing.assert_allclose(float(mean), ref.sum() / known.sum(), rtol=1e-10)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (1.5, 0.25), (0.0, None)])
def test_focal_bce_equals_hand_formula_and_torchvision(gamma, alpha):
    z, t = _data(3)
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    ref, known = _focal_ref(z, t, gamma, alpha, pw.numpy())
    got = focal_bce(z, t, gamma, alpha, pos_weight=pw, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    z2, t2 = _data(4, unknown=False)  # torchvision's focal loss, no unknowns, no pos_weight
    tv = torchvision.ops.sigmoid_focal_loss(z2, t2, alpha=-1 if alpha is None else alpha,
                                            gamma=gamma, reduction="mean")  # fmt: skip
    np.testing.assert_allclose(float(focal_bce(z2, t2, gamma, alpha)), float(tv), rtol=1e-10)


def test_bce_equals_torch_bce_with_pos_weight_and_masks_unknowns():
    z, t = _data(5, unknown=False)
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    ref = F.binary_cross_entropy_with_logits(z, t, pos_weight=pw)
    np.testing.assert_allclose(float(bce_multilabel(z, t, pw)), float(ref), rtol=1e-12)
    t_unk = t.clone()
    t_unk[:, 2] = -1  # a whole unknown column: equals BCE over the other columns
    keep = [0, 1, 3, 4]
    ref2 = F.binary_cross_entropy_with_logits(z[:, keep], t[:, keep], pos_weight=pw[keep])
    np.testing.assert_allclose(float(bce_multilabel(z, t_unk, pw)), float(ref2), rtol=1e-12)
    # ASL with no focusing and no margin is BCE; focal with gamma 0 is BCE
    np.testing.assert_allclose(float(asymmetric_loss(z, t, 0, 0, 0)), float(bce_multilabel(z, t)))
    np.testing.assert_allclose(float(focal_bce(z, t, 0.0)), float(bce_multilabel(z, t)))


def _asl_naive(z, t, gp, gn, m):
    p = torch.sigmoid(z)
    pm = (p - m).clamp(min=0)
    lp = (1 - p) ** gp * torch.log(p)
    ln = pm**gn * torch.log(1 - pm)
    loss = -(t.clamp(min=0) * lp + (1 - t.clamp(min=0)) * ln)
    known = (t >= 0).double()
    return (loss * known).sum() / known.sum()


@pytest.mark.parametrize("gp,gn,m", [(0.0, 4.0, 0.05), (1.0, 2.0, 0.1), (2.0, 3.0, 0.0)])
def test_asl_gradient_equals_autograd_of_naive_formula(gp, gn, m):
    z, t = _data(6)
    z = (z / 3).clamp(-4, 4)  # the naive formula needs unsaturated logits
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    asymmetric_loss(a, t, gp, gn, m).backward()
    _asl_naive(b, t, gp, gn, m).backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert (a.grad[t < 0] == 0).all()  # unknowns get no gradient
    assert torch.autograd.gradcheck(lambda x: asymmetric_loss(x, t, gp, gn, m), (a.detach()
                                    .clone().requires_grad_(True),))  # fmt: skip


def test_focal_gradient_by_gradcheck_and_finite_at_saturation():
    z, t = _data(7)
    x = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: focal_bce(v, t, 2.0, 0.25, [1, 2, 3, 4, 5.0]), (x,))
    y = torch.tensor([[80.0, -80.0]], requires_grad=True)
    wrong = torch.tensor([[0.0, 1.0]])  # confidently wrong on both
    for loss in (asymmetric_loss(y, wrong), focal_bce(y, wrong)):
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(y.grad).all()


def test_registry_and_errors():
    z, t = _data(8)
    crit = build_loss("asl", gamma_neg=2.0, clip=0.1)
    np.testing.assert_allclose(float(crit(z, t)), float(asymmetric_loss(z, t, 0.0, 2.0, 0.1)))
    assert float(build_loss("focal_bce")(z, t)) == pytest.approx(float(focal_bce(z, t)))
    assert float(build_loss("bce_multilabel")(z, t)) == pytest.approx(float(bce_multilabel(z, t)))
    with pytest.raises(ValueError, match="same .N, C. shape"):
        bce_multilabel(z, t[:, :2])
    with pytest.raises(ConfigError, match="clip < 1"):
        asymmetric_loss(z, t, clip=1.5)
    with pytest.raises(ConfigError, match="reduction"):
        focal_bce(z, t, reduction="avg")
    all_unknown = -torch.ones_like(t)
    assert float(bce_multilabel(z, all_unknown)) == 0.0
