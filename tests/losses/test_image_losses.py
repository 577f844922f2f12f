import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from pytorch_msssim import ms_ssim as pm_ms_ssim
from pytorch_msssim import ssim as pm_ssim
from skimage.metrics import structural_similarity

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses import build_loss
from cvcraft.losses.image import gradient_loss, ms_ssim, ssim


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 170, 181, generator=g, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_ssim_matches_pytorch_msssim_and_skimage(pair):
    x, y = pair
    ours = ssim(x, y, 1.0)
    torch.testing.assert_close(
        ours, pm_ssim(x, y, data_range=1.0, size_average=False), atol=1e-6, rtol=0
    )
    a, b = x[1].permute(1, 2, 0).numpy(), y[1].permute(1, 2, 0).numpy()
    ref = structural_similarity(
        a,
        b,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert ours[1].item() == pytest.approx(ref, abs=1e-12)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0])


def test_ms_ssim_matches_pytorch_msssim(pair):
    x, y = pair
    torch.testing.assert_close(
        ms_ssim(x, y, 1.0),
        pm_ms_ssim(x, y, data_range=1.0, size_average=False),
        atol=1e-6,
        rtol=0,
    )
    x8, y8 = x * 255, y * 255
    torch.testing.assert_close(
        ms_ssim(x8, y8, 255.0),
        pm_ms_ssim(x8, y8, data_range=255, size_average=False),
        atol=1e-6,
        rtol=0,
    )


def test_ssim_losses_are_differentiable_and_registered(pair):
    x, y = pair
    p = x.clone().float().requires_grad_(True)
    loss = build_loss("ssim")(p, y.float())
    loss.backward()
    assert 0 < loss.item() < 1 and p.grad.abs().sum() > 0
    # gradient check in float64 on a small window
    a = x[:1, :1, :24, :24].clone().requires_grad_(True)
    b = y[:1, :1, :24, :24]
    assert torch.autograd.gradcheck(lambda t: ssim(t, b, win_size=7), (a,))
    ms = build_loss("ms_ssim")(p, y.float())
    assert 0 < ms.item() < 1


def test_gradient_loss_matches_scipy_sobel(pair):
    x, y = pair
    ref = 0.0
    k = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    for kern in (k, k.T):  # per-image, per-channel 2-D Sobel with a replicated border
        gx = ndi.correlate(x.numpy(), kern[None, None], mode="nearest")
        gy = ndi.correlate(y.numpy(), kern[None, None], mode="nearest")
        ref += np.abs(gx - gy).mean()
    assert gradient_loss(x, y).item() == pytest.approx(ref, rel=1e-10)
    assert build_loss("gradient")(x, x).item() == 0


def test_image_loss_errors(pair):
    x, y = pair
    with pytest.raises(DataError, match="one shape"):
        ssim(x, y[..., :-1])
    with pytest.raises(DataError, match="smaller than"):
        ssim(x[..., :8, :8], y[..., :8, :8])
    with pytest.raises(DataError, match="160 px"):
        ms_ssim(x[..., :100, :100], y[..., :100, :100])
    with pytest.raises(ConfigError, match="odd"):
        ssim(x, y, win_size=8)
