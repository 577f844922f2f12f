"""Composed digit lines: labels match the pasted MNIST digits, train and val use disjoint
digit images, lines replay from (seed, epoch, index), and the collate layout CTC needs."""

from __future__ import annotations

import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.tasks.recognize.data import (
    DigitStrings,
    collate_lines,
    compose_line,
    ink_crop,
    load_digit_images,
    split_digits,
)


def _fake_digits():
    """Digit k is a block k+1 px wide, so a line's ink runs spell its labels."""
    d = np.zeros((10, 28, 28), np.uint8)
    for k in range(10):
        d[k, 4:24, 10 : 11 + k] = 200
    return d, np.arange(10)


def test_compose_line_labels_and_ink():
    digits, labels = _fake_digits()
    for seed in range(20):
        img, lab = compose_line(digits, labels, np.random.default_rng(seed), 2, 5, 32, 128)
        assert img.shape == (32, 128) and img.dtype == np.uint8 and 2 <= len(lab) <= 5
        ink = (img.max(0) > 0).astype(int)
        starts = np.flatnonzero(np.diff(np.r_[0, ink]) == 1)
        ends = np.flatnonzero(np.diff(np.r_[ink, 0]) == -1)
        widths = (ends - starts + 1).tolist()
        # digits are pasted 1-6 px apart, no squeeze here: ink run k is digit k's width
        assert widths == [k + 1 for k in lab]
    a = compose_line(digits, labels, np.random.default_rng(3), 2, 5)
    b = compose_line(digits, labels, np.random.default_rng(3), 2, 5)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_too_wide_lines_are_squeezed_to_fit():
    digits = np.full((10, 28, 28), 255, np.uint8)
    img, lab = compose_line(digits, np.arange(10), np.random.default_rng(0), 6, 6, 32, 64)
    assert len(lab) == 6 and img.shape == (32, 64) and (img.max(0) > 0).sum() <= 62


def test_split_is_disjoint_and_dataset_replays():
    tr, va = split_digits(1000, 0.15, seed=0)
    assert len(va) == 150 and len(tr) == 850 and not set(tr) & set(va)
    assert np.array_equal(np.sort(np.r_[tr, va]), np.arange(1000))
    digits, labels = _fake_digits()
    train = DigitStrings(digits, labels, 8, 0, 1, 4, 32, 96)
    val = DigitStrings(digits, labels, 8, 0, 1, 4, 32, 96, fixed=True)
    assert train[(0, 3)]["label"] == train[(0, 3)]["label"]
    assert any(train[(0, i)]["label"] != train[(1, i)]["label"] for i in range(8))  # new lines
    assert all(val[(0, i)]["label"] == val[(5, i)]["label"] for i in range(8))  # fixed
    batch = collate_lines([train[(0, i)] for i in range(4)])
    assert batch["images"].shape == (4, 1, 32, 96)
    assert batch["targets"].min() >= 1  # class 0 is the blank
    assert int(batch["target_lengths"].sum()) == batch["targets"].numel()
    assert batch["texts"][0] == "".join(str(c) for c in train[(0, 0)]["label"])


def test_mnist_digits_and_errors(shared_data, tmp_path):
    x, y = load_digit_images(shared_data / "mnist")
    assert x.shape == (10000, 28, 28) and set(np.unique(y)) == set(range(10))
    assert ink_crop(x[0]).shape[1] < 28
    with pytest.raises(DataError, match="no such folder"):
        load_digit_images(tmp_path / "nope")
    with pytest.raises(DataError, match="images-idx3-ubyte"):
        load_digit_images(tmp_path)


def test_jitter_digit_is_a_small_affine_change():
    from cvcraft.tasks.recognize.data import jitter_digit

    d = np.zeros((28, 28), np.uint8)
    d[6:22, 12:16] = 255
    ys, xs = np.nonzero(d)
    for seed in range(10):
        j = jitter_digit(d, np.random.default_rng(seed))
        assert j.shape == d.shape and j.dtype == np.uint8
        jy, jx = np.nonzero(j > 127)
        # the centre moves by the shift (<= 2 px) and the rest of the warp about the centre
        assert abs(jy.mean() - ys.mean()) <= 3 and abs(jx.mean() - xs.mean()) <= 3
        assert 0.6 < (j > 127).sum() / (d > 127).sum() < 1.4  # scale 0.85-1.1 in area
    assert not np.array_equal(jitter_digit(d, np.random.default_rng(0)), d)


def test_config_errors():
    from cvcraft.engine.config import build_config
    from cvcraft.errors import ConfigError
    from cvcraft.tasks.recognize.config import RecognizeConfig

    with pytest.raises(ConfigError, match="multiple of 16"):
        build_config(RecognizeConfig, {"imgsz": 40})
    with pytest.raises(ConfigError, match="min_len"):
        build_config(RecognizeConfig, {"min_len": 4, "max_len": 3})
    with pytest.raises(ConfigError, match="jitter"):
        build_config(RecognizeConfig, {"augment": [{"hflip": 0.5}]})


def test_split_and_val_lines_follow_split_seed_not_seed(shared_data):
    from types import SimpleNamespace

    from cvcraft.tasks.recognize.data import load_digit_strings

    def cfg(seed, split_seed):
        return SimpleNamespace(data=shared_data / "mnist", val_fraction=0.15, seed=seed,
                               split_seed=split_seed, train_strings=4, val_strings=4,
                               min_len=3, max_len=5, imgsz=32, line_width=128,
                               jitter=True)  # fmt: skip

    a, b, c = load_digit_strings(cfg(0, 0)), load_digit_strings(cfg(1, 0)), None
    assert np.array_equal(a.val.digits, b.val.digits)  # the same held-out images
    assert all(np.array_equal(a.val[(0, i)]["image"], b.val[(0, i)]["image"]) for i in range(4))
    assert not np.array_equal(a.train[(0, 0)]["image"], b.train[(0, 0)]["image"])
    c = load_digit_strings(cfg(0, 1))
    assert not np.array_equal(a.val.digits, c.val.digits)
