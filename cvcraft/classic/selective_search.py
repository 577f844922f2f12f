"""Selective search region proposals (Uijlings et al., IJCV 2013) for the R-CNN teaching
pipeline and Fast R-CNN -- our own implementation, numpy + scipy only.

1. Over-segment the image in a colour space with Felzenszwalb's graph segmentation
   (``cvcraft.classic.felzenszwalb``, k in {50, 100, ...}, sigma 0.8, min_size k).
2. Describe each region by a colour histogram (25 bins per channel), a texture histogram
   (Gaussian derivatives, sigma 1, in 8 directions, 10 bins each, per channel), both
   L1-normalised, its size and its bounding box.
3. Hierarchical grouping: repeatedly merge the two most similar *neighbouring* regions,
   where similarity is a sum of some of colour and texture histogram intersection, size
   ``1 - (|ri| + |rj|) / |im|`` and fill ``1 - (|BBij| - |ri| - |rj|) / |im|``. The merged
   region's histograms are the size-weighted mean of its parts, its box their union, its
   neighbours theirs. Every region, initial or merged, is a proposal.
4. Strategies ("fast": HSV and Lab x k 50, 100 x C+T+S+F and T+S+F; "quality": HSV, Lab,
   rg+I, H, I x k 50, 100, 150, 300 x those two, F and S) are pooled by the paper's
   randomised hierarchy rank: a region's value is its position in its own hierarchy (1 is
   the whole image, counting back in merge order) times a uniform random number; proposals
   are sorted by value, duplicate boxes keep their first place. The random numbers come
   from ``seed`` (an int or a ``numpy.random.Generator``), never from global state.

OpenCV's contrib implementation (``cv2.ximgproc.segmentation``) is not used: the contrib
wheel replaces ``opencv-python-headless`` (same ``cv2`` package), which is our dependency.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi

from cvcraft.classic.checks import check_image, choice
from cvcraft.classic.felzenszwalb import felzenszwalb
from cvcraft.errors import ConfigError

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_DIRECTIONS = 8
SIGMA = 0.8  # Felzenszwalb smoothing, as in the paper
MEASURES = ("colour", "texture", "size", "fill")
# similarity combinations by the paper's letters: C colour, T texture, S size, F fill
COMBOS = {"CTSF": MEASURES, "TSF": MEASURES[1:], "F": ("fill",), "S": ("size",)}
STRATEGIES = {
    "fast": {"spaces": ("hsv", "lab"), "ks": (50, 100), "combos": ("CTSF", "TSF")},
    "quality": {
        "spaces": ("hsv", "lab", "rgi", "h", "i"),
        "ks": (50, 100, 150, 300),
        "combos": ("CTSF", "TSF", "F", "S"),
    },
}
SPACES = ("hsv", "lab", "rgi", "h", "i", "rgb")


def available() -> bool:
    """Always True: the search is ours (kept so callers that asked still work)."""
    return True


# ------------------------------------------------------------------ colour spaces, features
def colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float64 (H, W, C) in [0, 1] in ``space``: "hsv" (OpenCV's
    uint8 HSV: H/180, S/255, V/255), "lab" (OpenCV's uint8 Lab / 255), "rgi" (r and g
    chromaticity and intensity), "h" (hue only), "i" (intensity only) or "rgb"."""
    choice(space, "space", SPACES)
    img = check_image(image, channels=(3,), dtypes=(np.uint8,))
    if space in ("hsv", "h"):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float64)
        hsv /= np.array([180.0, 255.0, 255.0])
        return hsv if space == "hsv" else hsv[..., :1]
    if space == "lab":
        return cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float64) / 255.0
    rgb = img.astype(np.float64)
    intensity = rgb.sum(-1, keepdims=True)
    if space == "i":
        return intensity / (3 * 255.0)
    if space == "rgi":
        chroma = np.where(intensity > 0, rgb[..., :2] / np.maximum(intensity, 1), 1 / 3)
        return np.concatenate([chroma, intensity / (3 * 255.0)], -1)
    return rgb / 255.0


def _bin(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of values in [0, 1] (1 falls in the last bin)."""
    return np.minimum((values * bins).astype(np.int64), bins - 1)


def colour_bins(image: np.ndarray) -> np.ndarray:
    """(H, W, C) image in [0, 1] -> (H, W, C) index of each pixel's bin in the
    C * 25-bin colour histogram (channel c uses bins c*25 .. c*25+24)."""
    offsets = np.arange(image.shape[-1]) * COLOUR_BINS
    return _bin(np.clip(image, 0, 1), COLOUR_BINS) + offsets


def texture_bins(image: np.ndarray) -> np.ndarray:
    """(H, W, C) image -> (H, W, C * 8) bin index of each pixel in the C * 8 * 10-bin
    texture histogram: per channel, the Gaussian derivative (sigma 1) in 8 directions
    (every 45 degrees), negative responses cut to 0 (so opposite directions differ), each
    direction binned in 10 bins from 0 to the channel's largest response."""
    angles = np.arange(TEXTURE_DIRECTIONS) * (2 * np.pi / TEXTURE_DIRECTIONS)
    out = []
    for c in range(image.shape[-1]):
        ch = image[..., c]
        gx = ndi.gaussian_filter(ch, 1.0, order=(0, 1), mode="reflect")
        gy = ndi.gaussian_filter(ch, 1.0, order=(1, 0), mode="reflect")
        resp = np.maximum(gx[..., None] * np.cos(angles) + gy[..., None] * np.sin(angles), 0)
        top = resp.max()
        scaled = resp / top if top > 0 else resp
        base = (c * TEXTURE_DIRECTIONS + np.arange(TEXTURE_DIRECTIONS)) * TEXTURE_BINS
        out.append(_bin(scaled, TEXTURE_BINS) + base)
    return np.concatenate(out, -1)


def _histograms(labels: np.ndarray, bins: np.ndarray, n: int, dim: int) -> np.ndarray:
    """(n, dim) L1-normalised histograms of the per-pixel bin indices of each region."""
    flat = (labels.reshape(-1, 1) * dim + bins.reshape(labels.size, -1)).ravel()
    hist = np.bincount(flat, minlength=n * dim).reshape(n, dim).astype(np.float64)
    return hist / hist.sum(1, keepdims=True)


@dataclass
class Regions:
    """Features of regions: ``size`` (pixels), ``box`` (x1, y1, x2, y2; x2, y2 one past the
    last pixel), ``colour`` and ``texture`` (L1-normalised histograms, one row each)."""

    size: np.ndarray
    box: np.ndarray
    colour: np.ndarray
    texture: np.ndarray
    image_size: int = 0

    def __len__(self) -> int:
        return len(self.size)


def region_features(labels: np.ndarray, image: np.ndarray) -> Regions:
    """Features of the regions of a label map (labels 0..n-1) on an image in [0, 1]."""
    n = int(labels.max()) + 1
    c = image.shape[-1]
    slices = ndi.find_objects(labels + 1)
    box = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], np.int64)
    return Regions(
        size=np.bincount(labels.ravel(), minlength=n).astype(np.int64),
        box=box,
        colour=_histograms(labels, colour_bins(image), n, c * COLOUR_BINS),
        texture=_histograms(labels, texture_bins(image), n, c * TEXTURE_DIRECTIONS * TEXTURE_BINS),
        image_size=labels.size,
    )


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) pairs i < j of regions that touch (8-connectivity, as the segmentation)."""
    n = int(labels.max()) + 1
    a = np.concatenate(
        [
            labels[:, 1:].ravel(),
            labels[1:, :].ravel(),
            labels[1:, 1:].ravel(),
            labels[:-1, 1:].ravel(),
        ]
    )
    b = np.concatenate(
        [
            labels[:, :-1].ravel(),
            labels[:-1, :].ravel(),
            labels[:-1, :-1].ravel(),
            labels[1:, :-1].ravel(),
        ]
    )
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    codes = np.unique(lo * n + hi)
    return np.stack([codes // n, codes % n], 1)


# ------------------------------------------------------------------------- similarities
def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """sum_k min(h1_k, h2_k) over the last axis (1 for equal L1-normalised histograms)."""
    return np.minimum(h1, h2).sum(-1)


def size_similarity(size_i: np.ndarray, size_j: np.ndarray, image_size: int) -> np.ndarray:
    """1 - (|ri| + |rj|) / |im|: small regions merge early."""
    return 1.0 - (size_i + size_j) / image_size


def box_union(bi: np.ndarray, bj: np.ndarray) -> np.ndarray:
    """Smallest x1, y1, x2, y2 box around both."""
    return np.concatenate(
        [np.minimum(bi[..., :2], bj[..., :2]), np.maximum(bi[..., 2:], bj[..., 2:])], -1
    )


def fill_similarity(
    box_i: np.ndarray, box_j: np.ndarray, size_i: np.ndarray, size_j: np.ndarray, image_size: int
) -> np.ndarray:
    """1 - (|BBij| - |ri| - |rj|) / |im|: regions that fill each other's gaps merge early."""
    u = box_union(box_i, box_j)
    area = (u[..., 2] - u[..., 0]) * (u[..., 3] - u[..., 1])
    return 1.0 - (area - size_i - size_j) / image_size


def region_similarity(
    regions: Regions, i: int, others: np.ndarray, measures: Sequence[str]
) -> np.ndarray:
    """Similarity of region ``i`` to each region of ``others``: the sum of ``measures``
    (any of "colour", "texture", "size", "fill"), each in [0, 1]."""
    r = regions
    s = np.zeros(len(others))
    if "colour" in measures:
        s += histogram_intersection(r.colour[i], r.colour[others])
    if "texture" in measures:
        s += histogram_intersection(r.texture[i], r.texture[others])
    if "size" in measures:
        s += size_similarity(r.size[i], r.size[others], r.image_size)
    if "fill" in measures:
        s += fill_similarity(r.box[i], r.box[others], r.size[i], r.size[others], r.image_size)
    return s


# --------------------------------------------------------------------- hierarchical grouping
@dataclass
class Hierarchy:
    """Every region of one grouping: the ``n_initial`` segments, then one region per merge
    (region ``n_initial + m`` is ``merges[m]``'s two regions joined). ``boxes`` (R, 4),
    ``sizes`` (R,); ``regions`` holds every region's features (merged histograms too)."""

    boxes: np.ndarray
    sizes: np.ndarray
    n_initial: int
    merges: list[tuple[int, int]] = field(default_factory=list)
    regions: Regions | None = None


def hierarchical_grouping(
    labels: np.ndarray, regions: Regions, measures: Sequence[str]
) -> Hierarchy:
    """Greedily merge the most similar neighbouring regions until one is left.

    Ties go to the pair with the smaller indices. Similarities never change while both
    regions live, so a heap with stale entries skipped finds the best pair each step.
    """
    n = len(regions)
    total = 2 * n - 1
    dim_c, dim_t = regions.colour.shape[1], regions.texture.shape[1]
    r = Regions(
        size=np.zeros(total, np.int64),
        box=np.zeros((total, 4), np.int64),
        colour=np.zeros((total, dim_c)),
        texture=np.zeros((total, dim_t)),
        image_size=regions.image_size,
    )
    r.size[:n], r.box[:n] = regions.size, regions.box
    r.colour[:n], r.texture[:n] = regions.colour, regions.texture
    alive = np.zeros(total, bool)
    alive[:n] = True
    adjacent: list[set[int]] = [set() for _ in range(total)]
    heap: list[tuple[float, int, int]] = []
    pairs = neighbour_pairs(labels)
    for i in range(n):  # initial similarities, one vectorised call per region
        js = pairs[pairs[:, 0] == i, 1]
        adjacent[i].update(js.tolist())
        for j in js.tolist():
            adjacent[j].add(i)
        for j, s in zip(js.tolist(), region_similarity(r, i, js, measures).tolist()):
            heap.append((-s, i, j))
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    t = n
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        si, sj = r.size[i], r.size[j]
        r.size[t] = si + sj
        r.box[t] = box_union(r.box[i], r.box[j])
        r.colour[t] = (si * r.colour[i] + sj * r.colour[j]) / (si + sj)
        r.texture[t] = (si * r.texture[i] + sj * r.texture[j]) / (si + sj)
        alive[i] = alive[j] = False
        alive[t] = True
        nbrs = (adjacent[i] | adjacent[j]) - {i, j}
        for k in nbrs:
            adjacent[k] -= {i, j}
            adjacent[k].add(t)
        adjacent[t] = nbrs
        ks = np.array(sorted(nbrs), np.int64)
        for k, s in zip(ks.tolist(), region_similarity(r, t, ks, measures).tolist()):
            heapq.heappush(heap, (-s, k, t))
        merges.append((i, j))
        t += 1
    r = Regions(r.size[:t], r.box[:t], r.colour[:t], r.texture[:t], r.image_size)
    return Hierarchy(boxes=r.box, sizes=r.size, n_initial=n, merges=merges, regions=r)


# ----------------------------------------------------------------------------- the search
def selective_search(
    image: np.ndarray,
    mode: str = "fast",
    max_boxes: int = 2000,
    *,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Region proposals for an RGB uint8 image. mode "fast" (8 strategies) or "quality"
    (80). -> (N, 4) float32 xyxy boxes in pixels (x2, y2 one past the region's last pixel),
    best first by the randomised hierarchy rank, no duplicates, at most ``max_boxes``.
    """
    img = check_image(image, channels=(3,), dtypes=(np.uint8,))
    choice(mode, "mode", tuple(STRATEGIES))
    if max_boxes < 1:
        raise ConfigError(f"max_boxes must be >= 1, got {max_boxes}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    strategy = STRATEGIES[mode]
    boxes, values = [], []
    for space in strategy["spaces"]:
        converted = colour_space(img, space)
        for k in strategy["ks"]:
            labels = felzenszwalb(converted, scale=k, sigma=SIGMA, min_size=k)
            regions = region_features(labels, converted)
            for combo in strategy["combos"]:
                h = hierarchical_grouping(labels, regions, COMBOS[combo])
                position = np.arange(len(h.boxes), 0, -1)  # the last merge (whole image) is 1
                boxes.append(h.boxes)
                values.append(position * rng.random(len(position)))
    all_boxes = np.concatenate(boxes)[np.argsort(np.concatenate(values), kind="stable")]
    first = np.sort(np.unique(all_boxes, axis=0, return_index=True)[1])
    return all_boxes[first[:max_boxes]].astype(np.float32)
