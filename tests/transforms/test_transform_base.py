"""Containers, probabilities, seeding and replay."""

import numpy as np
import pytest

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import (
    Compose,
    Cutout,
    HorizontalFlip,
    HSVJitter,
    OneOf,
    RandomAffine,
    RandomApply,
    RandomResizedCrop,
    VerticalFlip,
)


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return Sample(img, label=1, boxes=[[5, 5, 40, 30]], box_labels=[2])


def pipeline():
    return Compose(
        [
            RandomResizedCrop(32, scale=(0.3, 1.0)),
            HorizontalFlip(0.5),
            RandomApply(RandomAffine(15, 0.1), p=0.5),
            OneOf([HSVJitter(0.02, 0.5, 0.3), VerticalFlip(1.0)], weights=[2, 1]),
            Cutout(1, 0.25, p=0.5),
        ]
    )


def test_same_seed_same_output_different_seed_differs(sample):
    t = pipeline()
    a, b = t(sample, 42), t(sample, np.random.default_rng(42))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    outs = [t(sample, [7, 0, i]).image for i in range(5)]
    assert all(not np.array_equal(outs[0], o) for o in outs[1:])


def test_replay_gives_identical_output(sample):
    t = pipeline()
    for seed in range(10):
        out, params = t(sample, seed, record=True)
        assert len(params["steps"]) == len(t)
        for replayed in (t.replay(sample, params), t.replay(sample, params["steps"])):
            assert np.array_equal(replayed.image, out.image)
            assert np.array_equal(replayed.boxes, out.boxes)


def test_probabilities(sample):
    flip0, flip1 = HorizontalFlip(0.0), HorizontalFlip(1.0)
    assert flip0(sample, 0) is sample
    assert np.array_equal(flip1(sample, 0).image, sample.image[:, ::-1])
    applied = [
        RandomApply(HorizontalFlip(1.0), p=0.3)(sample, s, record=True)[1] for s in range(400)
    ]
    rate = np.mean([not p.get("_skipped") for p in applied])
    assert 0.23 < rate < 0.37
    picks = [
        OneOf([HorizontalFlip(1.0), VerticalFlip(1.0)], [3, 1])(sample, s, record=True)[1]["index"]
        for s in range(400)
    ]
    assert 0.68 < np.mean(np.array(picks) == 0) < 0.82


def test_bare_image_call_and_no_mutation(sample):
    img = sample.image.copy()
    out = pipeline()(sample.image, 3)
    assert isinstance(out, np.ndarray) and out.shape == (32, 32, 3)
    assert np.array_equal(sample.image, img)


def test_bad_arguments():
    with pytest.raises(
        ConfigError, match=r"HorizontalFlip: probability p must be in \[0, 1\], got 1\.5"
    ):
        HorizontalFlip(1.5)
    with pytest.raises(
        ConfigError, match=r"OneOf: weights \[1, 2\] must be one non-negative per transform"
    ):
        OneOf([HorizontalFlip()], weights=[1, 2])
    with pytest.raises(ConfigError, match="Compose expects Transform objects, got function"):
        Compose([lambda s: s])
    with pytest.raises(ConfigError, match="recorded steps"):
        Compose([HorizontalFlip()]).replay(Sample(np.zeros((2, 2, 3), np.uint8)), [{}, {}])


def test_float32_images_go_through_the_pipeline(sample):
    t = pipeline()
    f = sample.replace(image=sample.image.astype(np.float32))
    out_f, params = t(f, 11, record=True)
    out_u = t.replay(sample, params)
    assert out_f.image.dtype == np.float32 and out_f.image.shape == out_u.image.shape
    # same geometry on both dtypes: the float result rounds to (about) the uint8 one
    assert np.abs(out_f.image - out_u.image.astype(np.float32)).mean() < 1.0
