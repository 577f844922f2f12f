"""Cutout (DeVries & Taylor 2017): blank random square holes so the model cannot rely on
one discriminative region. Registered: ``cutout``."""

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
    ``fill``: pixel value, per-channel tuple, or ``"mean"`` (the image's channel means).
    Only the image changes: boxes/masks are kept (classification slice; occlusion-aware box
    dropping belongs to the detection pipeline).
    """

    def __init__(
        self,
        n_holes: int = 1,
        size: float | Sequence[float] = 0.5,
        fill: F.Fill | str = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        if n_holes < 1:
            raise ConfigError(f"Cutout: n_holes must be >= 1, got {n_holes}")
        sizes = [size, size] if np.isscalar(size) else list(size)
        if len(sizes) != 2 or min(sizes) <= 0:
            raise ConfigError(f"Cutout: size must be > 0 (pixels or a fraction), got {size}")
        if isinstance(fill, str) and fill != "mean":
            raise ConfigError(f"Cutout: fill must be a number, a tuple or 'mean', got {fill!r}")
        self.n_holes, self.size, self.fill = int(n_holes), size, fill

    def hole_size(self, height: int, width: int) -> tuple[int, int]:
        """Hole (h, w) in pixels for an image of (height, width)."""
        sizes = [self.size, self.size] if np.isscalar(self.size) else list(self.size)
        short = min(height, width)
        hw = [round(s * short) if isinstance(s, float) and s <= 1 else int(s) for s in sizes]
        return max(1, hw[0]), max(1, hw[1])

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        hh, hw = self.hole_size(sample.height, sample.width)
        cy = rng.integers(0, sample.height, self.n_holes)
        cx = rng.integers(0, sample.width, self.n_holes)
        y1, x1 = cy - hh // 2, cx - hw // 2
        rects = np.stack([x1, y1, x1 + hw, y1 + hh], axis=1)
        h, w = sample.height, sample.width
        rects = np.clip(rects, 0, [w, h, w, h]).astype(np.int64)  # (n_holes, 4) xyxy
        return {"rects": rects}

    def apply(self, sample: Sample, params: Params) -> Sample:
        img = sample.image
        fill = img.reshape(-1, img.shape[-1]).mean(0) if isinstance(self.fill, str) else self.fill
        return sample.replace(image=F.erase(img, params["rects"], fill))
