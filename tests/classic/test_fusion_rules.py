"""Classical fusion baselines: average and max against numpy, Laplacian-pyramid fusion
against a second implementation written here on OpenCV's pyrDown/pyrUp."""

import cv2
import numpy as np
import pytest

from cvcraft.classic.fusion import average_fusion, fuse_classical, laplacian_fusion, max_fusion
from cvcraft.errors import ConfigError, DataError


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (37, 50), dtype=np.uint8),
            rng.integers(0, 256, (37, 50), dtype=np.uint8))  # fmt: skip


def test_average_and_max(pair):
    a, b = pair
    want = np.clip(np.rint((a.astype(float) + b) / 2), 0, 255).astype(np.uint8)
    assert np.array_equal(average_fusion(a, b), want)
    assert np.array_equal(max_fusion(a, b), np.maximum(a, b))
    assert np.array_equal(fuse_classical(a, b, "max"), np.maximum(a, b))


def _lap_oracle(a, b, levels):
    def lap(x):
        g = [x.astype(np.float32)]
        for _ in range(levels - 1):
            g.append(cv2.pyrDown(g[-1]))
        bands = [g[k] - cv2.pyrUp(g[k + 1], dstsize=g[k].shape[::-1]) for k in range(levels - 1)]
        return bands, g[-1]

    (ba, ta), (bb, tb) = lap(a), lap(b)
    out = (ta + tb) / 2
    for la, lb in zip(ba[::-1], bb[::-1]):
        out = np.where(np.abs(la) >= np.abs(lb), la, lb) + cv2.pyrUp(out, dstsize=la.shape[::-1])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_laplacian_fusion_matches_an_opencv_oracle(pair):
    a, b = pair
    for levels in (1, 3, 4):
        got = laplacian_fusion(a, b, levels)
        assert np.abs(got.astype(int) - _lap_oracle(a, b, levels)).max() <= 1
    assert np.abs(laplacian_fusion(a, a).astype(int) - a).max() <= 1  # fusing a with a is a


def test_bad_input(pair):
    a, _ = pair
    with pytest.raises(DataError, match="one shape"):
        max_fusion(a, a[:-1])
    with pytest.raises(ConfigError, match="rule 'min' unknown"):
        fuse_classical(a, a, "min")
