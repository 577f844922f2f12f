"""2-D transforms from point pairs (least squares and RANSAC), warps, and image registration.

A transform maps source points to destination points, dst ~ T src, as a 3x3 matrix on
homogeneous coordinates. Degrees of freedom and minimal sample sizes:
rigid (rotation + translation) 3 / 2 pairs; similarity (+ uniform scale) 4 / 2;
affine 6 / 3; homography 8 / 4.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import border_flag, check_image, check_positive, choice, to_gray
from cvcraft.classic.interpolation import KINDS as INTERP
from cvcraft.errors import ConfigError, DataError

KINDS = ("rigid", "similarity", "affine", "homography")
MIN_PAIRS = {"rigid": 2, "similarity": 2, "affine": 3, "homography": 4}


def _pairs(src: np.ndarray, dst: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    choice(kind, "kind", KINDS)
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or s.shape != d.shape:
        raise DataError(f"src and dst must both be (N, 2) point arrays, got {s.shape}, {d.shape}")
    if len(s) < MIN_PAIRS[kind]:
        raise DataError(f"a {kind} transform needs >= {MIN_PAIRS[kind]} point pairs, got {len(s)}")
    return s, d


def _umeyama(s: np.ndarray, d: np.ndarray, scale: bool) -> np.ndarray:
    """Least-squares rotation (+ scale) + translation (Umeyama 1991): SVD of the covariance.

    Sigma = (d - d_mean)^T (s - s_mean) / N = U S V^T; R = U diag(1, det(UV)) V^T;
    c = tr(S diag(1, det)) / var(s); t = d_mean - c R s_mean.
    """
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    u, sig, vt = np.linalg.svd(dc.T @ sc / len(s))
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ e @ vt
    c = np.trace(np.diag(sig) @ e) / sc.var(0).sum() if scale else 1.0
    m = np.eye(3)
    m[:2, :2] = c * r
    m[:2, 2] = md - c * r @ ms
    return m


def _affine_lstsq(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """min ||[s 1] A^T - d||^2 solved by lstsq; A is the top 2x3 of the matrix."""
    a = np.hstack([s, np.ones((len(s), 1))])
    sol, *_ = np.linalg.lstsq(a, d, rcond=None)  # (3, 2)
    m = np.eye(3)
    m[:2] = sol.T
    return m


def _normalizer(p: np.ndarray) -> np.ndarray:
    """Hartley normalization: centroid to 0, mean distance to sqrt(2)."""
    c = p.mean(0)
    dist = np.sqrt(((p - c) ** 2).sum(1)).mean()
    k = np.sqrt(2) / dist if dist > 0 else 1.0
    return np.array([[k, 0, -k * c[0]], [0, k, -k * c[1]], [0, 0, 1]])


def _homography_dlt(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Normalized DLT: each pair gives two rows of A h = 0; h = last right-singular vector."""
    ts, td = _normalizer(s), _normalizer(d)
    sh = (ts @ np.c_[s, np.ones(len(s))].T).T
    dh = (td @ np.c_[d, np.ones(len(d))].T).T
    x, y = sh[:, 0], sh[:, 1]
    u, v = dh[:, 0], dh[:, 1]
    z, o = np.zeros_like(x), np.ones_like(x)
    rows_u = np.stack([-x, -y, -o, z, z, z, u * x, u * y, u], 1)
    rows_v = np.stack([z, z, z, -x, -y, -o, v * x, v * y, v], 1)
    _, _, vt = np.linalg.svd(np.vstack([rows_u, rows_v]))
    h = np.linalg.inv(td) @ vt[-1].reshape(3, 3) @ ts
    return h / h[2, 2]


def fit_transform(src: np.ndarray, dst: np.ndarray, kind: str = "affine") -> np.ndarray:
    """Least-squares 3x3 transform with dst ~ T src from (N, 2) point pairs.

    rigid/similarity: Umeyama's SVD solution; affine: linear least squares; homography:
    normalized DLT (algebraic error).
    """
    s, d = _pairs(src, dst, kind)
    if kind in ("rigid", "similarity"):
        return _umeyama(s, d, scale=kind == "similarity")
    if kind == "affine":
        return _affine_lstsq(s, d)
    return _homography_dlt(s, d)


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points by a 3x3 matrix: p' = (M [p 1]^T) / w. -> (N, 2)"""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h = np.c_[p, np.ones(len(p))] @ np.asarray(m, dtype=np.float64).T
    return h[:, :2] / h[:, 2:3]


def ransac_transform(
    src: np.ndarray,
    dst: np.ndarray,
    kind: str = "affine",
    threshold: float = 3.0,
    iterations: int = 1000,
    confidence: float = 0.999,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC: fit minimal samples, keep the model with most inliers (reprojection error
    ||T s - d|| < threshold px), refit on its inliers by least squares.

    The number of trials adapts: n = log(1 - confidence) / log(1 - w^m), w = inlier share,
    m = minimal sample size. -> (3x3 matrix, (N,) bool inlier mask)
    """
    s, d = _pairs(src, dst, kind)
    t = check_positive(threshold, "threshold")
    rng = rng if rng is not None else np.random.default_rng(0)
    m, n = MIN_PAIRS[kind], len(s)
    best = np.zeros(n, dtype=bool)
    trials, i = iterations, 0
    # one loop over hypotheses (not over points): each fit and its scoring are vectorized
    while i < min(trials, iterations):
        i += 1
        idx = rng.choice(n, m, replace=False)
        try:
            model = fit_transform(s[idx], d[idx], kind)
        except np.linalg.LinAlgError:
            continue
        if not np.all(np.isfinite(model)):
            continue
        with np.errstate(all="ignore"):
            err = np.linalg.norm(apply_transform(model, s) - d, axis=1)
        inl = err < t
        if inl.sum() > best.sum():
            best = inl
            w = inl.mean()
            trials = (
                int(np.ceil(np.log(1 - confidence) / np.log(max(1 - w**m, 1e-12)))) if w < 1 else 0
            )
    # a model supported only by its own minimal sample is no evidence (unless n == m)
    if best.sum() < min(n, m + 1):
        raise DataError(
            f"RANSAC found no {kind} model with more than {m} inliers within {t} px; raise "
            "threshold or check the correspondences"
        )
    model = fit_transform(s[best], d[best], kind)
    inl = np.linalg.norm(apply_transform(model, s) - d, axis=1) < t
    return (fit_transform(s[inl], d[inl], kind), inl) if inl.sum() >= m else (model, best)


def warp(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int] | None = None,
    interpolation: str = "bilinear",
    border: str = "constant",
) -> np.ndarray:
    """Warp ``image`` by the 3x3 (or 2x3) ``matrix`` mapping input to output pixels:
    out(T p) = in(p), sampled by inverse mapping. size = (H, W) of the output (default: input).
    """
    img = check_image(image)
    choice(interpolation, "interpolation", tuple(INTERP))
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.shape not in ((2, 3), (3, 3)):
        raise ConfigError(f"matrix must be 2x3 or 3x3, got {mat.shape}")
    h, w = size if size is not None else img.shape[:2]
    flag = INTERP[interpolation]
    if flag == cv2.INTER_NEAREST_EXACT:
        flag = cv2.INTER_NEAREST
    b = border_flag(border)
    if mat.shape == (2, 3) or np.allclose(mat[2], [0, 0, 1]):
        return cv2.warpAffine(img, mat[:2], (int(w), int(h)), flags=flag, borderMode=b)
    return cv2.warpPerspective(img, mat, (int(w), int(h)), flags=flag, borderMode=b)


def _edge_strength(x: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    x = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1))


def register_ecc(
    moving: np.ndarray,
    fixed: np.ndarray,
    motion: str = "affine",
    iterations: int = 200,
    eps: float = 1e-6,
    blur: int = 5,
    on: str = "intensity",
) -> tuple[np.ndarray, float]:
    """Align ``moving`` onto ``fixed`` by maximizing the enhanced correlation coefficient
    (Evangelidis & Psarakis 2008): rho = <f_c, m_c(T)> / (|f_c| |m_c(T)|), c = zero-mean.

    motion: "translation" | "euclidean" | "affine" | "homography". on="gradient" correlates
    the Gaussian-smoothed (sigma 2) gradient magnitudes instead of the intensities: edges
    line up across modalities (infrared onto visible) where intensities do not. Returns
    (3x3 T with warp(moving, T) ~ fixed, final rho).
    """
    modes = {
        "translation": cv2.MOTION_TRANSLATION,
        "euclidean": cv2.MOTION_EUCLIDEAN,
        "affine": cv2.MOTION_AFFINE,
        "homography": cv2.MOTION_HOMOGRAPHY,
    }
    choice(motion, "motion", tuple(modes))
    choice(on, "on", ("intensity", "gradient"))
    mv = to_gray(moving, "moving").astype(np.float32)
    fx = to_gray(fixed, "fixed").astype(np.float32)
    if on == "gradient":
        mv, fx = _edge_strength(mv), _edge_strength(fx)
        blur = 1
    if mv.shape != fx.shape:
        raise DataError(f"moving {mv.shape} and fixed {fx.shape} must have one size; resize first")
    rows = 3 if motion == "homography" else 2
    warp_m = np.eye(rows, 3, dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iterations), float(eps))
    try:
        rho, warp_m = cv2.findTransformECC(fx, mv, warp_m, modes[motion], crit, None, blur)
    except cv2.error as e:
        raise DataError(
            f"ECC did not converge ({e.msg.strip()}); try motion='translation' "
            "or a closer initial alignment"
        ) from None
    m = np.eye(3)
    m[: warp_m.shape[0]] = warp_m
    # OpenCV's warp maps fixed -> moving coordinates; invert so warp(moving, T) ~ fixed
    return np.linalg.inv(m), float(rho)
