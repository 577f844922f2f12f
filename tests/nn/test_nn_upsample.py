import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.nn.upsample import PixelShuffleUpsample, TransposedUpsample, Upsample


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_upsample_matches_interpolate(mode):
    x = torch.randn(2, 3, 5, 6)
    kw = {} if mode == "nearest" else {"align_corners": False}
    ref = F.interpolate(x, scale_factor=2, mode=mode, **kw)
    torch.testing.assert_close(Upsample(2, mode)(x), ref)
    assert Upsample(3, mode)(x).shape == (2, 3, 15, 18)


def test_nearest_upsample_repeats_pixels():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    ref = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(Upsample(2, "nearest")(x), ref)


def test_upsample_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="nearest"):
        Upsample(2, "area")


def test_transposed_upsample_shape_and_norm_act():
    m = TransposedUpsample(4, 3, scale=2, norm="batchnorm", act="relu")
    y = m(torch.randn(2, 4, 5, 7))
    assert y.shape == (2, 3, 10, 14) and (y >= 0).all()
    assert m.conv.bias is None


def test_pixel_shuffle_equals_hand_reshape():
    torch.manual_seed(0)
    m = PixelShuffleUpsample(4, 3, scale=2, icnr=False)
    x = torch.randn(2, 4, 5, 6)
    z = m.conv(x)  # (2, 12, 5, 6)
    r = 2
    # channel c*r*r + i*r + j at (y, x) -> channel c at (r*y + i, r*x + j)
    ref = z.view(2, 3, r, r, 5, 6).permute(0, 1, 4, 2, 5, 3).reshape(2, 3, 10, 12)
    torch.testing.assert_close(m(x), ref)


def test_icnr_init_equals_nearest_upsampled_conv():
    torch.manual_seed(0)
    m = PixelShuffleUpsample(4, 3, scale=3, icnr=True)
    x = torch.randn(1, 4, 5, 5)
    w = m.conv.weight[::9]  # one filter per output channel
    b = m.conv.bias[::9]
    ref = F.interpolate(F.conv2d(x, w, b, padding=1), scale_factor=3, mode="nearest")
    torch.testing.assert_close(m(x), ref)
    assert m(x).shape == (1, 3, 15, 15)
