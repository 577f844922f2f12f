"""Our Felzenszwalb segmentation against scikit-image's (the oracle, dev extra)."""

import numpy as np
import pytest
from skimage.segmentation import felzenszwalb as sk_felzenszwalb
from sklearn.metrics import adjusted_rand_score

from cvcraft.classic.felzenszwalb import felzenszwalb, grid_edges
from cvcraft.data.detection_dataset import make_shapes_detection
from cvcraft.errors import ConfigError, DataError


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the label maps split the pixels the same way (up to renumbering): every
    label of one meets exactly one label of the other in the contingency table."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def _images() -> dict[str, np.ndarray]:
    g = np.random.default_rng(0)
    shapes = make_shapes_detection(2, imgsz=96, split="val")
    blocks = np.zeros((40, 60, 3), np.uint8)
    blocks[:, 20:40] = (200, 40, 40)
    blocks[:, 40:] = (40, 200, 40)
    return {
        "shapes0": shapes.sample(0).image,
        "shapes1": shapes.sample(1).image,
        "noise_rgb": g.integers(0, 256, (37, 51, 3), dtype=np.uint8),
        "noise_grey": g.integers(0, 256, (30, 23), dtype=np.uint8),
        "float_2ch": g.random((25, 31, 2)),  # float input is taken as is, any channel count
        "flat_blocks": blocks,  # many equal weights: the visiting order of ties matters
        "one_row": g.integers(0, 256, (1, 40, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("name", list(_images()))
@pytest.mark.parametrize(
    "scale,sigma,min_size",
    [(1, 0.8, 20), (50, 0.8, 50), (100, 0.5, 100), (300, 1.5, 5), (10, 0.0, 0), (0, 0.8, 0)],
)
def test_partition_equals_skimage(name, scale, sigma, min_size):
    img = _images()[name]
    ours = felzenszwalb(img, scale, sigma, min_size)
    ref = sk_felzenszwalb(img, scale, sigma, min_size, channel_axis=None if img.ndim == 2 else -1)
    assert ours.shape == img.shape[:2]
    assert same_partition(ours, ref)
    # both number regions by their first pixel in raster order, so even the labels agree
    np.testing.assert_array_equal(ours, ref)


def test_boundaries():
    img = _images()["shapes0"]
    assert felzenszwalb(img, 1e9, 0.8, 0).max() == 0  # huge k: one region
    # k = 0 and no min_size: only zero-weight edges join, so a noise image stays pixels
    noise = _images()["noise_rgb"]
    assert felzenszwalb(noise, 0, 0, 0).max() + 1 == noise.shape[0] * noise.shape[1]
    assert felzenszwalb(np.zeros((1, 1, 3), np.uint8)).tolist() == [[0]]
    # min_size is honoured: no region below it (unless the image is smaller)
    labels = felzenszwalb(img, 1, 0.8, 30)
    assert np.bincount(labels.ravel()).min() >= 30
    # a flat image is one region whatever k is
    assert felzenszwalb(np.full((9, 7, 3), 77, np.uint8), 1, 0.8, 0).max() == 0


def test_grid_edges_are_the_8_neighbours_once():
    e = grid_edges(3, 4)
    assert len(e) == 3 * 3 + 2 * 4 + 2 * 2 * 3  # right + down + two diagonals
    assert len({tuple(sorted(p)) for p in e.tolist()}) == len(e)
    rc = np.stack(np.divmod(e, 4), -1)  # (E, 2 ends, row/col)
    assert np.abs(rc[:, 0] - rc[:, 1]).max() == 1


def test_a_broken_threshold_is_caught():
    """The oracle comparison can fail: a k/|C| bonus of twice the size (k/2|C|) changes the
    partition of a shapes image (the adjusted Rand index drops below 0.99)."""
    img = _images()["shapes0"]
    ref = sk_felzenszwalb(img, 100, 0.8, 0)
    ours = felzenszwalb(img, 50, 0.8, 0)  # same as halving k / |C|
    assert not same_partition(ours, ref)
    assert adjusted_rand_score(ref.ravel(), ours.ravel()) < 0.99


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="shape"):
        felzenszwalb(np.zeros(5))
    with pytest.raises(DataError, match="dtype"):
        felzenszwalb(np.zeros((4, 4), np.int32))
    with pytest.raises(ConfigError, match="scale"):
        felzenszwalb(np.zeros((4, 4)), scale=-1)
