"""Statistics vs numpy on the stacked pixels; normalizers vs hand formulas and torchvision."""

import json

import numpy as np
import pytest
import torch
import torchvision.transforms as T

from cvcraft.errors import ConfigError, DataError
from cvcraft.structures import Sample
from cvcraft.transforms import IMAGENET_STATS, Normalize, Normalizer, compute_stats, denormalize


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    # different sizes and skewed, channel-specific distributions
    out = []
    for i in range(12):
        h, w = rng.integers(8, 30, 2)
        img = rng.gamma(2.0 + i % 3, 20.0, (h, w, 3)) * np.array([1.0, 0.6, 1.8])
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def stacked(images):
    return np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64)


def test_stats_equal_numpy(images):
    st = compute_stats(images, percentiles=(1, 99))
    px = stacked(images)
    np.testing.assert_allclose(st["mean"], px.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st["std"], px.std(0), rtol=1e-10)
    np.testing.assert_array_equal(st["min"], px.min(0))
    np.testing.assert_array_equal(st["max"], px.max(0))
    np.testing.assert_allclose(st["median"], np.median(px, 0), atol=1e-9)
    np.testing.assert_allclose(st["p_low"], np.percentile(px, 1, axis=0), atol=1e-9)
    np.testing.assert_allclose(st["p_high"], np.percentile(px, 99, axis=0), atol=1e-9)
    for q in (0.5, 37.3, 99.9):  # interpolated percentiles too
        got = compute_stats(images, percentiles=(q, 100))["p_low"]
        np.testing.assert_allclose(got, np.percentile(px, q, axis=0), atol=1e-9)
    assert st["count"] == 12 and st["pixels"] == len(px)
    json.dumps(st)  # JSON-serialisable


def test_stats_callable_subset(images):
    seen = []

    def load(i):
        seen.append(i)
        return images[i]

    st = compute_stats(load, len(images), max_samples=5, seed=3)
    assert len(seen) == 5 and len(set(seen)) == 5
    np.testing.assert_allclose(st["mean"], stacked([images[i] for i in seen]).mean(0), rtol=1e-12)
    seen2 = []
    compute_stats(lambda i: seen2.append(i) or images[i], len(images), max_samples=5, seed=3)
    assert seen2 == seen  # seeded
    assert compute_stats(iter(images), max_samples=4)["count"] == 4


def test_stats_float_and_errors(images):
    f = [im.astype(np.float32) for im in images]
    st = compute_stats(f)
    np.testing.assert_allclose(st["mean"], stacked(images).mean(0), rtol=1e-10)
    np.testing.assert_allclose(st["median"], np.median(stacked(images), 0), atol=1e-9)
    with pytest.raises(DataError, match="channels"):
        compute_stats([images[0], images[1][..., :1]])
    with pytest.raises(DataError, match="compute_stats: no images were given"):
        compute_stats([])


def test_normalizer_formulas(images):
    st = compute_stats(images)
    x = torch.from_numpy(np.stack([im[:8, :8] for im in images])).permute(0, 3, 1, 2)  # uint8 NCHW
    xf = x.double()

    def ch(v):
        return torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1)

    expected = {
        "zscore": (xf - ch(st["mean"])) / ch(st["std"]),
        "minmax": (xf - ch(st["min"])) / (ch(st["max"]) - ch(st["min"])),
        "robust": (xf - ch(st["median"])) / (ch(st["p_high"]) - ch(st["p_low"])),
    }
    for mode, ref in expected.items():
        norm = Normalizer(st, mode)
        out = norm(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(norm(x.float()), out)  # float input in 0-255 units
        torch.testing.assert_close(norm.inverse(out), x.float(), atol=1e-3, rtol=0)
        # the numpy transform gives the same numbers on HWC
        img = images[0]
        np_out = Normalize(st, mode)(Sample(img), 0).image
        assert np_out.dtype == np.float32
        ref_hwc = norm(torch.from_numpy(img).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(np_out, ref_hwc, atol=1e-5)
        np.testing.assert_allclose(denormalize(np_out, st, mode), img, atol=1e-3)
        torch.testing.assert_close(denormalize(out, st, mode), x.float(), atol=1e-3, rtol=0)
    assert set(dict(Normalizer(st).named_buffers())) == {"offset", "inv_scale"}


def test_imagenet_matches_torchvision():
    x = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    ref = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(x.float() / 255)
    torch.testing.assert_close(Normalizer(IMAGENET_STATS)(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Normalizer("imagenet", "minmax")(x), x.float() / 255)


def test_normalizer_errors():
    with pytest.raises(ConfigError, match="compute_stats"):
        Normalizer(IMAGENET_STATS, "robust")
    with pytest.raises(ConfigError, match="mode"):
        Normalizer(IMAGENET_STATS, "zcore")
    with pytest.raises(DataError, match="channels"):
        Normalizer()(torch.zeros(1, 1, 4, 4))
    # a constant channel maps to 0 instead of inf
    st = compute_stats([np.full((4, 4, 3), 9, np.uint8)])
    assert torch.equal(
        Normalizer(st, "zscore")(torch.full((1, 3, 2, 2), 9)), torch.zeros(1, 3, 2, 2)
    )
