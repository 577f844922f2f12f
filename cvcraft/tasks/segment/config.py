"""Semantic segmentation keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cvcraft.engine.config import TrainConfig, _opt, check_class_weights
from cvcraft.errors import ConfigError


@dataclass
class SegmentConfig(TrainConfig):
    """Semantic segmentation keys."""

    # keys only training reads: `val`/`predict --help` leave them out
    train_only_keys: ClassVar[tuple[str, ...]] = (
        "loss",
        "focal_gamma",
        "aux_weight",
        "class_weights",
        "scale_min",
        "scale_max",
        "degrees",
        "hflip",
        "vflip",
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "mosaic",
        "copy_paste",
        "alpha",
        "teacher",
        "kd_t",
        "kd_alpha",
    )

    data: str = _opt(
        "shapes", "dataset: 'shapes[:N]', mask YAML, images/+masks/ folder, COCO json, YOLO-seg"
    )
    model: str = _opt("unet", "segmentation model name from `cvcraft models`")
    imgsz: int = _opt(256, "square training crop; also the sliding-window size at inference")
    batch: int = _opt(8, "batch size per optimizer step (before accumulation)")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {base: 16}")
    in_chans: int = _opt(3, "input channels of the model")
    normalize: str = _opt(
        "zscore",
        "input normalization; statistics from the training set",
        ("zscore", "minmax", "robust", "imagenet", "none"),
    )
    loss: str = _opt("ce", "loss", "cvcraft.losses.segmentation:SEGMENTATION_LOSSES")
    focal_gamma: float = _opt(2.0, "focal loss gamma")
    aux_weight: float = _opt(0.4, "weight of each auxiliary / deep-supervision output's loss")
    ignore_index: int = _opt(255, "mask value ignored by losses and metrics")
    class_weights: list = _opt(
        [], "per-class loss weights: inverse | sqrt (from mask pixel counts) or one per class"
    )
    resize: int = _opt(0, "resize the longer image side to this first (0 = native resolution)")
    overlap: float = _opt(0.25, "sliding-window overlap fraction for images larger than imgsz")
    size_divisor: int = _opt(32, "inference pads inputs to a multiple of this (model stride)")
    scale_min: float = _opt(0.5, "random scale range lower bound (train)")
    scale_max: float = _opt(1.5, "random scale range upper bound (train)")
    degrees: float = _opt(0.0, "random rotation range (+-degrees)")
    hflip: float = _opt(0.5, "horizontal flip probability")
    vflip: float = _opt(0.0, "vertical flip probability")
    hsv_h: float = _opt(0.015, "HSV hue gain")
    hsv_s: float = _opt(0.5, "HSV saturation gain")
    hsv_v: float = _opt(0.3, "HSV value gain")
    mosaic: float = _opt(0.0, "Mosaic (4 images) probability per training item")
    copy_paste: float = _opt(
        0.0, "Copy-Paste probability: paste class regions of another training image"
    )
    alpha: float = _opt(0.5, "predict: colour-overlay opacity")
    crf: bool = _opt(False, "val/predict: refine the probabilities with a dense CRF (ops/crf.py)")
    crf_iterations: int = _opt(5, "dense CRF mean-field iterations (with crf=true)")
    teacher: str = _opt("", "a segment checkpoint to distil from (same classes): pixel-wise KD")
    kd_t: float = _opt(4.0, "distillation temperature T (the soft term is scaled by T^2)")
    kd_alpha: float = _opt(0.5, "weight of the distillation term; the label term gets 1 - alpha")

    def check(self) -> None:
        if self.augment:  # fail now, not in a worker: build the spec once
            from cvcraft.transforms.pipelines import sized_spec, split_pipeline

            split_pipeline(sized_spec(self.augment, self.imgsz), "augment")
        if self.teacher and not Path(self.teacher).is_file():
            raise ConfigError(f"teacher={self.teacher}: no such file")
        if self.kd_t <= 0:
            raise ConfigError(f"kd_t={self.kd_t} must be > 0")
        for k in ("hflip", "vflip", "mosaic", "copy_paste", "alpha", "kd_alpha"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"overlap={self.overlap} must be in [0, 1)")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ConfigError(
                f"scale_min={self.scale_min}, scale_max={self.scale_max}: need 0 < min <= max"
            )
        if self.crf_iterations < 0:
            raise ConfigError(f"crf_iterations={self.crf_iterations} must be >= 0")
        if self.size_divisor < 1 or self.resize < 0 or self.aux_weight < 0:
            raise ConfigError("size_divisor must be >= 1, resize >= 0 and aux_weight >= 0")
        if not 0 <= self.ignore_index <= 255:
            raise ConfigError(f"ignore_index={self.ignore_index} must be in [0, 255] (uint8 masks)")
        check_class_weights(self.class_weights)
        if not (0 <= self.hsv_h <= 0.5 and 0 <= self.hsv_s <= 1 and 0 <= self.hsv_v <= 1):
            raise ConfigError("need 0 <= hsv_h <= 0.5, 0 <= hsv_s <= 1, 0 <= hsv_v <= 1")
