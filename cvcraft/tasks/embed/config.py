"""Metric learning (embedding) keys."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError

# each loss's usual margin (triplet/contrastive on L2-normalized embeddings)
DEFAULT_MARGINS = {"triplet": 0.3, "contrastive": 1.0, "arcface": 0.5, "cosface": 0.35}


@dataclass
class EmbedConfig(TrainConfig):
    """An embedding per image such that one identity's images lie close together; trained
    on P x K batches, evaluated as leave-one-out retrieval on the val split (each val image
    queries all the others): rank-1/5/10, mAP, MRR. Classes of the data are the identities."""

    loss: str = _opt(
        "triplet",
        "triplet (batch-hard) | contrastive | arcface | cosface",
        ("triplet", "contrastive", "arcface", "cosface"),
    )
    margin: float = _opt(-1.0, "loss margin (-1 = the loss's usual one: 0.3/1.0/0.5/0.35)")
    scale: float = _opt(30.0, "ArcFace/CosFace logit scale s")
    soft: bool = _opt(False, "triplet: soft margin log(1 + exp(d_ap - d_an))")
    dim: int = _opt(128, "embedding size")
    p: int = _opt(8, "identities per training batch (P of P x K; the batch is P * K)")
    k: int = _opt(4, "images per identity in a training batch (K)")
    distance: str = _opt("cosine", "retrieval distance", ("cosine", "euclidean"))
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
    cutout: float = _opt(0.0, "Cutout probability")
    policy: str = _opt("", "augmentation policy: randaugment | autoaugment | trivialaugment | ''")
    erasing: float = _opt(0.0, "random erasing probability (common in re-ID)")
    in_chans: int = _opt(3, "input channels of the model")
    model_kwargs: dict = _opt({}, "extra backbone options")

    def check(self) -> None:
        for key in ("hflip", "vflip", "cutout", "erasing"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}={getattr(self, key)} must be in [0, 1]")
        if self.p < 2 or self.k < 2:
            raise ConfigError(f"p={self.p}, k={self.k}: P x K batches need p >= 2 and k >= 2")
        if self.dim <= 0 or self.scale <= 0:
            raise ConfigError(f"dim={self.dim} and scale={self.scale} must be > 0")
        if self.crop not in ("auto", "rrc", "pad", "none"):
            raise ConfigError(f"crop={self.crop!r} must be one of auto, rrc, pad, none")

    def loss_margin(self) -> float:
        return DEFAULT_MARGINS[self.loss] if self.margin < 0 else self.margin
