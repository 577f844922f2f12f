"""What tasks that feed whole images to a classifier-style backbone share (multilabel,
embed): the input keys (normalization, classify's augmentation keys, channels, model
options) and the training-set normalization statistics.

The keys mean what they mean in classify, whose train/val pipelines these tasks reuse
(``tasks.classify.task.build_transforms``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvcraft.data.stats_cache import cached_stats
from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError
from cvcraft.transforms.normalize import IMAGENET_STATS, STATS_SAMPLES


@dataclass
class ImageInputConfig(TrainConfig):
    """Input normalization, classify's augmentation keys, input channels, model options."""

    normalize: str = _opt(
        "zscore",
        "input normalization; statistics from the training set",
        ("zscore", "minmax", "robust", "imagenet", "none"),
    )
    crop: str = _opt("auto", "train crop: rrc | pad | none | auto (pad if imgsz <= 64)")
    scale_min: float = _opt(0.5, "random-resized-crop minimum area fraction")
    hflip: float = _opt(0.5, "horizontal flip probability")
    vflip: float = _opt(0.0, "vertical flip probability")
    degrees: float = _opt(0.0, "random rotation range (+-degrees)")
    translate: float = _opt(0.0, "random translation (fraction of size)")
    hsv_h: float = _opt(0.0, "HSV hue gain")
    hsv_s: float = _opt(0.0, "HSV saturation gain")
    hsv_v: float = _opt(0.0, "HSV value gain")
    cutout: float = _opt(0.0, "Cutout probability (one hole of half the image side)")
    policy: str = _opt("", "augmentation policy: randaugment | autoaugment | trivialaugment | ''")
    erasing: float = _opt(0.0, "random erasing probability")
    in_chans: int = _opt(3, "input channels of the model")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {drop_rate: 0.2}")

    def check(self) -> None:
        for k in ("hflip", "vflip", "cutout", "erasing"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if self.crop not in ("auto", "rrc", "pad", "none"):
            raise ConfigError(f"crop={self.crop!r} must be one of auto, rrc, pad, none")


def train_stats(
    cfg: ImageInputConfig, images: Any, out: Path, resume: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The normalization statistics of ``cfg.normalize``: None for ``none``, the resumed
    run's, ImageNet's, or computed over ``images`` (``len``/``load_image``/``describe``;
    cached on disk); written to ``out/norm_stats.json``."""
    if cfg.normalize == "none":
        return None
    if resume is not None and resume.get("norm_stats") is not None:
        return resume["norm_stats"]
    if cfg.normalize == "imagenet":
        stats = dict(IMAGENET_STATS)
    else:
        where = Path(cfg.cache_dir) / "stats" if cfg.cache_dir else None
        stats = cached_stats(images, where, max_samples=STATS_SAMPLES, seed=[cfg.seed, 11])
        stats.pop("cached", None)
    (Path(out) / "norm_stats.json").write_text(json.dumps(stats, indent=1))
    return stats
