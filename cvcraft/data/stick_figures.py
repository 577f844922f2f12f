"""Articulated stick figures with known COCO keypoints: the embedded pose dataset (no download).

A figure faces the camera, so the person's left side is drawn on the image's right (as in a
frontal photo; a horizontal flip with the left/right flip index stays consistent). Random
body height, position, torso lean, arm and leg joint angles; limbs are lines, the head a
filled circle around the nose, eyes and ears. Every keypoint is labelled visible (v = 2)
unless it falls outside the image.

Multi-person scenes (``render_scene``, for bottom-up models) place 1..P smaller figures at
random, so limbs of different people can touch and cross.

Shapes: image (S, S, 3) uint8; keypoints (P, 17, 3) float32 (x, y, v) in continuous pixel
coordinates (pixel i spans [i, i + 1)); boxes (P, 4) xyxy = keypoint extent plus a margin
(P = 1 for ``make_stick_figures``).
"""

from __future__ import annotations

import cv2
import numpy as np

from cvcraft.data.skeleton import COCO_SKELETON


def _dir(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down (image y grows downward)."""
    return np.array([np.sin(angle), np.cos(angle)])


def figure_keypoints(rng: np.random.Generator, size: int) -> np.ndarray:
    """17 (x, y) COCO keypoints of one random frontal figure that fits in ``size``. -> (17, 2)"""
    h = size * rng.uniform(0.55, 0.85)  # body height
    lean = rng.uniform(-0.25, 0.25)
    hip = np.array([rng.uniform(0.35, 0.65) * size, size * 0.5 + h * rng.uniform(0.02, 0.1)])
    up = -_dir(lean)  # from hips towards the head
    side = np.array([-up[1], up[0]])  # towards the image right (the person's left)
    if side[0] < 0:
        side = -side
    neck = hip + up * 0.3 * h
    kp = np.zeros((17, 2))
    kp[11], kp[12] = hip + side * 0.09 * h, hip - side * 0.09 * h  # left / right hip
    kp[5], kp[6] = neck + side * 0.13 * h, neck - side * 0.13 * h  # shoulders
    nose = neck + up * 0.13 * h
    kp[0] = nose
    kp[1], kp[2] = nose + up * 0.03 * h + side * 0.03 * h, nose + up * 0.03 * h - side * 0.03 * h
    kp[3], kp[4] = nose + side * 0.06 * h, nose - side * 0.06 * h
    for s, (sh, el, wr) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):  # arms: out to the own side
        a1 = lean + s * rng.uniform(0.1, 2.2)
        a2 = a1 + s * rng.uniform(-1.2, 1.2)
        kp[el] = kp[sh] + _dir(a1) * 0.16 * h
        kp[wr] = kp[el] + _dir(a2) * 0.15 * h
    for s, (hp, kn, an) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):  # legs
        a1 = s * rng.uniform(0.0, 0.5)
        a2 = a1 + rng.uniform(-0.5, 0.5)
        kp[kn] = kp[hp] + _dir(a1) * 0.23 * h
        kp[an] = kp[kn] + _dir(a2) * 0.22 * h
    return kp


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random gradient with pixel noise (S, S, 3) uint8."""
    grad = np.linspace(0, 1, size)[:, None, None] * rng.uniform(-60, 60, 3)
    img = np.clip(rng.uniform(40, 215, 3) + grad + rng.normal(0, 8, (size, size, 1)), 0, 255)
    return np.ascontiguousarray(img.astype(np.uint8))


def _draw_figure(img: np.ndarray, xy: np.ndarray, colour: tuple[int, ...], thick: int) -> None:
    """Limbs, head disc and eye dots of one figure (17, 2) drawn into ``img`` in place."""
    pix = xy - 0.5  # continuous -> OpenCV pixel-index coordinates
    shift = 4  # sub-pixel drawing: 1/16 px
    p = np.round(pix * (1 << shift)).astype(np.int32)
    for a, b in COCO_SKELETON[:12]:  # body and limbs; the head is one disc
        cv2.line(img, tuple(p[a]), tuple(p[b]), colour, thick, cv2.LINE_AA, shift)
    r = np.linalg.norm(xy[3] - xy[4]) * 0.7
    cv2.circle(img, tuple(p[0]), int(round(r * (1 << shift))), colour, -1, cv2.LINE_AA, shift)
    dark = tuple(int(c) // 3 for c in colour)
    for k in (1, 2):  # eyes: dots, so the face has its landmarks
        cv2.circle(img, tuple(p[k]), max(1, thick // 2) << shift, dark, -1, cv2.LINE_AA, shift)


def _label(xy: np.ndarray, size: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (17, 3) with v = 2 inside the image (else 0) and the box (4,) = keypoint
    extent plus ``margin``, clipped to the image."""
    inside = (xy >= 0).all(1) & (xy <= size).all(1)
    kps = np.concatenate([xy, np.where(inside, 2.0, 0.0)[:, None]], 1).astype(np.float32)
    box = np.array([xy[:, 0].min() - margin, xy[:, 1].min() - margin,
                    xy[:, 0].max() + margin, xy[:, 1].max() + margin])  # fmt: skip
    return kps, np.clip(box, 0, size).astype(np.float32)


def render_figure(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image with one figure -> (image (S, S, 3) uint8, keypoints (1, 17, 3), box (1, 4))."""
    xy = figure_keypoints(rng, size)
    img = _background(rng, size)
    colour = tuple(
        int(c) for c in (255 - img[size // 2, size // 2] + rng.integers(-40, 40, 3)) % 256
    )
    _draw_figure(img, xy, colour, max(1, size // 32))
    kps, box = _label(xy, size, 0.08 * size)
    return img, kps[None], box[None]


def render_scene(
    rng: np.random.Generator, size: int, people: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image with 1..``people`` smaller figures (scale 0.45-0.7) at random places, hips
    at least 0.22 size apart (limbs may touch and cross; bodies do not coincide) ->
    (image (S, S, 3), keypoints (P, 17, 3), boxes (P, 4))."""
    img = _background(rng, size)
    want = int(rng.integers(1, people + 1))
    figs: list[np.ndarray] = []
    for _ in range(20 * want):  # rejection sampling of placements
        if len(figs) == want:
            break
        s = rng.uniform(0.45, 0.7)
        xy = figure_keypoints(rng, size) * s
        lo, hi = xy.min(0), xy.max(0)
        xy = xy - lo + rng.uniform(0, 1, 2) * np.maximum(size - (hi - lo), 0)
        hip = xy[11:13].mean(0)
        if all(np.linalg.norm(hip - f[11:13].mean(0)) >= 0.22 * size for f in figs):
            figs.append(xy)
    labels = []
    for xy in figs:
        base = img[int(np.clip(xy[11, 1], 0, size - 1)), int(np.clip(xy[11, 0], 0, size - 1))]
        colour = tuple(int(c) for c in (255 - base.astype(int) + rng.integers(-40, 40, 3)) % 256)
        _draw_figure(img, xy, colour, max(1, size // 48))
        labels.append(_label(xy, size, 0.05 * size))
    return (img, np.stack([k for k, _ in labels]), np.stack([b for _, b in labels]))


def make_stick_figures(
    n: int, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` figures -> images (n, S, S, 3) uint8, keypoints (n, 1, 17, 3), boxes (n, 1, 4);
    figure i is fixed by (seed, i)."""
    out = [render_figure(np.random.default_rng([seed, 29, i]), size) for i in range(n)]
    return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]),
            np.stack([o[2] for o in out]))  # fmt: skip


def make_stick_scenes(
    n: int, size: int = 128, seed: int = 0, people: int = 3
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` multi-person scenes (``render_scene``): per image (image, keypoints (P, 17, 3),
    boxes (P, 4)); scene i is fixed by (seed, i)."""
    return [render_scene(np.random.default_rng([seed, 31, i]), size, people) for i in range(n)]
