"""Multi-label classification keys."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class MultilabelConfig(TrainConfig):
    """Several labels per image: a sigmoid per class, BCE / focal BCE / ASL, per-class
    thresholds tuned for F1 on validation. The augmentation keys mean what they mean in
    classify (the train pipeline is classify's; geometry leaves the multi-hot target alone)."""

    data: str = _opt(
        "shapes",
        "'shapes[:N]', a .csv of path,a|b rows, a folder with labels.csv, or a detection "
        "dataset (COCO .json / YOLO / VOC) whose box classes become labels",
    )
    imgsz: int = _opt(48, "square input size fed to the model")
    normalize: str = _opt(
        "zscore",
        "input normalization; statistics from the training set",
        ("zscore", "minmax", "robust", "imagenet", "none"),
    )
    loss: str = _opt(
        "bce", "loss: bce | focal (focal BCE) | asl (asymmetric)", ("bce", "focal", "asl")
    )
    focal_gamma: float = _opt(2.0, "focal BCE gamma")
    focal_alpha: float = _opt(-1.0, "focal BCE alpha for positives (-1 = no alpha weighting)")
    gamma_pos: float = _opt(0.0, "ASL focusing on positives")
    gamma_neg: float = _opt(4.0, "ASL focusing on negatives")
    clip: float = _opt(0.05, "ASL probability margin m (negatives with p < m cost nothing)")
    pos_weight: str = _opt(
        "none",
        "per-class weight of positives from train counts: auto = #neg/#pos, sqrt = its root "
        "(capped at 100)",
        ("none", "auto", "sqrt"),
    )
    threshold: float = _opt(0.5, "probability threshold of the untuned metrics")
    tune_thresholds: bool = _opt(True, "tune per-class F1 thresholds on val (kept for predict)")
    folds: int = _opt(0, "k-fold: train on the other folds of train + val (0 = off)")
    fold: int = _opt(0, "k-fold: which fold is validation (0 .. folds - 1)")
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
        for k in ("hflip", "vflip", "cutout", "erasing", "threshold"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if self.crop not in ("auto", "rrc", "pad", "none"):
            raise ConfigError(f"crop={self.crop!r} must be one of auto, rrc, pad, none")
        if self.folds and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise ConfigError(f"folds={self.folds}, fold={self.fold}: need folds >= 2 and "
                              "0 <= fold < folds")  # fmt: skip
        if not 0.0 <= self.clip < 1.0:
            raise ConfigError(f"clip={self.clip} must be in [0, 1)")
        if min(self.focal_gamma, self.gamma_pos, self.gamma_neg) < 0:
            raise ConfigError("focal_gamma, gamma_pos and gamma_neg must be >= 0")
        if self.focal_alpha != -1.0 and not 0.0 <= self.focal_alpha <= 1.0:
            raise ConfigError(f"focal_alpha={self.focal_alpha} must be in [0, 1] (or -1 = off)")
