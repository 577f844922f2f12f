"""The fusion loss terms against independent oracles: numpy for the intensity term, OpenCV
Sobel (replicated border) for the gradient term, scikit-image SSIM for the SSIM term."""

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses import build_loss
from cvcraft.losses.fusion import FusionLoss, fusion_loss_terms


def _grad(x: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(x, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(x, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.abs(gx) + np.abs(gy)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    return structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)  # fmt: skip


def test_terms_match_numpy_opencv_and_skimage():
    rng = np.random.default_rng(0)
    n, h, w = 2, 23, 31
    f, a, b = (rng.random((n, 1, h, w)) for _ in range(3))
    terms = fusion_loss_terms(*(torch.from_numpy(v) for v in (f, a, b)))
    assert float(terms["intensity"]) == pytest.approx(np.abs(f - np.maximum(a, b)).mean(), 1e-12)
    grad = np.mean([np.abs(_grad(f[i, 0]) - np.maximum(_grad(a[i, 0]), _grad(b[i, 0]))).mean()
                    for i in range(n)])  # fmt: skip
    assert float(terms["gradient"]) == pytest.approx(grad, 1e-12)
    ssim = np.mean([(_ssim(a[i, 0], f[i, 0]) + _ssim(b[i, 0], f[i, 0])) / 2 for i in range(n)])
    assert float(terms["ssim"]) == pytest.approx(1 - ssim, abs=1e-10)


def test_weighted_sum_registry_and_gradients():
    rng = np.random.default_rng(1)
    f, a, b = (torch.from_numpy(rng.random((1, 1, 16, 16))) for _ in range(3))
    f.requires_grad_(True)
    loss = build_loss("fusion", intensity=2.0, gradient=0.5, ssim=3.0)
    total, items = loss(f, a, b)
    ref = 2.0 * items["intensity"] + 0.5 * items["gradient"] + 3.0 * items["ssim"]
    assert float(total.detach()) == pytest.approx(ref, 1e-12)
    total.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    # a perfect source copy where both sources agree gives zero intensity and gradient loss
    same, _ = FusionLoss(1.0, 1.0, 0.0)(a, a, a)
    assert float(same) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_refused():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(DataError, match="of one shape"):
        fusion_loss_terms(x, x, torch.rand(1, 1, 16, 17))
    with pytest.raises(DataError, match="smaller than the 11x11"):
        fusion_loss_terms(*(torch.rand(1, 1, 8, 8) for _ in range(3)))
    with pytest.raises(ConfigError, match="gradient=-1"):
        FusionLoss(gradient=-1)


def test_reconstruction_loss_matches_numpy_and_skimage():
    from cvcraft.losses.fusion import ReconstructionLoss

    rng = np.random.default_rng(4)
    o, x = rng.random((2, 3, 1, 19, 24))
    total, items = ReconstructionLoss(ssim=7.0)(torch.from_numpy(o), torch.from_numpy(x))
    mse = ((o - x) ** 2).mean()
    ssim = np.mean([_ssim(x[i, 0], o[i, 0]) for i in range(3)])
    assert float(total) == pytest.approx(mse + 7.0 * (1 - ssim), abs=1e-10)
    assert items["pixel"] == pytest.approx(mse) and items["ssim"] == pytest.approx(1 - ssim)
    assert float(build_loss("reconstruction")(torch.from_numpy(x), torch.from_numpy(x))[0]) == (
        pytest.approx(0, abs=1e-12)
    )
    with pytest.raises(DataError, match=r"one shape, got \(3, 1, 19, 24\), \(3, 1, 19, 23\)"):
        ReconstructionLoss()(torch.from_numpy(o), torch.from_numpy(x[..., :-1]))
    with pytest.raises(ConfigError, match="ssim=-1"):
        ReconstructionLoss(ssim=-1)
