"""DropBlock against the paper's gamma and an exact per-position drop probability computed by a
reference loop, over many random masks; block structure against a reference loop."""

import itertools

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.nn.dropblock import DropBlock, block_mask, drop_block, dropblock_gamma


def _exact_drop_probability(h: int, w: int, b: int, gamma: float) -> np.ndarray:
    """P(unit dropped) = 1 - (1 - gamma)^(valid seeds whose block covers the unit)."""
    r = b // 2
    prob = np.zeros((h, w))
    for i, j in itertools.product(range(h), range(w)):  # reference loop
        n = 0
        for si, sj in itertools.product(range(r, h - r), range(r, w - r)):
            n += abs(si - i) <= r and abs(sj - j) <= r
        prob[i, j] = 1 - (1 - gamma) ** n
    return prob


def test_gamma_is_the_papers_formula():
    # Ghiasi et al. eq. (1): (1 - keep) / b^2 * f^2 / (f - b + 1)^2
    keep, b, f = 0.9, 7, 19
    paper = (1 - keep) / b**2 * f**2 / (f - b + 1) ** 2
    assert dropblock_gamma(1 - keep, b, f, f) == pytest.approx(paper)


@pytest.mark.parametrize("h,w,b,p", [(9, 9, 3, 0.2), (8, 11, 5, 0.15)])
def test_per_position_drop_frequency_matches_exact_probability(h, w, b, p):
    g = torch.Generator().manual_seed(0)
    x = torch.ones(500, 8, h, w)  # 4000 independent masks
    out = drop_block(x, p, b, training=True, generator=g)
    dropped = (out == 0).double().mean((0, 1)).numpy()  # (H, W) empirical frequency
    exact = _exact_drop_probability(h, w, b, dropblock_gamma(p, b, h, w))
    sigma = np.sqrt(exact * (1 - exact) / 4000) + 1e-9
    assert np.all(np.abs(dropped - exact) < 5 * sigma + 1e-3)


def test_dropped_fraction_is_about_drop_prob():
    # without overlaps the paper's gamma drops exactly drop_prob of the units on average
    g = torch.Generator().manual_seed(1)
    p = 0.03
    out = drop_block(torch.ones(200, 16, 32, 32), p, 7, generator=g)
    frac = float((out == 0).float().mean())
    assert 0.9 * p < frac < 1.01 * p


def test_block_mask_equals_reference_squares():
    rng = np.random.default_rng(0)
    seeds = (rng.random((2, 3, 10, 12)) < 0.05).astype(np.float32)
    ref = np.ones_like(seeds)
    for bi, ci, i, j in zip(*np.nonzero(seeds)):  # reference loop over the few seeds
        ref[bi, ci, max(i - 2, 0) : i + 3, max(j - 2, 0) : j + 3] = 0
    assert np.array_equal(block_mask(torch.from_numpy(seeds), 5).numpy(), ref)


def test_survivors_rescaled_to_keep_the_sum_and_eval_is_identity():
    x = torch.ones(4, 3, 16, 16)
    out = drop_block(x, 0.2, 3, generator=torch.Generator().manual_seed(2))
    assert float(out.sum()) == pytest.approx(x.numel(), rel=1e-5)
    kept = out[out != 0]
    assert torch.allclose(kept, kept[0].expand_as(kept))
    layer = DropBlock(0.5, 3).eval()
    y = torch.randn(2, 3, 8, 8)
    assert torch.equal(layer(y), y)


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="odd"):
        DropBlock(0.1, 4)
    with pytest.raises(ConfigError, match="drop_prob"):
        DropBlock(1.0, 3)
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        drop_block(torch.ones(3, 8, 8), 0.1, 3)
