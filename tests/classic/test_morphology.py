import numpy as np
import pytest
import skimage.morphology as skm

from cvcraft.classic.morphology import (
    blackhat,
    closing,
    dilate,
    erode,
    morph_gradient,
    opening,
    skeleton,
    skeleton_parts,
    structuring_element,
    tophat,
)
from cvcraft.errors import ConfigError, DataError


@pytest.mark.parametrize("shape", ["rect", "ellipse", "cross"])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_grey_morphology_matches_skimage(rng, shape, k, dtype):
    x = rng.integers(0, 256, (23, 29)).astype(dtype)
    se = structuring_element(shape, k)
    pairs = [
        (erode, skm.erosion),
        (dilate, skm.dilation),
        (opening, skm.opening),
        (closing, skm.closing),
        (tophat, skm.white_tophat),
        (blackhat, skm.black_tophat),
    ]
    for ours, ref in pairs:
        np.testing.assert_array_equal(ours(x, se), ref(x, se, mode="ignore"), err_msg=ours.__name__)
    np.testing.assert_array_equal(
        morph_gradient(x, se),
        skm.dilation(x, se, mode="ignore") - skm.erosion(x, se, mode="ignore"),
    )


def test_iterations_compose(rng):
    x = rng.integers(0, 256, (15, 15)).astype(np.uint8)
    np.testing.assert_array_equal(erode(x, iterations=2), erode(erode(x)))


def test_skeleton_against_skimage_erosions_and_reconstruction(rng):
    a = np.zeros((40, 50), bool)
    a[5:30, 8:20] = True
    a[18:35, 15:45] = True
    se = structuring_element("cross", 3)
    # oracle: Lantuejoul's formula evaluated with scikit-image's binary erosion / opening
    ref = np.zeros_like(a)
    cur = a.copy()
    while cur.any():
        ref |= cur & ~skm.opening(cur, se, mode="ignore")
        cur = skm.erosion(cur, se, mode="ignore")
    np.testing.assert_array_equal(skeleton(a, se), ref)
    # reconstruction: A = U_k dilate^k(S_k)
    rec = np.zeros_like(a)
    for k, part in enumerate(skeleton_parts(a, se)):
        p = part.astype(np.uint8)
        for _ in range(k):
            p = dilate(p, se)
        rec |= p.astype(bool)
    np.testing.assert_array_equal(rec, a)
    assert skeleton(a, se).sum() < a.sum() / 4


def test_morphology_errors(rng):
    with pytest.raises(ConfigError, match="odd"):
        structuring_element("rect", 4)
    with pytest.raises(ConfigError, match="shape"):
        structuring_element("disk", 3)
    with pytest.raises(ConfigError, match="odd sizes"):
        erode(np.zeros((5, 5), np.uint8), np.ones((2, 2)))
    with pytest.raises(DataError, match="empty"):
        dilate(np.zeros((0, 3), np.uint8))
    with pytest.raises(DataError, match="dtype"):
        skeleton(np.zeros((4, 4), np.float32))
    with pytest.raises(ConfigError, match="iterations"):
        erode(np.zeros((5, 5), np.uint8), iterations=0)
