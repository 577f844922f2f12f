"""Synthetic shapes: the embedded default dataset (no download, any size, every target).

A scene is a textured background (a two-colour linear gradient + low-frequency colour
noise + a few random lines) with filled polygons of random class, colour (far from the
background under it), size, aspect, rotation and position, then per-pixel Gaussian noise.
Objects are drawn in order, so later ones occlude earlier ones; the instance masks are the
*visible* pixels, an object less than ``min_visible`` visible is left out entirely, and each
box is tight around its mask: ``x1 = min col, x2 = max col + 1`` (pixel edges), same for y.

``semantic_mask`` is uint8 with 0 = background and ``k + 1`` = ``SHAPE_CLASSES[k]``, i.e. an
index into ``SEMANTIC_CLASSES = ("background", *SHAPE_CLASSES)``.

Every draw comes from the ``numpy.random.Generator`` given, so a scene is a pure function of
the generator's seed; ``make_shapes`` seeds image ``i`` with ``(seed, split, i)``.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import cv2
import numpy as np

from cvcraft.data.classification import ArrayData
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
SEMANTIC_CLASSES = ("background", *SHAPE_CLASSES)


def _regular(k: int, phase: float = 0.0, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """k vertices on circles of the given radii (cycled), as (k, 2) unit-scale points."""
    a = phase + 2 * np.pi * np.arange(k) / k
    r = np.resize(np.asarray(radii), k)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(half: float = 0.34) -> np.ndarray:
    h = half
    return np.array(
        [
            (-h, -1),
            (h, -1),
            (h, -h),
            (1, -h),
            (1, h),
            (h, h),
            (h, 1),
            (-h, 1),
            (-h, h),
            (-1, h),
            (-1, -h),
            (-h, -h),
        ],
        dtype=np.float64,
    )


# (outer polygon, hole polygon or None) at unit scale, in SHAPE_CLASSES order. A hexagon was
# tried first and dropped: at 32x32 it differs from a circle by ~1.5 px and a small CNN
# confused the two; the ring (a hole of 0.55 radius) is unmistakable at any size.
_POLYGONS: tuple[tuple[np.ndarray, np.ndarray | None], ...] = (
    (_regular(40), None),
    (_regular(4, np.pi / 4), None),
    (_regular(3, -np.pi / 2), None),
    (_regular(10, -np.pi / 2, (1.0, 0.42)), None),
    (_cross(), None),
    (_regular(40), _regular(40, 0.0, (0.55,))),
)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs / max(w - 1, 1), ys / max(h - 1, 1)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Fixed unit Gaussian noise (512, 512, 3); scenes take random crops of it, because
    drawing fresh per-pixel noise is the single most expensive step of a small scene."""
    return np.random.default_rng(20240601).standard_normal((512, 512, 3), dtype=np.float32)


def _pixel_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    bank = _noise_bank()
    if h > bank.shape[0] or w > bank.shape[1]:
        return rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(sigma)
    y, x = rng.integers(0, (bank.shape[0] - h + 1, bank.shape[1] - w + 1))
    return bank[y : y + h, x : x + w] * np.float32(sigma)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 (H, W, 3): gradient between two colours + smooth colour noise + lines."""
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    xs, ys = _grid(h, w)
    t = xs * np.float32(np.cos(a)) + ys * np.float32(np.sin(a))
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    bg = c0 + t[..., None] * (c1 - c0)
    blobs = rng.normal(0, rng.uniform(5, 30), (4, 4, 3)).astype(np.float32)
    bg += cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 4))):
        p = rng.uniform(0, 1, 4) * (w, h, w, h)
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(bg, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), color, 1)
    return bg


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least 100 (Euclidean RGB) from ``under``, else the farthest of 8."""
    cand = rng.uniform(0, 255, (8, 3)).astype(np.float32)
    dist = np.linalg.norm(cand - under, axis=1)
    ok = np.flatnonzero(dist > 100)
    return cand[ok[0] if ok.size else int(np.argmax(dist))]


def render_scene(
    rng: np.random.Generator,
    imgsz: int | tuple[int, int] = 64,
    n_objects: tuple[int, int] = (1, 1),
    *,
    size_range: tuple[float, float] = (0.15, 0.4),
    aspect_jitter: float = 0.15,
    noise: tuple[float, float] = (2.0, 10.0),
    min_visible: float = 0.3,
    classes: tuple[int, ...] | None = None,
) -> Sample:
    """Draw one scene; returns a Sample with image, boxes, box_labels, masks, semantic_mask.

    ``imgsz`` int or (H, W); ``n_objects`` (lo, hi) inclusive; ``size_range`` is the object's
    circumscribed radius as a fraction of min(H, W); ``classes`` restricts the class indices
    drawn. ``label`` is the class when exactly one object is visible, else None.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    bg = _background(rng, h, w)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    pool = np.arange(len(SHAPE_CLASSES)) if classes is None else np.asarray(classes)
    cls = pool[rng.integers(0, len(pool), n)]
    radius = rng.uniform(*size_range, n) * min(h, w)
    scale = radius[:, None] * rng.uniform(1 - aspect_jitter, 1 + aspect_jitter, (n, 2))
    angle = rng.uniform(0, 2 * np.pi, n)
    extent = scale.max(axis=1)
    lo = np.minimum(extent, [[w / 2], [h / 2]]).T  # keep the whole object inside the image
    centre = lo + rng.uniform(0, 1, (n, 2)) * ((w, h) - 2 * lo)

    full = np.zeros((n, h, w), dtype=np.uint8)
    colors = np.zeros((n, 3), dtype=np.float32)
    for k in range(n):  # one fillPoly per object; pixels are never looped over
        c, s = np.cos(angle[k]), np.sin(angle[k])
        rot = np.array([[c, s], [-s, c]])
        for value, poly in zip((1, 0), _POLYGONS[cls[k]]):  # outline, then punch the hole
            if poly is not None:
                pts = np.round(((poly * scale[k]) @ rot + centre[k]) * 16).astype(np.int32)
                cv2.fillPoly(full[k], [pts], value, cv2.LINE_8, shift=4)
        under = bg[full[k].astype(bool)]
        colors[k] = _contrasting_color(rng, under.mean(0) if len(under) else bg.mean((0, 1)))
    full_b = full.astype(bool)

    def visible_of(m: np.ndarray) -> np.ndarray:
        # pixels not covered by any later object: reverse cumulative OR, shifted by one
        later = np.logical_or.accumulate(m[::-1], axis=0)[::-1]
        covered = np.concatenate([later[1:], np.zeros((1, h, w), bool)], axis=0)
        return m & ~covered

    vis = visible_of(full_b) if n > 1 else full_b
    area = full_b.sum((1, 2))
    keep = (area > 0) & (vis.sum((1, 2)) >= min_visible * np.maximum(area, 1))
    if not keep.all():  # dropping occluded objects only uncovers others, so one pass suffices
        full_b, cls, colors = full_b[keep], cls[keep], colors[keep]
        vis = visible_of(full_b)

    m = len(cls)
    owner = np.full((h, w), -1, dtype=np.int64)
    if m:
        any_obj = vis.any(0)
        owner = np.where(any_obj, vis.argmax(0), -1)
    img = np.where((owner >= 0)[..., None], colors[np.maximum(owner, 0)] if m else 0, bg)
    img += _pixel_noise(rng, h, w, rng.uniform(*noise))
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    semantic = np.where(owner >= 0, cls[np.maximum(owner, 0)] + 1 if m else 0, 0).astype(np.uint8)
    boxes = masks_to_boxes(vis) if m else np.zeros((0, 4), np.float32)
    return Sample(
        image=image,
        label=int(cls[0]) if m == 1 else None,
        boxes=boxes,
        box_labels=cls.astype(np.int64),
        masks=vis,
        semantic_mask=semantic,
        meta={"orig_size": (h, w)},
    )


def split_code(split: str) -> int:
    """A stable integer for a split name (mixed into the seed so splits differ)."""
    return zlib.crc32(split.encode("utf-8"))


def make_shapes(
    n: int,
    imgsz: int = 32,
    seed: int = 0,
    split: str = "train",
    *,
    size_range: tuple[float, float] = (0.28, 0.46),
) -> ArrayData:
    """``n`` one-object scenes for classification: label = the object's class (6 classes).

    Image ``i`` is ``render_scene(np.random.default_rng([seed, split_code(split), i]))``, so it
    depends only on (seed, split, i): any prefix of a larger set is the same images, and
    "train" and "val" never share an image stream. Objects span roughly 45-90% of the side so
    they stay recognizable at 32x32.
    """
    images = np.empty((n, imgsz, imgsz, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    code = split_code(split)
    for i in range(n):
        s = render_scene(
            np.random.default_rng([seed, code, i]),
            imgsz,
            (1, 1),
            size_range=size_range,
            min_visible=0.0,
        )
        images[i] = s.image
        labels[i] = s.label
    return ArrayData(
        images,
        labels,
        list(SHAPE_CLASSES),
        f"shapes(n={n}, imgsz={imgsz}, seed={seed}, split={split})",
    )
