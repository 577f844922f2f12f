import math

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError, RegistryError
from cvcraft.losses import (
    LOSSES,
    FocalLoss,
    SoftTargetCrossEntropy,
    build_loss,
    cross_entropy,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g) * 3
    target = torch.randint(0, 7, (16,), generator=g)
    weight = torch.rand(7, generator=g) + 0.2
    return logits, target, weight


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_hard_ce_matches_torch(batch, eps):
    logits, target, weight = batch
    target = target.clone()
    target[3] = -100
    for w in (None, weight):
        ours = cross_entropy(logits, target, label_smoothing=eps, weight=w)
        ref = F.cross_entropy(logits, target, weight=w, label_smoothing=eps)
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_soft_one_hot_equals_hard(batch, eps):
    logits, target, _ = batch
    onehot = F.one_hot(target, 7).float()
    torch.testing.assert_close(
        cross_entropy(logits, onehot, label_smoothing=eps),
        F.cross_entropy(logits, target, label_smoothing=eps),
    )
    torch.testing.assert_close(
        SoftTargetCrossEntropy(label_smoothing=eps)(logits, onehot),
        F.cross_entropy(logits, target, label_smoothing=eps),
    )


@pytest.mark.parametrize("eps", [0.0, 0.15])
def test_soft_ce_matches_torch_probability_targets(batch, eps):
    logits, _, weight = batch
    p = torch.rand(16, 7, generator=torch.Generator().manual_seed(1)).softmax(1)
    for w in (None, weight):
        torch.testing.assert_close(
            cross_entropy(logits, p, label_smoothing=eps, weight=w),
            F.cross_entropy(logits, p, weight=w, label_smoothing=eps),
        )
    # Dense (N, C, H, W) soft targets with reduction="none" keep the spatial shape.
    z = torch.randn(2, 3, 4, 5)
    q = torch.rand(2, 3, 4, 5).softmax(1)
    torch.testing.assert_close(
        cross_entropy(z, q, reduction="none"), F.cross_entropy(z, q, reduction="none")
    )


def test_focal_gamma0_is_ce(batch):
    logits, target, _ = batch
    torch.testing.assert_close(
        FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target)
    )
    onehot = F.one_hot(target, 7).float()
    torch.testing.assert_close(
        FocalLoss(gamma=0.0)(logits, onehot), F.cross_entropy(logits, target)
    )


def test_focal_hand_computed():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    # Sample 1: p_t = e^2 / (e^2 + e + 1) = 0.665241; (1 - p)^2 * -ln p = 0.112064 * 0.407606
    #   = 0.0456780. Sample 2: p_t = 1/3; (2/3)^2 * ln 3 = 0.488272.
    s1 = (1 - 0.665241) ** 2 * -math.log(0.665241)
    s2 = (2 / 3) ** 2 * math.log(3)
    assert s1 == pytest.approx(0.0456780, abs=1e-6)
    loss = FocalLoss(gamma=2.0)(logits, target)
    assert loss.item() == pytest.approx((s1 + s2) / 2, abs=1e-5)
    # Per-class alpha picks alpha[target]: 0.25 for class 0, 0.75 for class 2.
    loss_a = FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.75], reduction="sum")(logits, target)
    assert loss_a.item() == pytest.approx(0.25 * s1 + 0.75 * s2, abs=1e-5)
    # Ignored samples drop out of numerator and denominator.
    loss_i = FocalLoss(gamma=2.0)(logits, torch.tensor([0, -100]))
    assert loss_i.item() == pytest.approx(s1, abs=1e-6)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[5.0, 0.0]])
    hard = torch.tensor([[0.5, 0.0]])
    t = torch.tensor([0])
    ratio_focal = FocalLoss(gamma=2)(easy, t) / FocalLoss(gamma=2)(hard, t)
    ratio_ce = F.cross_entropy(easy, t) / F.cross_entropy(hard, t)
    assert ratio_focal < ratio_ce / 10


def test_registry_and_build_loss(batch):
    logits, target, _ = batch
    assert {"ce", "soft_ce", "focal"} <= set(LOSSES.names())
    ce = build_loss("ce", label_smoothing=0.1, weight=[1.0] * 7)
    torch.testing.assert_close(
        ce(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1)
    )
    assert isinstance(build_loss("focal", gamma=1.0), FocalLoss)
    with pytest.raises(RegistryError, match='Did you mean "focal"'):
        build_loss("focall")
    with pytest.raises(ConfigError, match="gama"):
        build_loss("focal", gama=2.0)
    with pytest.raises(ConfigError, match="float targets"):
        build_loss("soft_ce")(logits, target)
