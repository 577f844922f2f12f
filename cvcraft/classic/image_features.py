"""Feature extractors for classic ML on images, as scikit-learn transformers.

Each takes X = uint8 images, (N, H, W, C) / (N, H, W) or a list of HxW[xC] arrays (resized
to ``size`` when given; needed when the sizes differ), and returns an (N, D) float matrix:
raw pixels, HOG, LBP histograms, colour histograms, and a bag of visual words over
SIFT/ORB descriptors with a k-means vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from cvcraft.classic.hog import hog
from cvcraft.classic.lbp import lbp_histogram
from cvcraft.errors import ConfigError, DataError


def image_batch(
    images: np.ndarray | Sequence[np.ndarray], size: tuple[int, int] | None = None
) -> np.ndarray:
    """Stack images into (N, H, W, C) uint8, resizing each to ``size`` = (H, W) if given."""
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        x = images if images.ndim == 4 else images[..., None]
        if x.dtype != np.uint8:
            raise DataError(f"images must be uint8, got {x.dtype}")
        if size is not None and tuple(x.shape[1:3]) != tuple(size):
            x = np.stack([cv2.resize(i, size[::-1], interpolation=cv2.INTER_AREA) for i in x])
            x = x if x.ndim == 4 else x[..., None]
        return x
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise DataError("images must be an (N, H, W[, C]) uint8 array or a non-empty list")
    arrs = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim not in (2, 3):
            raise DataError(f"image {k} must be a uint8 HxW[xC] array, got {im.dtype} {im.shape}")
        if size is not None and im.shape[:2] != tuple(size):
            im = cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA)
        arrs.append(im if im.ndim == 3 else im[..., None])
    if len({a.shape for a in arrs}) > 1:
        raise DataError("images have different sizes; pass size=(H, W) to resize them")
    return np.stack(arrs)


def grey_batch(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, H, W) uint8 luma (BT.601)."""
    if x.shape[3] == 1:
        return x[..., 0]
    y = x[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


class _Stateless(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):  # noqa: N803 - scikit-learn's naming
        return self


class RawPixels(_Stateless):
    """Pixels as features: resized to ``size`` (area), optionally grey, scaled to [0, 1]."""

    def __init__(self, size: tuple[int, int] | None = None, grey: bool = False):
        self.size, self.grey = size, grey

    def transform(self, X):  # noqa: N803
        x = image_batch(X, self.size)
        x = grey_batch(x) if self.grey else x
        return x.reshape(len(x), -1).astype(np.float32) / 255.0


class HOGFeatures(_Stateless):
    """HOG (``cvcraft.classic.hog``) of each image; colour images use the strongest channel."""

    def __init__(
        self, size=None, orientations: int = 9, cell: int = 8, block: int = 2, colour: bool = True
    ):
        self.size, self.orientations, self.cell = size, orientations, cell
        self.block, self.colour = block, colour

    def transform(self, X):  # noqa: N803
        x = image_batch(X, self.size)
        if self.colour and x.shape[3] == 3:
            return hog(x, self.orientations, self.cell, self.block, channel_axis=-1)
        return hog(grey_batch(x), self.orientations, self.cell, self.block)


class LBPFeatures(_Stateless):
    """Histograms of LBP codes over a grid x grid of cells (grey)."""

    def __init__(
        self,
        size=None,
        points: int = 8,
        radius: float = 1.0,
        method: str = "uniform",
        grid: int = 4,
    ):
        self.size, self.points, self.radius = size, points, radius
        self.method, self.grid = method, grid

    def transform(self, X):  # noqa: N803
        g = grey_batch(image_batch(X, self.size))
        return lbp_histogram(g, self.points, self.radius, self.method, self.grid)


class ColorHistogram(_Stateless):
    """Joint colour histogram with ``bins`` per channel (bins^3 values, sums to 1), in RGB
    or HSV (hue wraps at 180 in OpenCV's 8-bit HSV)."""

    def __init__(self, size=None, bins: int = 8, space: str = "hsv"):
        self.size, self.bins, self.space = size, bins, space

    def transform(self, X):  # noqa: N803
        if self.space not in ("rgb", "hsv"):
            raise ConfigError(f"space={self.space!r}: use rgb or hsv")
        x = image_batch(X, self.size)
        if x.shape[3] != 3:
            raise DataError("ColorHistogram needs RGB images")
        n, b = len(x), self.bins
        top = np.array([256, 256, 256])
        if self.space == "hsv":
            x = cv2.cvtColor(x.reshape(-1, x.shape[2], 3), cv2.COLOR_RGB2HSV).reshape(x.shape)
            top = np.array([180, 256, 256])
        q = (x.astype(np.int64) * b) // top  # (N, H, W, 3) bin per channel
        idx = (q[..., 0] * b + q[..., 1]) * b + q[..., 2] + (np.arange(n) * b**3)[:, None, None]
        h = np.bincount(idx.ravel(), minlength=n * b**3).reshape(n, b**3).astype(np.float64)
        return h / h.sum(1, keepdims=True)


class BagOfVisualWords(BaseEstimator, TransformerMixin):
    """Bag of visual words: local descriptors (SIFT or ORB, on a dense grid or at detected
    keypoints), a k-means vocabulary of ``words`` centres, and per image the normalized
    histogram of nearest words. Images are resized to ``size`` first (SIFT/ORB need more
    than CIFAR's 32 px)."""

    def __init__(
        self,
        detector: str = "sift",
        words: int = 100,
        size=(64, 64),
        step: int | None = 8,
        patch: int = 16,
        max_descriptors: int = 20000,
        random_state: int = 0,
    ):
        self.detector, self.words, self.size, self.step = detector, words, size, step
        self.patch, self.max_descriptors, self.random_state = patch, max_descriptors, random_state

    def _describe(self, g: np.ndarray) -> list[np.ndarray]:
        if self.detector == "sift":
            det = cv2.SIFT_create()
        elif self.detector == "orb":
            half = max(self.patch // 2, 3)
            det = cv2.ORB_create(edgeThreshold=half, patchSize=self.patch)
        else:
            raise ConfigError(f"detector={self.detector!r}: use sift or orb")
        h, w = g.shape[1:]
        grid = None
        if self.step:
            m = self.patch // 2
            ys, xs = np.mgrid[m : h - m + 1 : self.step, m : w - m + 1 : self.step]
            grid = [
                cv2.KeyPoint(float(x), float(y), float(self.patch))
                for x, y in zip(xs.ravel(), ys.ravel())
            ]
        out = []
        for im in g:  # one OpenCV call per image
            if grid is not None:
                _, d = det.compute(im, grid)
            else:
                _, d = det.detectAndCompute(im, None)
            dim = 128 if self.detector == "sift" else 256
            if d is None:
                d = np.zeros((0, dim), np.float32)
            elif self.detector == "orb":
                d = np.unpackbits(d, axis=1).astype(np.float32)  # bits as 0/1 floats
            out.append(d.astype(np.float32))
        return out

    def fit(self, X, y=None):  # noqa: N803
        from sklearn.cluster import MiniBatchKMeans

        descs = self._describe(grey_batch(image_batch(X, self.size)))
        allx = np.concatenate(descs)
        if len(allx) < self.words:
            raise DataError(
                f"only {len(allx)} descriptors for a {self.words}-word vocabulary; use fewer "
                "words, a smaller step or larger images"
            )
        rng = np.random.default_rng(self.random_state)
        if len(allx) > self.max_descriptors:
            allx = allx[rng.choice(len(allx), self.max_descriptors, replace=False)]
        kmeans = MiniBatchKMeans(
            self.words, random_state=self.random_state, n_init=3, batch_size=2048
        ).fit(allx)
        self.centers_ = kmeans.cluster_centers_.astype(np.float32)  # (words, D): the vocabulary
        return self

    def nearest_word(self, d: np.ndarray) -> np.ndarray:
        """(M, D) descriptors -> (M,) index of the nearest vocabulary centre (Euclidean):
        argmin_k |c_k|^2 - 2 d . c_k (|d|^2 is the same for every k)."""
        c = self.centers_.astype(np.float64)
        cc = (c * c).sum(1)[None, :]
        step = 1 << 15  # rows per block: bounds the (rows, words) distance table in memory
        parts = [np.argmin(cc - 2.0 * d[i : i + step].astype(np.float64) @ c.T, axis=1)
                 for i in range(0, len(d), step)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def transform(self, X):  # noqa: N803
        descs = self._describe(grey_batch(image_batch(X, self.size)))
        n = len(descs)
        counts = np.array([len(d) for d in descs])
        hist = np.zeros((n, len(self.centers_)))
        if counts.sum():
            words = self.nearest_word(np.concatenate(descs))
            owner = np.repeat(np.arange(n), counts)
            np.add.at(hist, (owner, words), 1.0)
        return hist / np.maximum(hist.sum(1, keepdims=True), 1.0)
