"""Cutout (DeVries & Taylor 2017) and Random Erasing (Zhong et al. 2017): blank random
rectangles so the model cannot rely on one discriminative region. Registered: ``cutout``,
``random_erasing``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.base import TRANSFORMS, Params, Transform


@TRANSFORMS.register("cutout")
class Cutout(Transform):
    """Erase ``n_holes`` holes of ``size`` whose centres are uniform over the image.

    ``size``: int = pixels; float in (0, 1] = fraction of the shorter side; or (h, w) of
    either. As in the paper the centre may lie near the border, so a hole can be clipped.
    ``n_holes``: an int or an inclusive (min, max) range drawn per call.
    ``fill``: pixel value, per-channel tuple, ``"mean"`` (the image's channel means) or
    ``"random"`` (uniform 0..255 noise, reproducible from the recorded seed).
    Only the image changes: boxes/masks are kept (classification slice; occlusion-aware box
    dropping belongs to the detection pipeline).
    """

    def __init__(
        self,
        n_holes: int | Sequence[int] = 1,
        size: float | Sequence[float] = 0.5,
        fill: F.Fill | str = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        lo, hi = (int(n_holes),) * 2 if np.isscalar(n_holes) else map(int, n_holes)
        if not 1 <= lo <= hi:
            raise ConfigError(f"Cutout: n_holes must be >= 1 (or a range), got {n_holes}")
        sizes = [size, size] if np.isscalar(size) else list(size)
        if len(sizes) != 2 or min(sizes) <= 0:
            raise ConfigError(f"Cutout: size must be > 0 (pixels or a fraction), got {size}")
        if isinstance(fill, str) and fill not in ("mean", "random"):
            raise ConfigError(
                f"Cutout: fill must be a number, a tuple, 'mean' or 'random', got {fill!r}"
            )
        self.n_holes = lo if lo == hi else (lo, hi)
        self.size, self.fill = size, fill

    def hole_size(self, height: int, width: int) -> tuple[int, int]:
        """Hole (h, w) in pixels for an image of (height, width)."""
        sizes = [self.size, self.size] if np.isscalar(self.size) else list(self.size)
        short = min(height, width)
        hw = [round(s * short) if isinstance(s, float) and s <= 1 else int(s) for s in sizes]
        return max(1, hw[0]), max(1, hw[1])

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        hh, hw = self.hole_size(sample.height, sample.width)
        n = self.n_holes
        if not np.isscalar(n):  # inclusive range, drawn only then so fixed-n seeds are stable
            n = int(rng.integers(n[0], n[1] + 1))
        cy = rng.integers(0, sample.height, n)
        cx = rng.integers(0, sample.width, n)
        y1, x1 = cy - hh // 2, cx - hw // 2
        rects = np.stack([x1, y1, x1 + hw, y1 + hh], axis=1)
        h, w = sample.height, sample.width
        rects = np.clip(rects, 0, [w, h, w, h]).astype(np.int64)  # (n_holes, 4) xyxy
        params: Params = {"rects": rects}
        if self.fill == "random":
            params["seed"] = int(rng.integers(2**63))
        return params

    def apply(self, sample: Sample, params: Params) -> Sample:
        return sample.replace(image=_erase_with(sample.image, params, self.fill))


def _erase_with(image: np.ndarray, params: Params, fill: F.Fill | str) -> np.ndarray:
    """Erase ``params["rects"]`` with a value, the channel means, or seeded uniform noise."""
    if fill == "random":
        out = image.copy()
        rng = np.random.default_rng(params["seed"])
        for x1, y1, x2, y2 in F.clip_rects(params["rects"], image.shape[:2]).tolist():
            shape = (y2 - y1, x2 - x1, image.shape[2])
            out[y1:y2, x1:x2] = rng.integers(0, 256, shape, dtype=np.uint8)
        return out
    if fill == "mean":
        fill = image.reshape(-1, image.shape[-1]).mean(0)
    return F.erase(image, params["rects"], fill)


@TRANSFORMS.register("random_erasing")
class RandomErasing(Transform):
    """Erase one rectangle of random area and aspect (Random Erasing, Zhong et al. 2017).

    Up to 10 attempts: area fraction ~ U(``scale``), log aspect (h/w) ~ U(log ``ratio``),
    at a uniform position; if none fits the image is left unchanged (torchvision's rule).
    ``fill``: value, tuple, ``"mean"`` or ``"random"`` (noise). Default p = 0.5 as in the paper.
    """

    def __init__(
        self,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        fill: F.Fill | str = 0,
        p: float = 0.5,
    ) -> None:
        super().__init__(p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(
                f"RandomErasing: need 0 < scale <= 1 and 0 < ratio, got {scale}, {ratio}"
            )
        if isinstance(fill, str) and fill not in ("mean", "random"):
            raise ConfigError(f"RandomErasing: fill must be a value, 'mean' or 'random': {fill!r}")
        self.fill = fill

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = sample.height, sample.width
        log_r = np.log(self.ratio)
        rects = np.zeros((0, 4), np.int64)
        for _ in range(10):
            area = h * w * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(*log_r))
            eh, ew = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                rects = np.array([[left, top, left + ew, top + eh]], np.int64)
                break
        params: Params = {"rects": rects}
        if self.fill == "random":
            params["seed"] = int(rng.integers(2**63))
        return params

    def apply(self, sample: Sample, params: Params) -> Sample:
        if len(params["rects"]) == 0:
            return sample
        return sample.replace(image=_erase_with(sample.image, params, self.fill))
