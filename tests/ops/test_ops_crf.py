"""Dense CRF: the exact mean-field against a brute-force loop port of the update written here
(tiny images), the permutohedral-lattice version against pydensecrf (the oracle; same
algorithm, float32 there), and the lattice filter against the exact Gaussian filter."""

import math

import numpy as np
import pytest

from cvcraft.errors import ConfigError
from cvcraft.ops.crf import PermutohedralLattice, dense_crf, gaussian_filter_exact, pixel_features


def _brute_force(probs, image, iterations, sxy_g, w_g, sxy_b, srgb, w_b):
    """Mean-field by the definition: for every pixel pair, both kernels; symmetric
    normalization n_i = (sum_j k_ij)^-1/2; Q_i(l) ∝ exp(log P_i(l) + sum_m w_m n_i sum_j
    k_ij n_j Q_j(l))."""
    c, h, w = probs.shape
    px = [(y, x) for y in range(h) for x in range(w)]

    def k_gauss(i, j):
        (yi, xi), (yj, xj) = px[i], px[j]
        return math.exp(-((xi - xj) ** 2 + (yi - yj) ** 2) / (2 * sxy_g**2))

    def k_bilat(i, j):
        (yi, xi), (yj, xj) = px[i], px[j]
        col = sum((float(image[yi, xi, ch]) - float(image[yj, xj, ch])) ** 2 for ch in range(3))
        return math.exp(-((xi - xj) ** 2 + (yi - yj) ** 2) / (2 * sxy_b**2) - col / (2 * srgb**2))

    n = len(px)
    kernels = []
    for k, wt in ((k_gauss, w_g), (k_bilat, w_b)):
        mat = [[k(i, j) for j in range(n)] for i in range(n)]
        norm = [1 / math.sqrt(sum(row)) for row in mat]
        kernels.append((wt, mat, norm))
    logp = [[math.log(max(probs[l, y, x], 1e-8)) for l in range(c)] for (y, x) in px]
    q = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logp]
    for _ in range(iterations):
        new = []
        for i in range(n):
            e = list(logp[i])
            for wt, mat, norm in kernels:
                for lab in range(c):
                    e[lab] += wt * norm[i] * sum(mat[i][j] * norm[j] * q[j][lab] for j in range(n))
            m = max(e)
            z = sum(math.exp(v - m) for v in e)
            new.append([math.exp(v - m) / z for v in e])
        q = new
    return np.array(q).T.reshape(c, h, w)


def _problem(seed, h, w, c=3, noise=1.0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), int)
    truth[:, w // 2 :] = 1
    truth[h // 4 : h // 2, w // 8 : w // 3] = c - 1
    colors = rng.integers(0, 256, (c, 3))
    image = np.clip(colors[truth] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    logit = np.eye(c)[truth].transpose(2, 0, 1) + rng.normal(0, noise, (c, h, w))
    probs = np.exp(logit) / np.exp(logit).sum(0)
    return truth, image, probs


@pytest.mark.parametrize("seed", range(3))
def test_exact_mean_field_equals_brute_force(seed):
    _, image, probs = _problem(seed, 5, 6)
    kw = dict(sxy_gaussian=1.5, compat_gaussian=3.0, sxy_bilateral=4.0, srgb=20.0,
              compat_bilateral=5.0)  # fmt: skip
    ours = dense_crf(probs, image, iterations=3, method="exact", **kw)
    ref = _brute_force(probs, image, 3, 1.5, 3.0, 4.0, 20.0, 5.0)
    np.testing.assert_allclose(ours, ref, atol=1e-6)  # float32 output
    np.testing.assert_allclose(ours.sum(0), 1.0, atol=1e-6)
    # zero iterations: the softmax of the unary, i.e. the input probabilities
    np.testing.assert_allclose(dense_crf(probs, image, iterations=0), probs, atol=1e-6)


@pytest.mark.parametrize("shape, sxy_b", [((40, 50), 20.0), ((31, 23), 80.0), ((64, 48), 5.0)])
def test_lattice_equals_pydensecrf(shape, sxy_b):
    dcrf = pytest.importorskip("pydensecrf.densecrf")
    h, w = shape
    _, image, probs = _problem(h * w, h, w, c=4)
    ours = dense_crf(probs, image, iterations=5, sxy_bilateral=sxy_b)
    d = dcrf.DenseCRF2D(w, h, 4)
    unary = -np.log(np.clip(probs, 1e-8, None)).reshape(4, -1).astype(np.float32)
    d.setUnaryEnergy(np.ascontiguousarray(unary))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=sxy_b, srgb=13, rgbim=np.ascontiguousarray(image), compat=10)
    ref = np.array(d.inference(5)).reshape(4, h, w)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("sxy, srgb", [(3.0, None), (10.0, 13.0)])
def test_lattice_filter_approximates_exact_gaussian(sxy, srgb):
    h, w = 30, 40
    _, image, probs = _problem(1, h, w)
    f = pixel_features(h, w, sxy, image if srgb else None, srgb or 1.0)
    v = probs.reshape(3, -1).T
    lat = PermutohedralLattice(f)
    approx = lat.filter(v) / lat.filter(np.ones((h * w, 1)))
    exact = gaussian_filter_exact(f, v) / gaussian_filter_exact(f, np.ones((h * w, 1)))
    err = np.abs(approx - exact)  # normalized averages: both in [0, 1]
    assert err.mean() < 0.01 and np.quantile(err, 0.99) < 0.05 and err.max() < 0.15
    assert np.corrcoef(approx.ravel(), exact.ravel())[0, 1] > 0.99


def test_crf_fixes_noisy_labels_and_agrees_with_exact():
    truth, image, probs = _problem(7, 30, 36, noise=1.2)
    lat = dense_crf(probs, image, sxy_bilateral=15)
    exact = dense_crf(probs, image, sxy_bilateral=15, method="exact")
    assert (lat.argmax(0) == exact.argmax(0)).mean() > 0.99
    assert (lat.argmax(0) == truth).mean() > (probs.argmax(0) == truth).mean() + 0.2


def test_bad_input():
    _, image, probs = _problem(0, 6, 7)
    with pytest.raises(ConfigError, match=r"image must be \(6, 7, 3\)"):
        dense_crf(probs, image[:, :, :2])
    with pytest.raises(ConfigError, match=r"probs must be \(C, H, W\)"):
        dense_crf(probs[0], image)
    with pytest.raises(ConfigError, match="method"):
        dense_crf(probs, image, method="grid")
    with pytest.raises(ConfigError, match="sxy/srgb > 0"):
        dense_crf(probs, image, srgb=0)
