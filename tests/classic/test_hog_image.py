"""The HOG picture against skimage.feature.hog(visualize=True), and the vectorised
Bresenham lines against skimage.draw.line."""

import numpy as np
import pytest
from classic_images import textured
from skimage.draw import line
from skimage.feature import hog as sk_hog

from cvcraft.classic.hog import hog, hog_image, line_pixels
from cvcraft.errors import DataError


def test_line_pixels_equal_skimage_draw_line(rng):
    ends = rng.integers(-25, 25, (400, 4))
    ends[:5] = [[0, 0, 0, 0], [3, 3, 3, 9], [3, 3, 9, 3], [0, 0, 7, 7], [5, 1, -4, 2]]
    rows, cols, valid = line_pixels(*ends.T)
    for j, e in enumerate(ends):
        expect = np.stack(line(*map(int, e)))
        np.testing.assert_array_equal(np.stack([rows[j][valid[j]], cols[j][valid[j]]]), expect)


@pytest.mark.parametrize("orientations, cell", [(9, 8), (8, 6), (12, 16), (9, 4)])
def test_hog_image_equals_skimage(rng, orientations, cell):
    im = textured(rng, 64, 72)
    _, expect = sk_hog(im, orientations, (cell, cell), (1, 1), visualize=True)
    ours = hog_image(im, orientations, cell)
    assert ours.shape == expect.shape
    np.testing.assert_allclose(ours, expect, atol=1e-6 * expect.max())  # skimage: float32 sums


def test_hog_image_colour_and_cells(rng):
    im = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    _, expect = sk_hog(im, 9, (8, 8), (2, 2), visualize=True, channel_axis=-1)
    np.testing.assert_allclose(hog_image(im, channel_axis=-1), expect, atol=1e-6 * expect.max())
    cells = hog(im, 9, 8, 1, channel_axis=-1, return_cells=True)
    assert cells.shape == (5, 6, 9)
    with pytest.raises(DataError, match="one image"):
        hog_image(im)  # a colour image without channel_axis looks like a batch
