"""Hough transforms: straight lines (standard and probabilistic) and circles.

A line is rho = x cos(theta) + y sin(theta); every edge pixel votes for all (rho, theta)
it lies on and peaks in the accumulator are lines. Circles use the gradient (Hough) method.
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.classic.checks import check_gray, check_positive
from cvcraft.errors import ConfigError


def _edges(edges: np.ndarray) -> np.ndarray:
    return (check_gray(edges, "edges", dtypes=(np.uint8, np.bool_)) != 0).astype(np.uint8)


def hough_lines(
    edges: np.ndarray,
    threshold: int,
    rho_step: float = 1.0,
    theta_step: float = np.pi / 180,
) -> np.ndarray:
    """Standard Hough lines on a binary edge image. -> (N, 2) float32 (rho px, theta rad),
    strongest first; theta in [0, pi), rho may be negative.
    """
    e = _edges(edges)
    if threshold < 1:
        raise ConfigError(f"threshold (minimum votes) must be >= 1, got {threshold}")
    r = check_positive(rho_step, "rho_step")
    t = check_positive(theta_step, "theta_step")
    lines = cv2.HoughLines(e, r, t, int(threshold))
    return (
        np.zeros((0, 2), np.float32)
        if lines is None or lines.size == 0
        else lines.reshape(len(lines), -1)[:, :2].astype(np.float32)
    )


def hough_lines_p(
    edges: np.ndarray,
    threshold: int,
    min_length: float = 0.0,
    max_gap: float = 0.0,
    rho_step: float = 1.0,
    theta_step: float = np.pi / 180,
) -> np.ndarray:
    """Probabilistic Hough: line segments from random edge-pixel votes. -> (N, 4) int32
    x1, y1, x2, y2.
    """
    e = _edges(edges)
    if threshold < 1:
        raise ConfigError(f"threshold (minimum votes) must be >= 1, got {threshold}")
    seg = cv2.HoughLinesP(
        e,
        check_positive(rho_step, "rho_step"),
        check_positive(theta_step, "theta_step"),
        int(threshold),
        minLineLength=float(min_length),
        maxLineGap=float(max_gap),
    )
    return (
        np.zeros((0, 4), np.int32)
        if seg is None or seg.size == 0
        else seg.reshape(-1, 4).astype(np.int32)
    )


def hough_circles(
    image: np.ndarray,
    min_dist: float,
    canny_high: float = 100.0,
    votes: float = 30.0,
    min_radius: int = 0,
    max_radius: int = 0,
    dp: float = 1.0,
) -> np.ndarray:
    """Circles by the Hough gradient method on a grey uint8 image (Canny inside, with
    ``canny_high`` and half of it as thresholds; centres must collect ``votes``).
    -> (N, 3) float32 x, y, r, strongest first.
    """
    img = check_gray(image, dtypes=(np.uint8,))
    if max_radius and max_radius < min_radius:
        raise ConfigError(f"max_radius {max_radius} < min_radius {min_radius}")
    c = cv2.HoughCircles(
        img,
        cv2.HOUGH_GRADIENT,
        check_positive(dp, "dp"),
        check_positive(min_dist, "min_dist"),
        param1=check_positive(canny_high, "canny_high"),
        param2=check_positive(votes, "votes"),
        minRadius=int(min_radius),
        maxRadius=int(max_radius),
    )
    return (
        np.zeros((0, 3), np.float32)
        if c is None or c.size == 0
        else c.reshape(-1, c.shape[-1])[:, :3].astype(np.float32)
    )
