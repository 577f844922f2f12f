"""Local features: Harris corners, SIFT and ORB keypoints/descriptors, descriptor matching
with Lowe's ratio test, and drawing.

Keypoints are returned as an (N, 5) float32 array: x, y, size (diameter px), angle (deg,
-1 if none), response. Descriptors: SIFT (N, 128) float32, ORB (N, 32) uint8 (256 bits).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, check_ksize, check_positive, to_gray
from cvcraft.errors import ConfigError, DataError


def harris(image: np.ndarray, block_size: int = 2, ksize: int = 3, k: float = 0.04) -> np.ndarray:
    """Harris corner response R = det(M) - k tr(M)^2, M = sum over the block window of
    [[Ix^2, IxIy], [IxIy, Iy^2]] (Sobel derivatives of aperture ksize). (H, W) float32;
    corners are local maxima with large R (edges give R < 0, flat areas R ~ 0).
    """
    img = to_gray(image)
    if img.dtype == np.float64:
        img = img.astype(np.float32)
    check_ksize(ksize, minimum=1)
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    return cv2.cornerHarris(img, int(block_size), int(ksize), float(k))


def harris_corners(
    image: np.ndarray, quality: float = 0.01, min_distance: int = 5, max_corners: int = 500
) -> np.ndarray:
    """Corner points: local maxima of the Harris response above quality * max(R), at least
    min_distance apart, strongest first. -> (N, 2) float32 x, y.
    """
    img = to_gray(image)
    if img.dtype == np.float64:
        img = img.astype(np.float32)
    if not 0 < quality < 1:
        raise ConfigError(f"quality must be in (0, 1), got {quality}")
    pts = cv2.goodFeaturesToTrack(
        img, int(max_corners), float(quality), float(min_distance), useHarrisDetector=True
    )
    return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)


def _kp_array(kps) -> np.ndarray:
    return np.array(
        [(k.pt[0], k.pt[1], k.size, k.angle, k.response) for k in kps], dtype=np.float32
    ).reshape(-1, 5)


def _gray_u8(image: np.ndarray) -> np.ndarray:
    g = to_gray(check_image(image))
    if g.dtype != np.uint8:
        g = np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)
    return g


def sift(image: np.ndarray, max_features: int = 0, contrast: float = 0.04):
    """SIFT (Lowe 2004): DoG scale-space extrema, orientation histogram, 4x4x8 gradient
    histograms. -> (keypoints (N, 5), descriptors (N, 128) float32)."""
    det = cv2.SIFT_create(nfeatures=int(max_features), contrastThreshold=float(contrast))
    kps, desc = det.detectAndCompute(_gray_u8(image), None)
    return _kp_array(kps), (np.zeros((0, 128), np.float32) if desc is None else desc)


def orb(image: np.ndarray, max_features: int = 500, fast_threshold: int = 20):
    """ORB (Rublee 2011): FAST corners ranked by Harris, oriented BRIEF binary tests.
    -> (keypoints (N, 5), descriptors (N, 32) uint8)."""
    det = cv2.ORB_create(nfeatures=int(max_features), fastThreshold=int(fast_threshold))
    kps, desc = det.detectAndCompute(_gray_u8(image), None)
    return _kp_array(kps), (np.zeros((0, 32), np.uint8) if desc is None else desc)


def descriptor_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All pairwise distances: Hamming (popcount of XOR) for uint8 binary descriptors,
    Euclidean for float ones. (N, D), (M, D) -> (N, M) float64."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"descriptors must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        bits_a = np.unpackbits(a, axis=1).astype(np.float32)  # (N, 8D) 0/1
        bits_b = np.unpackbits(b, axis=1).astype(np.float32)
        # |x xor y| = |x| + |y| - 2 x.y for 0/1 vectors
        return (bits_a.sum(1)[:, None] + bits_b.sum(1)[None, :] - 2.0 * bits_a @ bits_b.T).astype(
            np.float64
        )
    fa, fb = a.astype(np.float64), b.astype(np.float64)
    d2 = (fa * fa).sum(1)[:, None] + (fb * fb).sum(1)[None, :] - 2.0 * fa @ fb.T
    return np.sqrt(np.maximum(d2, 0.0))


def match_descriptors(
    a: np.ndarray, b: np.ndarray, ratio: float = 0.75, cross_check: bool = False
) -> np.ndarray:
    """Nearest-neighbour matches a -> b kept by Lowe's ratio test d1 < ratio * d2 (d1, d2 the
    two smallest distances). cross_check also requires a to be b's nearest. -> (K, 2) int64
    index pairs (i in a, j in b), sorted by distance.
    """
    r = check_positive(ratio, "ratio")
    if r > 1:
        raise ConfigError(f"ratio must be in (0, 1], got {ratio}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    d = descriptor_distances(a, b)
    nn = np.argsort(d, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(a))
    d1 = d[rows, nn[:, 0]]
    keep = d1 < r * d[rows, nn[:, 1]] if len(b) > 1 else np.ones(len(a), bool)
    if r == 1 and len(b) > 1:
        keep = np.ones(len(a), bool)
    if cross_check:
        keep &= d.argmin(0)[nn[:, 0]] == rows
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(d1[idx], kind="stable")]
    return np.stack([idx, nn[idx, 0]], 1).astype(np.int64)


def _cv_keypoints(kp: np.ndarray) -> list:
    return [cv2.KeyPoint(float(x), float(y), float(s), float(a), float(r)) for x, y, s, a, r in kp]


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, color=(0, 255, 0)) -> np.ndarray:
    """RGB uint8 copy with each keypoint drawn as a circle of its size and its orientation."""
    img = check_image(image, dtypes=(np.uint8,))
    rgb = (
        img
        if img.ndim == 3 and img.shape[2] == 3
        else cv2.cvtColor(to_gray(img), cv2.COLOR_GRAY2RGB)
    )
    return cv2.drawKeypoints(
        rgb, _cv_keypoints(keypoints), None, color, cv2.DRAW_MATCHES_FLAGS_DRAW_RICH_KEYPOINTS
    )


def draw_matches(
    image_a: np.ndarray,
    kp_a: np.ndarray,
    image_b: np.ndarray,
    kp_b: np.ndarray,
    matches: np.ndarray,
) -> np.ndarray:
    """Side-by-side RGB uint8 image with a line per match (index pairs from
    ``match_descriptors``)."""
    a = check_image(image_a, "image_a", dtypes=(np.uint8,))
    b = check_image(image_b, "image_b", dtypes=(np.uint8,))
    dm = [cv2.DMatch(int(i), int(j), 0.0) for i, j in np.asarray(matches).reshape(-1, 2)]
    return cv2.drawMatches(
        a,
        _cv_keypoints(kp_a),
        b,
        _cv_keypoints(kp_b),
        dm,
        None,
        flags=cv2.DRAW_MATCHES_FLAGS_NOT_DRAW_SINGLE_POINTS,
    )


def register_features(
    moving: np.ndarray,
    fixed: np.ndarray,
    kind: str = "homography",
    detector: str = "sift",
    ratio: float = 0.75,
    threshold: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Align ``moving`` onto ``fixed`` by features: detect, ratio-test match, RANSAC fit.
    -> (3x3 T with warp(moving, T) ~ fixed, inlier mask of the matches)."""
    from cvcraft.classic.geometry import ransac_transform

    det = {"sift": sift, "orb": orb}
    if detector not in det:
        raise ConfigError(f"detector={detector!r} is not one of sift, orb")
    ka, da = det[detector](moving)
    kb, db = det[detector](fixed)
    m = match_descriptors(da, db, ratio)
    if len(m) < 4:
        raise DataError(
            f"only {len(m)} feature matches survived the ratio test; too few "
            "to register (try detector='sift', a higher ratio, or ECC)"
        )
    return ransac_transform(ka[m[:, 0], :2], kb[m[:, 1], :2], kind, threshold)
