"""PatchWhitening against a numpy eigendecomposition of the same patches."""

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from cvcraft.errors import ConfigError, DataError
from cvcraft.nn.whitening import PatchWhitening, image_patches, set_whitening_epoch


def numpy_whitening(images: np.ndarray, k: int, eps: float):
    """Reference: patches by sliding windows, np.cov, np.linalg.eigh, descending order."""
    win = sliding_window_view(images, (k, k), axis=(2, 3))  # (N, C, H', W', k, k)
    p = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * k * k)
    cov = np.cov(p, rowvar=False, bias=True)
    lam, vec = np.linalg.eigh(cov)
    lam, vec = lam[::-1], vec[:, ::-1]
    w = vec.T / np.sqrt(np.clip(lam, 0, None) + eps)[:, None]
    return w, -(w @ p.mean(0)), lam, p


@pytest.mark.parametrize("k,eps", [(2, 5e-4), (3, 0.1), (1, 0.0)])
def test_whitening_equals_numpy_eigh(k, eps):
    rng = np.random.default_rng(k)
    # correlated channels so the eigenvalues are distinct and far from eps
    base = rng.normal(size=(6, 3, 9, 10))
    mix = np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.3, 0.0, 1.0]])
    images = np.einsum("dc,nchw->ndhw", mix, base) + np.array([0.5, -1.0, 2.0])[:, None, None]
    layer = PatchWhitening(3, k, eps=eps)
    lam = layer.fit(torch.from_numpy(images).float())
    w_ref, b_ref, lam_ref, patches = numpy_whitening(images.astype(np.float32), k, eps)
    np.testing.assert_allclose(lam.numpy(), lam_ref, rtol=1e-5, atol=1e-7)
    d = 3 * k * k
    w = layer.weight.detach().double().reshape(2 * d, d).numpy()
    b = layer.bias.detach().double().numpy()
    # eigenvectors are defined up to sign: align each row with the reference's
    sign = np.sign(np.sum(w[:d] * w_ref, axis=1))[:, None]
    np.testing.assert_allclose(w[:d] * sign, w_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b[:d] * sign[:, 0], b_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(w[d:], -w[:d])
    np.testing.assert_array_equal(b[d:], -b[:d])
    # the conv's outputs over the training patches have covariance diag(lam / (lam + eps))
    out = layer(torch.from_numpy(images).float()).detach().double().numpy()[:, :d]
    flat = out.transpose(0, 2, 3, 1).reshape(-1, d)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-4)
    cov = np.cov(flat, rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.diag(lam_ref / (lam_ref + eps)), atol=2e-4)
    assert patches.shape == image_patches(torch.from_numpy(images), k).shape


def test_eps_handles_zero_variance_direction():
    """A constant channel gives zero eigenvalues: eps keeps the filters finite."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 3, 6, 6))
    images[:, 2] = 1.0
    layer = PatchWhitening(3, 2, eps=1e-3)
    lam = layer.fit(torch.from_numpy(images))
    assert torch.isfinite(layer.weight).all()
    assert float(lam[-1]) == pytest.approx(0.0, abs=1e-10)
    w_ref, _, lam_ref, _ = numpy_whitening(images, 2, 1e-3)
    # the zero-eigenvalue rows are v / sqrt(eps): norm 1 / sqrt(eps) exactly
    norms = layer.weight.detach().double().reshape(24, 12).norm(dim=1).numpy()[:12]
    np.testing.assert_allclose(norms, np.linalg.norm(w_ref, axis=1), rtol=1e-4)
    np.testing.assert_allclose(norms[-4:], 1 / np.sqrt(1e-3), rtol=1e-4)


def test_freezes_exactly_at_epoch_k():
    torch.manual_seed(0)
    layer = PatchWhitening(3, 2, freeze_epoch=2)
    net = torch.nn.Sequential(layer, torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.zeros(1, 3, 4, 4))
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 2, (8,))
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1,
                          momentum=0.9, weight_decay=0.1)  # fmt: skip
    for epoch in range(4):
        assert set_whitening_epoch(net, epoch) == 1
        w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        assert torch.equal(layer.weight, w0)  # the weight is never trained by default
        assert torch.equal(layer.bias, b0) == (epoch >= 2), epoch
    layer.train_weight = True
    layer.set_epoch(1)
    assert layer.weight.requires_grad and layer.bias.requires_grad
    layer.set_epoch(2)
    assert not layer.weight.requires_grad and not layer.bias.requires_grad


def test_bad_inputs():
    layer = PatchWhitening(3, 2)
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        layer.fit(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="patch size k=9"):
        image_patches(torch.zeros(1, 3, 8, 8), 9)
    with pytest.raises(ConfigError, match="eps"):
        PatchWhitening(3, 2, eps=-1.0).fit(torch.randn(2, 3, 4, 4))
