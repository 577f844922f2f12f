"""Gaussian heatmap targets and argmax + quarter-offset decoding against loop oracles."""

import math

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.heatmaps import decode_heatmaps, gaussian_heatmaps


def test_targets_match_a_loop_oracle():
    kp = torch.tensor([[[10.3, 20.7, 2], [0.0, 63.9, 1], [5, 5, 0], [70, 5, 2]]])
    target, weight = gaussian_heatmaps(kp, (16, 16), 4, sigma=1.5)
    assert weight.tolist() == [[1, 1, 0, 0]]  # unlabelled, outside the 64 px input
    for k in range(2):
        mx, my = kp[0, k, 0].item() / 4 - 0.5, kp[0, k, 1].item() / 4 - 0.5
        for i in range(16):
            for j in range(16):
                want = math.exp(-((j - mx) ** 2 + (i - my) ** 2) / (2 * 1.5**2))
                assert target[0, k, i, j].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert target[0, 2:].abs().max() == 0


def _decode_oracle(hm: np.ndarray, stride: float):
    h, w = hm.shape
    i, j = np.unravel_index(np.argmax(hm), hm.shape)
    dx = np.sign(hm[i, j + 1] - hm[i, j - 1]) * 0.25 if 0 < j < w - 1 else 0.0
    dy = np.sign(hm[i + 1, j] - hm[i - 1, j]) * 0.25 if 0 < i < h - 1 else 0.0
    return ((j + dx + 0.5) * stride, (i + dy + 0.5) * stride), hm[i, j]


def test_decoding_matches_a_loop_oracle_and_is_sub_pixel():
    rng = np.random.default_rng(0)
    hm = rng.random((3, 5, 12, 10)).astype(np.float32)
    hm[0, 0, 0, 3] = 5  # peaks on the borders: no step outwards
    hm[0, 1, 11, 9] = 5
    xy, score = decode_heatmaps(torch.from_numpy(hm), 4)
    for n in range(3):
        for k in range(5):
            (x, y), s = _decode_oracle(hm[n, k], 4)
            assert xy[n, k].tolist() == pytest.approx([x, y])
            assert score[n, k].item() == pytest.approx(s)
    # a Gaussian rendered at a random point decodes within a quarter cell (+ the half-step)
    kp = torch.tensor(rng.uniform(8, 56, (1, 20, 2)), dtype=torch.float32)
    kp = torch.cat([kp, torch.full((1, 20, 1), 2.0)], -1)
    t, _ = gaussian_heatmaps(kp, (16, 16), 4, 2.0)
    got, _ = decode_heatmaps(t, 4)
    assert (got - kp[..., :2]).abs().max() <= 4 * 0.25 + 1e-5


def test_bad_input():
    with pytest.raises(DataError, match=r"\(N, K, 3\)"):
        gaussian_heatmaps(torch.zeros(2, 3), (4, 4), 4)
    with pytest.raises(ConfigError, match="sigma > 0"):
        gaussian_heatmaps(torch.zeros(1, 2, 3), (4, 4), 4, sigma=0)
    with pytest.raises(DataError, match=r"\(N, K, h, w\)"):
        decode_heatmaps(torch.zeros(3, 4, 4), 4)


def test_dark_recovers_a_gaussian_peak_exactly():
    from cvcraft.ops.heatmaps import decode_heatmaps_dark

    rng = np.random.default_rng(1)
    kp = torch.tensor(rng.uniform(12, 52, (2, 9, 2)), dtype=torch.float64)
    kp = torch.cat([kp, torch.full((2, 9, 1), 2.0, dtype=torch.float64)], -1)
    t, _ = gaussian_heatmaps(kp, (16, 16), 4, 2.0)
    t = t.double() * 0.8
    exact, score = decode_heatmaps_dark(t, 4, sigma=None)  # log of a Gaussian is quadratic
    assert (exact - kp[..., :2]).abs().max() < 1e-4 and score.max() <= 0.8 + 1e-6
    blurred, _ = decode_heatmaps_dark(t, 4, sigma=2.0)  # blur + Taylor: still near exact
    quarter, _ = decode_heatmaps(t, 4)
    err_dark = (blurred - kp[..., :2]).norm(dim=-1).mean()
    err_quarter = (quarter - kp[..., :2]).norm(dim=-1).mean()
    assert err_dark < 0.1 * 4 and err_dark < err_quarter  # under a tenth of a cell
    edge = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    edge[0, 0, 0, 1] = 1.0  # a peak by the border keeps the plain argmax
    xy, _ = decode_heatmaps_dark(edge, 2, sigma=None)
    assert xy[0, 0].tolist() == [3.0, 1.0]
