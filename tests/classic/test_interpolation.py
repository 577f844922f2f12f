import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.classic.interpolation import KINDS, resize
from cvcraft.errors import ConfigError


@pytest.mark.parametrize(
    "kind,mode,size",
    [
        ("bilinear", "bilinear", (29, 31)),
        ("bicubic", "bicubic", (29, 31)),
        ("bilinear", "bilinear", (7, 9)),
        ("area", "area", (6, 8)),
    ],
)
def test_resize_matches_torch(rng, kind, mode, size):
    x = rng.random((12, 16)).astype(np.float32)
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    ref = F.interpolate(torch.from_numpy(x)[None, None], size=size, mode=mode, **kw)[0, 0]
    np.testing.assert_allclose(resize(x, size, kind), ref.numpy(), atol=2e-6)


@pytest.mark.parametrize("kind", ["bilinear", "bicubic", "lanczos", "nearest"])
def test_upscale_by_3_keeps_the_original_samples(rng, kind):
    # with centres aligned, output pixel 3k+1 sits exactly on input pixel k
    x = rng.random((6, 7)).astype(np.float32)
    np.testing.assert_allclose(resize(x, (18, 21), kind)[1::3, 1::3], x, atol=1e-5)


@pytest.mark.parametrize("size", [(29, 31), (5, 6), (12, 16)])
def test_nearest_picks_the_pixel_whose_centre_is_closest(rng, size):
    # exact rational index floor((i + 0.5) * n_in / n_out); torch's float32 scale can
    # round the exact ties (e.g. 15.5 * 16 / 31 = 8) down
    x = rng.random((12, 16)).astype(np.float32)
    iy = ((2 * np.arange(size[0]) + 1) * 12) // (2 * size[0])
    ix = ((2 * np.arange(size[1]) + 1) * 16) // (2 * size[1])
    # at an exact tie (an output centre on a source pixel boundary) either pixel is nearest;
    # OpenCV's fixed-point scale picks one or the other
    ty = ((2 * np.arange(size[0]) + 1) * 12) % (2 * size[0]) == 0
    tx = ((2 * np.arange(size[1]) + 1) * 16) % (2 * size[1]) == 0
    out = resize(x, size, "nearest")
    ok = np.zeros(size, bool)
    for ay in (iy, iy - ty):
        for ax in (ix, ix - tx):
            ok |= out == x[ay][:, ax]
    assert ok.all()


def test_lanczos_matches_the_windowed_sinc_formula(rng):
    row = rng.random(10).astype(np.float32)
    out = resize(np.tile(row, (4, 1)), (4, 23), "lanczos")[0]
    xs = (np.arange(23) + 0.5) * 10 / 23 - 0.5
    taps = np.floor(xs).astype(int)[:, None] + np.arange(-3, 5)  # 8 taps
    w = np.sinc(xs[:, None] - taps) * np.sinc((xs[:, None] - taps) / 4)
    ref = (w / w.sum(1, keepdims=True) * row[np.clip(taps, 0, 9)]).sum(1)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_higher_order_kernels_are_more_accurate_on_a_smooth_signal():
    def f(y, x):
        return np.sin(x / 3.0) * np.cos(y / 4.0)

    small = np.fromfunction(f, (16, 16)).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    truth = f((yy + 0.5) / 4 - 0.5, (xx + 0.5) / 4 - 0.5)[8:-8, 8:-8]
    err = {
        k: np.abs(resize(small, (64, 64), k)[8:-8, 8:-8] - truth).mean()
        for k in ("nearest", "bilinear", "bicubic", "lanczos")
    }
    assert err["lanczos"] < err["bilinear"] < err["nearest"]


def test_area_downscale_is_block_mean(rng):
    x = rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)
    ref = x.reshape(4, 3, 6, 3, 3).astype(float).mean((1, 3))
    assert np.abs(resize(x, (4, 6), "area").astype(float) - ref).max() <= 0.5 + 1e-9
    assert resize(x[..., :1], (4, 6), "area").shape == (4, 6, 1)


def test_resize_errors():
    with pytest.raises(ConfigError, match="kind"):
        resize(np.zeros((4, 4)), (2, 2), "spline")
    with pytest.raises(ConfigError, match="positive"):
        resize(np.zeros((4, 4)), (0, 2))
    assert set(KINDS) == {"nearest", "bilinear", "bicubic", "area", "lanczos"}
