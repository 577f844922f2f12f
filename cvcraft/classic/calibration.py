"""Camera calibration from checkerboard views (Zhang 2000), and a renderer of checkerboard
views from a known camera to test it.

The pinhole model: x = K [R | t] X with K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], plus
radial/tangential distortion (k1, k2, p1, p2, k3). Each view of a planar board with known
square size gives a homography; the intrinsics and per-view poses are then refined by
minimizing the reprojection error sqrt(mean ||x_detected - project(X)||^2) (OpenCV).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from cvcraft.classic.checks import check_image, check_positive, to_gray
from cvcraft.errors import ConfigError, DataError


def parse_pattern(pattern: str | Sequence[int]) -> tuple[int, int]:
    """ "9x6" or (9, 6) -> (columns, rows) of *inner* corners."""
    try:
        cols, rows = (
            (int(v) for v in str(pattern).lower().split("x"))
            if isinstance(pattern, str)
            else (int(pattern[0]), int(pattern[1]))
        )
    except (ValueError, TypeError, IndexError):
        raise ConfigError(f"pattern must look like 9x6 (inner corners), got {pattern!r}") from None
    if cols < 2 or rows < 2:
        raise ConfigError(f"pattern needs >= 2 inner corners each way, got {cols}x{rows}")
    return cols, rows


def board_points(pattern: str | Sequence[int], square: float) -> np.ndarray:
    """3-D inner-corner coordinates on the board plane z = 0, row by row. -> (N, 3) float32"""
    cols, rows = parse_pattern(pattern)
    s = check_positive(square, "square")
    ys, xs = np.mgrid[0:rows, 0:cols]
    return np.stack([xs.ravel() * s, ys.ravel() * s, np.zeros(cols * rows)], 1).astype(np.float32)


def render_checkerboard(
    camera: np.ndarray,
    rvec: np.ndarray,
    tvec: np.ndarray,
    pattern: str | Sequence[int] = (9, 6),
    square: float = 25.0,
    image_size: tuple[int, int] = (480, 640),
    supersample: int = 3,
) -> np.ndarray:
    """Grey uint8 image (H, W) of a checkerboard seen by an ideal pinhole camera: the board
    texture's four corners are projected with cv2.projectPoints and the texture is warped
    by the homography they define (anti-aliased by rendering ``supersample`` x larger).
    The board has (cols+1) x (rows+1) squares and a one-square white margin; inner corner
    (0, 0) is at board coordinates (0, 0).
    """
    cols, rows = parse_pattern(pattern)
    s = check_positive(square, "square")
    px = 8  # texture pixels per square
    nx, ny = cols + 3, rows + 3  # squares incl. the white margin
    tex = np.full((ny * px, nx * px), 255, np.uint8)
    cy, cx = np.mgrid[0 : rows + 1, 0 : cols + 1]
    dark = ((cx + cy) % 2 == 0).astype(np.uint8)  # the (0, 0) square is dark
    board = np.kron(1 - dark, np.ones((px, px), np.uint8)) * 255
    tex[px : px + board.shape[0], px : px + board.shape[1]] = board
    # texture pixel (u, v) <-> board point ((u / px - 2) s, (v / px - 2) s): corner (0, 0)
    # of the inner grid sits two squares in (margin + first square)
    tex_corners = np.array([[0, 0], [nx * px, 0], [nx * px, ny * px], [0, ny * px]], np.float32)
    world = np.c_[(tex_corners / px - 2) * s, np.zeros(4)].astype(np.float32)
    k = supersample
    img_pts, _ = cv2.projectPoints(
        world, np.asarray(rvec, np.float64), np.asarray(tvec, np.float64), camera, None
    )
    # OpenCV puts pixel centres at integers; in continuous coordinates (corner at 0) a point
    # is at x + 0.5. Texture corners are continuous; the k-times larger image has centres at
    # k (x + 0.5) - 0.5.
    dst = k * (img_pts.reshape(4, 2) + 0.5) - 0.5
    h = cv2.getPerspectiveTransform(tex_corners - 0.5, dst.astype(np.float32))
    big = cv2.warpPerspective(
        tex, h, (image_size[1] * k, image_size[0] * k), flags=cv2.INTER_AREA, borderValue=128
    )
    return cv2.resize(big, (image_size[1], image_size[0]), interpolation=cv2.INTER_AREA)


def find_checkerboard(image: np.ndarray, pattern: str | Sequence[int]) -> np.ndarray | None:
    """Inner corners refined to sub-pixel accuracy, (N, 2) float32 row by row, or None when
    the whole pattern is not found."""
    g = to_gray(check_image(image))
    if g.dtype != np.uint8:
        g = np.clip(np.rint(g * 255), 0, 255).astype(np.uint8)
    size = parse_pattern(pattern)
    if min(g.shape) < 3 * (max(size) + 1):  # fewer than ~3 px per square: cannot be found
        return None
    ok, corners = cv2.findChessboardCorners(
        g, size, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    )
    if not ok:
        return None
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    corners = cv2.cornerSubPix(g, corners, (5, 5), (-1, -1), crit)
    return corners.reshape(-1, 2)


def calibrate(
    images: Sequence[np.ndarray],
    pattern: str | Sequence[int],
    square: float,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Calibrate from checkerboard views.

    -> {"camera_matrix" 3x3, "dist_coeffs" (5,), "rms" px, "per_view_rms" [..],
    "image_size" (H, W), "used" [names], "skipped" [names without a full pattern],
    "rvecs", "tvecs"}. Needs >= 3 views with the pattern found.
    """
    if len(images) == 0:
        raise DataError("calibrate got no images")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    obj = board_points(pattern, square)
    found, used, skipped, size = [], [], [], None
    for img, name in zip(images, names):
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise DataError(
                f"{name} is {img.shape[:2]} but the first image is {size}; all "
                "calibration images must come from one camera at one resolution"
            )
        c = find_checkerboard(img, pattern)
        if c is None:
            skipped.append(name)
        else:
            found.append(c)
            used.append(name)
    if len(found) < 3:
        raise DataError(
            f"the {parse_pattern(pattern)[0]}x{parse_pattern(pattern)[1]} pattern was found "
            f"in {len(found)} of {len(images)} images; calibration needs >= 3 (check "
            "pattern= counts inner corners, and that the whole board is visible)"
        )
    rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(
        [obj] * len(found), found, (size[1], size[0]), None, None
    )
    per_view = []
    for c, r, t in zip(found, rvecs, tvecs):
        proj, _ = cv2.projectPoints(obj, r, t, k, dist)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - c) ** 2, 1)))))
    return {
        "camera_matrix": k,
        "dist_coeffs": dist.ravel(),
        "rms": float(rms),
        "per_view_rms": per_view,
        "image_size": tuple(int(v) for v in size),
        "used": used,
        "skipped": skipped,
        "rvecs": [r.ravel() for r in rvecs],
        "tvecs": [t.ravel() for t in tvecs],
    }
