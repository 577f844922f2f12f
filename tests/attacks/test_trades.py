"""TRADES loss: the natural + beta * KL objective computed by hand with torch, and the inner
PGD really increasing the KL term."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.attacks import trades_loss
from cvcraft.errors import ConfigError
from cvcraft.models import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10)


def _by_hand(model, x, adv, y, beta):
    logits = model(x)
    p = logits.softmax(1)
    q_log = model(adv).log_softmax(1)
    kl = (p * (p.log() - q_log)).sum(1).mean()  # KL(p_nat || p_adv), batch mean
    return F.cross_entropy(logits, y) + beta * kl


def test_objective_matches_hand_computation(model):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 2, 3])
    model.train()
    loss, adv = trades_loss(model, x, y, 8 / 255, 2 / 255, 3, beta=6.0)
    assert model.training  # the mode is restored for the outer loss
    model.eval()
    loss_eval, adv_eval = trades_loss(model, x, y, 8 / 255, 2 / 255, 3, beta=6.0)
    torch.testing.assert_close(
        loss_eval, _by_hand(model, x, adv_eval, y, 6.0), rtol=1e-5, atol=1e-6
    )
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    loss.backward()  # differentiable in the weights
    assert model.fc.weight.grad is not None and float(model.fc.weight.grad.abs().sum()) > 0


def test_inner_maximisation_raises_kl(model):
    model.eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    kl = {}
    for steps in (0, 10):
        loss, adv = trades_loss(
            model,
            x,
            y,
            8 / 255,
            2 / 255,
            steps,
            beta=1.0,
            generator=torch.Generator().manual_seed(0),
        )
        kl[steps] = float((loss - F.cross_entropy(model(x), y)).detach())
    assert kl[10] > 10 * max(kl[0], 1e-8)
    with pytest.raises(ConfigError, match="eps=-0.01 must be >= 0"):
        trades_loss(model, x, y, eps=-0.01)
