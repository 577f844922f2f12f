"""HSVJitter and Cutout through the transform classes."""

import numpy as np

from cvcraft.structures import Sample
from cvcraft.transforms import Cutout, HSVJitter


def test_hsv_zero_gains_is_identity():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for seed in range(3):
        assert np.array_equal(HSVJitter(0, 0, 0)(img, seed), img)


def test_hsv_params_in_range_and_applied():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    t = HSVJitter(0.1, 0.5, 0.3)
    for seed in range(20):
        out, p = t(img, seed, record=True)
        assert (
            abs(p["hue_shift"]) <= 0.1
            and 0.5 <= p["sat_gain"] <= 1.5
            and 0.7 <= p["val_gain"] <= 1.3
        )
        assert np.array_equal(t.replay(Sample(img), p).image, out)
    # value gain on a grey image: the only effect is scaling the grey level
    grey = np.full((4, 4, 3), 100, np.uint8)
    out, p = HSVJitter(0, 0, 0.3)(grey, 1, record=True)
    assert np.abs(out.astype(float) - np.clip(100 * p["val_gain"], 0, 255)).max() <= 1


def test_hsv_keeps_targets():
    s = Sample(
        np.zeros((8, 8, 3), np.uint8), boxes=[[1, 1, 4, 4]], semantic_mask=np.ones((8, 8), np.uint8)
    )
    out = HSVJitter()(s, 0)
    assert np.array_equal(out.boxes, s.boxes) and out.semantic_mask is s.semantic_mask


def test_cutout_fills_the_right_pixels():
    img = np.full((40, 50, 3), 200, np.uint8)
    # one 10x10 hole, fully inside whenever its centre is >= 5 px from the border
    for seed in range(30):
        out, p = Cutout(1, 10, fill=0)(img, seed, record=True)
        x1, y1, x2, y2 = p["rects"][0]
        assert (out == 0).all(-1).sum() == (x2 - x1) * (y2 - y1) <= 100
        assert (out[y1:y2, x1:x2] == 0).all()
    # several holes: the erased count equals the union of the recorded holes (loop oracle)
    out, p = Cutout(4, 0.3, fill=(1, 2, 3))(img, 5, record=True)
    union = np.zeros((40, 50), bool)
    for x1, y1, x2, y2 in p["rects"]:
        union[y1:y2, x1:x2] = True
    assert ((out == [1, 2, 3]).all(-1) == union).all()
    assert union.sum() > 0 and (out[~union] == 200).all()
    # fraction of the shorter side: 0.3 * 40 = 12 px holes
    assert Cutout(1, 0.3).hole_size(40, 50) == (12, 12)


def test_cutout_mean_fill_and_probability():
    img = np.zeros((10, 10, 3), np.uint8)
    img[:, :5] = 100
    out = Cutout(1, 4, fill="mean")(img, 0)
    changed = (out != img).any(-1)
    assert (out[changed] == 50).all()
    kept = sum(np.array_equal(Cutout(1, 4, p=0.25)(img + 1, s), img + 1) for s in range(400))
    assert 0.68 < kept / 400 < 0.82
