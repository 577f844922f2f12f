"""Image-quality and image-fusion metrics on numpy images (HxW or HxWxC, uint8 or float).

Full-reference (a reference ``ref`` and a test image ``img``): MSE, RMSE, NRMSE, PSNR, SSIM,
MS-SSIM. No-reference (one image): entropy EN, standard deviation SD, spatial frequency SF,
average gradient AG. Fusion (sources ``a``, ``b`` and the fused ``f``): mutual information
MI = MI(a, f) + MI(b, f) and Xydeas-Petrovic's edge-preservation Q^{AB/F}.
SSIM/MS-SSIM run the differentiable torch code in ``cvcraft.losses.image`` in float64.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.image import gaussian_window, ssim_maps
from cvcraft.losses.image import ms_ssim as _ms_ssim_t


def _img(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim not in (2, 3) or x.size == 0:
        raise DataError(
            f"{name} must be a non-empty HxW or HxWxC numpy array, got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    if x.dtype.kind not in "uif":
        raise DataError(f"{name} has dtype {x.dtype}; pass a numeric image")
    return x


def _pair(ref: np.ndarray, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, i = _img(ref, "ref"), _img(img, "img")
    if r.shape != i.shape:
        raise DataError(f"ref {r.shape} and img {i.shape} must have one shape")
    return r.astype(np.float64), i.astype(np.float64)


def default_range(x: np.ndarray) -> float:
    """Data range L: 255 for uint8, 65535 for uint16, 1.0 for float images."""
    return float(np.iinfo(x.dtype).max) if x.dtype.kind in "ui" else 1.0


def mse(ref: np.ndarray, img: np.ndarray) -> float:
    """Mean squared error: mean((ref - img)^2)."""
    r, i = _pair(ref, img)
    return float(np.mean((r - i) ** 2))


def rmse(ref: np.ndarray, img: np.ndarray) -> float:
    """Root mean squared error: sqrt(MSE)."""
    return float(np.sqrt(mse(ref, img)))


def nrmse(ref: np.ndarray, img: np.ndarray, normalization: str = "euclidean") -> float:
    """RMSE divided by: sqrt(mean(ref^2)) ("euclidean"), max - min of ref ("min-max") or
    mean(ref) ("mean")."""
    r, _ = _pair(ref, img)
    if normalization == "euclidean":
        d = np.sqrt(np.mean(r * r))
    elif normalization == "min-max":
        d = r.max() - r.min()
    elif normalization == "mean":
        d = r.mean()
    else:
        raise ConfigError(f"normalization={normalization!r}: use euclidean, min-max or mean")
    return float(rmse(ref, img) / d)


def psnr(ref: np.ndarray, img: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(L^2 / MSE) (inf for identical images)."""
    L = default_range(ref) if data_range is None else float(data_range)
    m = mse(ref, img)
    return float("inf") if m == 0 else float(10 * np.log10(L * L / m))


def _tensor(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def ssim(
    ref: np.ndarray, img: np.ndarray, data_range: float | None = None, win_size: int = 11
) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5, 'valid' region), channels averaged.

    The same formula as the torch loss (``ssim_maps``); the local moments come from
    OpenCV's separable filter in float64, several times faster than a CPU convolution.
    """
    r, i = _pair(ref, img)
    L = default_range(ref) if data_range is None else float(data_range)
    if min(r.shape[:2]) < win_size:
        raise DataError(
            f"images {r.shape[:2]} are smaller than the {win_size}x{win_size} "
            "SSIM window; use a smaller win_size"
        )
    k = gaussian_window(win_size, 1.5, torch.float64).numpy()
    p = win_size // 2
    r3 = r.reshape(r.shape[0], r.shape[1], -1)
    i3 = i.reshape(i.shape[0], i.shape[1], -1)
    vals = []
    for c in range(r3.shape[2]):  # per channel, as the torch version
        x, y = r3[..., c], i3[..., c]
        m = [
            cv2.sepFilter2D(v, cv2.CV_64F, k, k)[p : -p or None, p : -p or None]
            for v in (x, y, x * x, y * y, x * y)
        ]
        vals.append(ssim_maps(*m, (0.01 * L) ** 2, (0.03 * L) ** 2)[0].mean())
    return float(np.mean(vals))


def ms_ssim(ref: np.ndarray, img: np.ndarray, data_range: float | None = None) -> float:
    """Multi-scale SSIM (5 scales; images must exceed 160 px per side)."""
    r, i = _pair(ref, img)
    L = default_range(ref) if data_range is None else float(data_range)
    with torch.no_grad():
        return float(_ms_ssim_t(_tensor(r), _tensor(i), L)[0])


def _grey(x: np.ndarray, name: str) -> np.ndarray:
    x = _img(x, name)
    if x.ndim == 3:
        if x.shape[2] != 1:
            raise DataError(f"{name} must be single-channel for this metric, got {x.shape}")
        x = x[..., 0]
    return x


def _levels(x: np.ndarray, bins: int) -> np.ndarray:
    """Integer grey levels 0..bins-1: uint8 as is, floats in [0, 1] scaled and rounded."""
    if x.dtype == np.uint8 and bins == 256:
        return x.astype(np.int64)
    scale = (bins - 1) / (255.0 if x.dtype == np.uint8 else 1.0)
    return np.clip(np.rint(x.astype(np.float64) * scale), 0, bins - 1).astype(np.int64)


def entropy(img: np.ndarray, bins: int = 256) -> float:
    """Shannon entropy of the grey-level histogram in bits: EN = -sum_l p_l log2 p_l."""
    lv = _levels(_grey(img, "img"), bins)
    p = np.bincount(lv.ravel(), minlength=bins) / lv.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def standard_deviation(img: np.ndarray) -> float:
    """SD = sqrt(mean((I - mean I)^2)) (contrast)."""
    return float(np.std(_img(img, "img").astype(np.float64)))


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2), RF^2 = mean of squared horizontal neighbour differences
    (I(y, x) - I(y, x-1))^2, CF^2 the same vertically (activity / detail)."""
    x = _grey(img, "img").astype(np.float64)
    rf2 = np.mean(np.diff(x, axis=1) ** 2) if x.shape[1] > 1 else 0.0
    cf2 = np.mean(np.diff(x, axis=0) ** 2) if x.shape[0] > 1 else 0.0
    return float(np.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG = mean over (H-1)(W-1) pixels of sqrt((dI/dx^2 + dI/dy^2) / 2), forward
    differences (sharpness)."""
    x = _grey(img, "img").astype(np.float64)
    if min(x.shape) < 2:
        raise DataError(f"average_gradient needs at least 2x2 pixels, got {x.shape}")
    dx = x[:-1, 1:] - x[:-1, :-1]
    dy = x[1:, :-1] - x[:-1, :-1]
    return float(np.mean(np.sqrt((dx**2 + dy**2) / 2)))


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 256) -> float:
    """MI(a; b) = sum p(u, v) log2(p(u, v) / (p(u) p(v))) from the joint grey histogram."""
    la, lb = _levels(_grey(a, "a"), bins), _levels(_grey(b, "b"), bins)
    if la.shape != lb.shape:
        raise DataError(f"a {la.shape} and b {lb.shape} must have one shape")
    joint = np.bincount((la * bins + lb).ravel(), minlength=bins * bins).reshape(bins, bins)
    p = joint / la.size
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (pa @ pb)[nz])).sum())


def fusion_mi(a: np.ndarray, b: np.ndarray, f: np.ndarray, bins: int = 256) -> float:
    """Fusion MI = MI(a; f) + MI(b; f): information the fused image keeps from each source."""
    return mutual_information(a, f, bins) + mutual_information(b, f, bins)


# Xydeas & Petrovic (2000) sigmoid constants
QG = (0.9994, -15.0, 0.5)  # Gamma_g, kappa_g, sigma_g
QA = (0.9879, -22.0, 0.8)  # Gamma_alpha, kappa_alpha, sigma_alpha


def _sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.pad(x, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def _edge_preservation(gs, as_, gf, af) -> np.ndarray:
    """Q^{SF}(p) = Q_g Q_alpha: sigmoids of relative strength and orientation agreement."""
    hi, lo = np.maximum(gs, gf), np.minimum(gs, gf)
    g = np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0)
    a = 1 - np.abs(as_ - af) / (np.pi / 2)
    qg = QG[0] / (1 + np.exp(QG[1] * (g - QG[2])))
    qa = QA[0] / (1 + np.exp(QA[1] * (a - QA[2])))
    return qg * qa


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, L: float = 1.0) -> float:
    """Q^{AB/F} (Xydeas & Petrovic): how much of the sources' edge information the fused
    image keeps, in [0, 1].

    Sobel strength g and orientation alpha = atan(gy / gx) per pixel; G = min/max of the
    strengths, A = 1 - |alpha_s - alpha_f| / (pi/2); Q_g, Q_alpha sigmoids of G, A;
    Q = sum(Q^{AF} g_A^L + Q^{BF} g_B^L) / sum(g_A^L + g_B^L).
    """
    xs = [_grey(v, n).astype(np.float64) for v, n in ((a, "a"), (b, "b"), (f, "f"))]
    if not (xs[0].shape == xs[1].shape == xs[2].shape):
        raise DataError(f"a, b and f must have one shape, got {[x.shape for x in xs]}")
    polar = []
    for x in xs:
        gx, gy = _sobel(x)
        alpha = np.where(gx == 0, np.pi / 2, np.arctan(gy / np.where(gx == 0, 1, gx)))
        polar.append((np.hypot(gx, gy), alpha))
    (ga, aa), (gb, ab), (gf, af) = polar
    qaf = _edge_preservation(ga, aa, gf, af)
    qbf = _edge_preservation(gb, ab, gf, af)
    wa, wb = ga**L, gb**L
    den = (wa + wb).sum()
    return float((qaf * wa + qbf * wb).sum() / den) if den > 0 else 0.0
