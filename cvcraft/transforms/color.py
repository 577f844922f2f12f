"""Photometric ops on the image only (targets are untouched). Registered: ``hsv``."""

from __future__ import annotations

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.base import TRANSFORMS, Params, Transform


@TRANSFORMS.register("hsv")
class HSVJitter(Transform):
    """Random hue shift and saturation/value gains (the YOLO ``hsv_h/hsv_s/hsv_v`` knobs).

    hue_shift ~ U(-h, h) as a fraction of the colour wheel; sat_gain ~ 1 + U(-s, s);
    val_gain ~ 1 + U(-v, v). Applied with three lookup tables (``functional.hsv_jitter``).
    Unlike YOLO, hue is *shifted* rather than multiplied: a multiplicative hue gain moves
    blues far more than reds, a shift rotates every hue by the same angle.
    """

    def __init__(self, h: float = 0.015, s: float = 0.7, v: float = 0.4, p: float = 1.0):
        super().__init__(p)
        if not (0 <= h <= 0.5 and 0 <= s <= 1 and 0 <= v <= 1):
            raise ConfigError(f"HSVJitter: need 0<=h<=0.5, 0<=s<=1, 0<=v<=1, got {h}, {s}, {v}")
        self.h, self.s, self.v = float(h), float(s), float(v)

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        dh, ds, dv = rng.uniform(-1.0, 1.0, 3) * np.array([self.h, self.s, self.v])
        return {"hue_shift": float(dh), "sat_gain": 1.0 + float(ds), "val_gain": 1.0 + float(dv)}

    def apply(self, sample: Sample, params: Params) -> Sample:
        image = F.hsv_jitter(
            sample.image, params["hue_shift"], params["sat_gain"], params["val_gain"]
        )
        return sample.replace(image=image)


TRANSFORMS.register("hsv_jitter", HSVJitter)
