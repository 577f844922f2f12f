"""FGSM / PGD / PGD-L2 against torchattacks with the same random start (to 1e-6)."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.attacks import fgsm, pgd, pgd_l2
from cvcraft.errors import ConfigError
from cvcraft.models import create_model

torchattacks = pytest.importorskip("torchattacks")

SEED = 1234


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(4, 3, 32, 32, generator=g)
    x[0, :, :4] = 0.0  # pixels at the domain's edges exercise the [0, 1] clipping
    x[1, :, :4] = 1.0
    return x, torch.tensor([0, 3, 5, 9])


def _ours_gen():
    return torch.Generator().manual_seed(SEED)


def _oracle(atk, x, y):
    torch.manual_seed(SEED)  # torchattacks draws its start from the global generator
    return atk(x, y)


def test_fgsm_matches_torchattacks(model, batch):
    x, y = batch
    for eps in (0.0, 4 / 255, 8 / 255):
        expected = torchattacks.FGSM(model, eps=eps)(x, y)
        torch.testing.assert_close(fgsm(model, x, y, eps), expected, atol=1e-6, rtol=0)


def test_pgd_random_starts_coincide(model, batch):
    # steps=0 returns the clipped random start: proves both draw the same numbers
    x, y = batch
    got = pgd(model, x, y, 8 / 255, 2 / 255, steps=0, generator=_ours_gen())
    expected = _oracle(torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=0), x, y)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert float((got - x).abs().max()) > 4 / 255  # the start really is random


@pytest.mark.parametrize("eps,alpha,steps", [(8 / 255, 2 / 255, 10), (2 / 255, 0.5 / 255, 3)])
def test_pgd_matches_torchattacks(model, batch, eps, alpha, steps):
    x, y = batch
    got = pgd(model, x, y, eps, alpha, steps, generator=_ours_gen())
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.testing.assert_close(got, _oracle(atk, x, y), atol=1e-6, rtol=0)
    assert float((got - x).abs().max()) <= eps + 1e-6
    assert got.min() >= 0 and got.max() <= 1
    # without a random start too
    got = pgd(model, x, y, eps, alpha, steps, random_start=False)
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    torch.testing.assert_close(got, atk(x, y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("eps,alpha,steps", [(0.5, 0.1, 10), (1.5, 0.4, 4)])
def test_pgd_l2_matches_torchattacks(model, batch, eps, alpha, steps):
    x, y = batch
    got = pgd_l2(model, x, y, eps, alpha, steps, generator=_ours_gen())
    atk = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.testing.assert_close(got, _oracle(atk, x, y), atol=1e-6, rtol=0)
    assert float((got - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5


def test_pgd_raises_the_loss(model, batch):
    x, y = batch
    clean = F.cross_entropy(model(x), y)
    adv = pgd(model, x, y, 8 / 255, 2 / 255, 10, generator=_ours_gen())
    one = fgsm(model, x, y, 8 / 255)
    assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(one), y) > clean


def test_same_generator_same_attack(model, batch):
    x, y = batch
    a = pgd(model, x, y, generator=_ours_gen())
    b = pgd(model, x, y, generator=_ours_gen())
    assert torch.equal(a, b)


def test_bad_inputs(model, batch):
    x, y = batch
    with pytest.raises(ConfigError, match=r"eps=-0.1 must be >= 0"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ConfigError, match="eps=-1 must be >= 0"):
        pgd(model, x, y, eps=-1)
    with pytest.raises(ConfigError, match="alpha=0 must be > 0"):
        pgd_l2(model, x, y, eps=0.5, alpha=0)
    with pytest.raises(ConfigError, match="steps=-2"):
        pgd(model, x, y, steps=-2)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        pgd(model, x * 255, y)
    with pytest.raises(ConfigError, match="float batch"):
        fgsm(model, (x * 255).to(torch.uint8), y, 0.1)
