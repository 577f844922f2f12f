"""Typed run configuration: a YAML file plus ``key=value`` overrides, validated before work.

Each task has a dataclass whose fields are the keys the CLI accepts; a field's metadata
carries its help text and, where it has one, the set of allowed values. Values given as
strings (from the command line) are parsed with YAML's scalar rules (``true``, ``0.1``,
``[1, 2]``) and then coerced to the field's type, so ``lr=1e-3`` and ``lr: 0.001`` in a file
mean the same. An unknown key is an error with a did-you-mean, raised before any data is
read, and the resolved configuration is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cvcraft.errors import ConfigError
from cvcraft.registry import did_you_mean


def _opt(default: Any, help: str, choices: tuple[Any, ...] | None = None, **kw: Any) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    """Keys shared by every task's train/val/predict commands."""

    data: str = _opt("shapes", "dataset: 'shapes[:N]', a folder, CIFAR/IDX folder or CSV file")
    model: str = _opt("resnet20", "model name from `cvcraft models`")
    epochs: int = _opt(10, "number of training epochs")
    batch: int = _opt(64, "batch size per optimizer step (before accumulation)")
    imgsz: int = _opt(32, "square input size fed to the model")
    workers: int = _opt(2, "data-loading worker processes (0 = in the main process)")
    seed: int = _opt(0, "seed of every random choice (data order, augmentation, init)")
    deterministic: bool = _opt(False, "use deterministic algorithms (bit-identical reruns)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    optimizer: str = _opt(
        "sgd", "optimizer", ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
    )
    lr: float = _opt(0.05, "base learning rate (the peak after warmup)")
    momentum: float = _opt(0.9, "SGD/RMSProp momentum, Adam beta1")
    nesterov: bool = _opt(True, "Nesterov momentum for SGD")
    weight_decay: float = _opt(5e-4, "weight decay (not applied to biases and norm layers)")
    schedule: str = _opt(
        "cosine",
        "LR schedule, stepped per iteration",
        ("constant", "step", "multistep", "linear", "cosine", "poly", "cyclic", "one_cycle"),
    )
    warmup_epochs: float = _opt(1.0, "linear warmup length in epochs (fractions allowed)")
    min_lr_ratio: float = _opt(0.0, "final LR as a fraction of lr (cosine/linear)")
    step_size: float = _opt(30.0, "step schedule: epochs between decays")
    milestones: list = _opt([], "multistep schedule: epochs at which LR decays")
    gamma: float = _opt(0.1, "step/multistep decay factor")
    power: float = _opt(1.0, "poly schedule power")
    grad_clip: float = _opt(0.0, "clip the gradient norm to this value (0 = off)")
    grad_clip_value: float = _opt(0.0, "clip each gradient element to +-value (0 = off)")
    accumulate: int = _opt(1, "gradient accumulation steps per optimizer step")
    amp: bool = _opt(False, "mixed precision: bf16 autocast on CPU, fp16 on CUDA")
    channels_last: bool = _opt(False, "use channels_last memory format")
    ema: bool = _opt(False, "keep an exponential moving average of the weights")
    ema_decay: float = _opt(0.999, "EMA decay")
    ema_tau: float = _opt(200.0, "EMA warmup: decay ramps as 1 - exp(-updates / tau)")
    patience: int = _opt(0, "early stopping: epochs without improvement (0 = off)")
    val_interval: int = _opt(
        1, "evaluate every N epochs and after the last; best.pt/patience see evaluated epochs"
    )
    val_raw: bool = _opt(
        True, "with ema=true also evaluate the raw weights (raw_* columns); false halves eval"
    )
    monitor: str = _opt("", "metric that picks best.pt and drives early stopping")
    l1: float = _opt(0.0, "L1 penalty coefficient on weights (explicit loss term)")
    l2: float = _opt(0.0, "L2 penalty coefficient on weights (explicit loss term)")
    init: str = _opt("default", "weight initialisation", ("default", "kaiming", "xavier"))
    weights: str = _opt("", "initial weights (.pt) for fine-tuning or evaluation")
    freeze: list = _opt([], "parameter-name prefixes to freeze, e.g. [conv1, layer1]")
    lr_mults: dict = _opt({}, "per-prefix LR multipliers, e.g. {fc: 10}")
    resume: bool = _opt(False, "resume the run in `out` from its last valid checkpoint")
    out: str = _opt("", "run folder (default runs/<task>/<name>, numbered if it exists)")
    name: str = _opt("train", "run name under runs/<task>/")
    classes: list = _opt([], "class names in label order (default: found in the data)")
    val_fraction: float = _opt(0.1, "validation share when the dataset has no val split")
    fraction: float = _opt(1.0, "use this fraction of the training set (quick runs)")
    cache: bool = _opt(False, "decode every image once into a memory-mapped cache")
    cache_dir: str = _opt("", "where the decoded-image cache lives (default ~/.cache/cvcraft)")
    skip_bad: bool = _opt(False, "skip (and count) unreadable images instead of stopping")
    plots: bool = _opt(True, "write plots/*.png")
    progress: bool = _opt(True, "show progress bars")
    source: str = _opt("", "predict: an image file or a folder of images")
    augment: list = _opt(
        [], "train augmentation pipeline spec (list of {name: ..., args}); replaces the default"
    )
    devices: int = _opt(1, "processes for DDP training (>1 launches torchrun on this machine)")
    sync_bn: bool = _opt(False, "DDP: convert BatchNorm layers to SyncBatchNorm")

    def check(self) -> None:
        """Task-specific validation (subclasses extend); raise ConfigError naming the key."""


@dataclass
class ClassifyConfig(TrainConfig):
    """Image classification keys."""

    normalize: str = _opt(
        "zscore",
        "input normalization; statistics from the training set",
        ("zscore", "minmax", "robust", "imagenet", "none"),
    )
    label_smoothing: float = _opt(0.0, "label smoothing epsilon")
    loss: str = _opt("ce", "loss name", ("ce", "focal"))
    topk: int = _opt(5, "k of the top-k accuracy")
    crop: str = _opt("auto", "train crop: rrc | pad | none | auto (pad if imgsz <= 64)")
    scale_min: float = _opt(0.08, "random-resized-crop minimum area fraction")
    hflip: float = _opt(0.5, "horizontal flip probability")
    vflip: float = _opt(0.0, "vertical flip probability")
    degrees: float = _opt(0.0, "random rotation range (+-degrees)")
    translate: float = _opt(0.0, "random translation (fraction of size)")
    hsv_h: float = _opt(0.0, "HSV hue gain")
    hsv_s: float = _opt(0.0, "HSV saturation gain")
    hsv_v: float = _opt(0.0, "HSV value gain")
    cutout: float = _opt(0.0, "Cutout probability (one hole of half the image side)")
    policy: str = _opt(
        "",
        "augmentation policy: randaugment | autoaugment[:imagenet|cifar10|svhn] | "
        "trivialaugment | augmix ('' = none)",
    )
    erasing: float = _opt(0.0, "random erasing probability (Zhong et al. 2020)")
    in_chans: int = _opt(3, "input channels of the model")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {drop_rate: 0.2, hidden: [256]}")
    mixup: float = _opt(0.0, "Mixup alpha (Beta(alpha, alpha)); 0 = off")
    cutmix: float = _opt(0.0, "CutMix alpha; 0 = off")
    mix_prob: float = _opt(1.0, "probability a batch is mixed (when mixup or cutmix is on)")
    mix_switch: float = _opt(0.5, "with both on: probability of CutMix instead of Mixup")
    sampler: str = _opt(
        "random",
        "training sampler for imbalanced data (over/undersample: to the largest/smallest class)",
        ("random", "weighted", "sqrt", "balanced", "oversample", "undersample"),
    )
    class_weights: str = _opt(
        "none", "per-class loss weights from label counts", ("none", "inverse", "sqrt")
    )


# ----------------------------------------------------------------------------- detection
@dataclass
class DetectConfig(TrainConfig):
    """Object detection keys (ultralytics-style names where they exist)."""

    data: str = _opt("shapes", "dataset: 'shapes[:N]', COCO json, YOLO data yaml or VOC folder")
    model: str = _opt("yolo_n", "detector name from `cvcraft models`")
    imgsz: int = _opt(640, "square (letterboxed) input size")
    batch: int = _opt(16, "batch size per optimizer step (before accumulation)")
    model_kwargs: dict = _opt({}, "extra model options")
    optimizer: str = _opt(
        "adamw", "optimizer", ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
    )
    lr: float = _opt(0.002, "base learning rate (the peak after warmup)")
    warmup_epochs: float = _opt(3.0, "linear warmup length in epochs (fractions allowed)")
    min_lr_ratio: float = _opt(0.01, "final LR as a fraction of lr (cosine/linear)")
    ema: bool = _opt(True, "keep an exponential moving average of the weights")
    ema_decay: float = _opt(0.9999, "EMA decay")
    ema_tau: float = _opt(2000.0, "EMA warmup: decay ramps as 1 - exp(-updates / tau)")
    grad_clip: float = _opt(10.0, "clip the gradient norm to this value (0 = off)")
    # inference
    conf: float = _opt(0.25, "predict: minimum score of a reported detection")
    val_conf: float = _opt(0.001, "evaluation: score threshold before NMS (mAP wants ~all)")
    iou: float = _opt(0.7, "NMS IoU threshold")
    max_det: int = _opt(300, "maximum detections per image")
    tta: bool = _opt(False, "test-time augmentation (scales 1/0.83/0.67, a flip) in val/predict")
    # augmentation (ultralytics names and meanings)
    mosaic: float = _opt(1.0, "Mosaic (4 images in one) probability")
    close_mosaic: int = _opt(10, "switch Mosaic off for the last N epochs")
    mixup: float = _opt(0.0, "MixUp probability")
    degrees: float = _opt(0.0, "random rotation range (+-degrees)")
    translate: float = _opt(0.1, "random translation (fraction of size)")
    scale: float = _opt(0.5, "random scale gain: U(1 - scale, 1 + scale)")
    shear: float = _opt(0.0, "random shear range (+-degrees)")
    perspective: float = _opt(
        0.0, "random perspective: homography last-row terms ~ U(-x, x), 1/px (0.0005 is strong)"
    )
    fliplr: float = _opt(0.5, "horizontal flip probability")
    flipud: float = _opt(0.0, "vertical flip probability")
    hsv_h: float = _opt(0.015, "HSV hue shift (fraction of the colour wheel)")
    hsv_s: float = _opt(0.7, "HSV saturation gain")
    hsv_v: float = _opt(0.4, "HSV value gain")
    multi_scale: bool = _opt(False, "train each batch at a random size in [0.5, 1.5] x imgsz")
    backbone_weights: str = _opt(
        "", "a cvcraft classification checkpoint to initialise the detector's backbone"
    )

    def check(self) -> None:
        unit = ("mosaic", "mixup", "fliplr", "flipud", "conf", "val_conf", "iou", "hsv_s", "hsv_v")
        for k in unit:
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if not 0.0 <= self.hsv_h <= 0.5:
            raise ConfigError(f"hsv_h={self.hsv_h} must be in [0, 0.5]")
        if not 0.0 <= self.translate <= 1.0:
            raise ConfigError(f"translate={self.translate} must be in [0, 1]")
        if not 0.0 <= self.scale < 1.0:
            raise ConfigError(f"scale={self.scale} must be in [0, 1) (gain U(1-scale, 1+scale))")
        for k in ("degrees", "shear", "close_mosaic", "perspective"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k}={getattr(self, k)} must be >= 0")
        if self.max_det < 1:
            raise ConfigError(f"max_det={self.max_det} must be >= 1")
        if self.backbone_weights and not Path(self.backbone_weights).is_file():
            raise ConfigError(f"backbone_weights={self.backbone_weights}: no such file")
        if self.augment:  # fail now, not in a worker: build the spec once
            from cvcraft.data.detection_dataset import sized_spec
            from cvcraft.transforms.mosaic import split_pipeline

            split_pipeline(sized_spec(self.augment, self.imgsz), "augment")


# ----------------------------------------------------------------------------- segmentation
@dataclass
class SegmentConfig(TrainConfig):
    """Semantic segmentation keys."""

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
    loss: str = _opt("ce", "loss", ("ce", "focal", "dice", "dice_ce", "lovasz"))
    focal_gamma: float = _opt(2.0, "focal loss gamma")
    aux_weight: float = _opt(0.4, "weight of each auxiliary / deep-supervision output's loss")
    ignore_index: int = _opt(255, "mask value ignored by losses and metrics")
    class_weights: list = _opt([], "per-class loss weights, one per class (empty = equal)")
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

    def check(self) -> None:
        if self.augment:  # fail now, not in a worker: build the spec once
            from cvcraft.data.detection_dataset import sized_spec
            from cvcraft.transforms.mosaic import split_pipeline

            split_pipeline(sized_spec(self.augment, self.imgsz), "augment")
        for k in ("hflip", "vflip", "mosaic", "copy_paste", "alpha"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"overlap={self.overlap} must be in [0, 1)")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ConfigError(
                f"scale_min={self.scale_min}, scale_max={self.scale_max}: need 0 < min <= max"
            )
        if self.size_divisor < 1 or self.resize < 0 or self.aux_weight < 0:
            raise ConfigError("size_divisor must be >= 1, resize >= 0 and aux_weight >= 0")
        if not 0 <= self.ignore_index <= 255:
            raise ConfigError(f"ignore_index={self.ignore_index} must be in [0, 255] (uint8 masks)")
        if any(not isinstance(w, (int, float)) or w < 0 for w in self.class_weights):
            raise ConfigError(f"class_weights={self.class_weights} must be numbers >= 0")
        if not (0 <= self.hsv_h <= 0.5 and 0 <= self.hsv_s <= 1 and 0 <= self.hsv_v <= 1):
            raise ConfigError("need 0 <= hsv_h <= 0.5, 0 <= hsv_s <= 1, 0 <= hsv_v <= 1")


TASK_CONFIGS: dict[str, type[TrainConfig]] = {
    "classify": ClassifyConfig,
    "detect": DetectConfig,
    "segment": SegmentConfig,
}


def _resolve_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _coerce(key: str, value: Any, typ: Any) -> Any:
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}={value!r}: not a valid value ({e})") from None
    origin = typing.get_origin(typ) or typ
    if isinstance(typ, types.UnionType):
        origin = str
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError("expected true or false")
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if origin is str:
            return "" if value is None else str(value)
        if origin is list:
            if value is None:
                return []
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise ValueError("expected a mapping like {a: 1}")
            return dict(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}={value!r}: {e} ({getattr(origin, '__name__', origin)})") from None
    return value


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": "0.1", "epochs": "3"}``."""
    out: dict[str, str] = {}
    for a in args:
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not key=value (example: epochs=10)")
        k, v = a.split("=", 1)
        out[k.strip()] = v
    return out


def build_config(
    task: str,
    values: dict[str, Any] | None = None,
    *,
    yaml_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < ``defaults`` (e.g. the demo preset) < YAML file < ``values``; validated."""
    if task not in TASK_CONFIGS:
        raise ConfigError(f"unknown task {task!r}.{did_you_mean(task, TASK_CONFIGS)}")
    cls = TASK_CONFIGS[task]
    merged: dict[str, Any] = dict(defaults or {})
    if yaml_file:
        p = Path(yaml_file)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of key: value")
        loaded.pop("task", None)
        merged.update(loaded)
    merged.update(values or {})
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in merged.items():
        if k not in known:
            raise ConfigError(
                f"unknown key {k!r} for task {task}.{did_you_mean(k, known)} "
                f"Run `cvcraft train {task} --help` for the list."
            )
        kwargs[k] = _coerce(k, v, _resolve_type(cls, known[k]))
    cfg = cls(**kwargs)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Range and choice checks; raises ConfigError naming the key."""
    for f in fields(cfg):
        choices = f.metadata.get("choices")
        val = getattr(cfg, f.name)
        if choices and val not in choices:
            raise ConfigError(
                f"{f.name}={val!r} is not one of {', '.join(map(str, choices))}."
                f"{did_you_mean(str(val), [str(c) for c in choices])}"
            )
    positive = ["epochs", "batch", "imgsz", "accumulate"]
    for k in positive:
        if getattr(cfg, k) <= 0:
            raise ConfigError(f"{k}={getattr(cfg, k)} must be > 0")
    nonneg = ["workers", "lr", "weight_decay", "warmup_epochs", "grad_clip", "grad_clip_value"]
    for k in nonneg + ["patience", "l1", "l2"]:
        if getattr(cfg, k) < 0:
            raise ConfigError(f"{k}={getattr(cfg, k)} must be >= 0")
    if not 0.0 < cfg.fraction <= 1.0:
        raise ConfigError(f"fraction={cfg.fraction} must be in (0, 1]")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction={cfg.val_fraction} must be in (0, 1)")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"ema_decay={cfg.ema_decay} must be in [0, 1)")
    if isinstance(cfg, ClassifyConfig):
        for k in ("label_smoothing", "hflip", "vflip", "cutout", "erasing"):
            if not 0.0 <= getattr(cfg, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(cfg, k)} must be in [0, 1]")
        if cfg.crop not in ("auto", "rrc", "pad", "none"):
            raise ConfigError(f"crop={cfg.crop!r} must be one of auto, rrc, pad, none")
        for k in ("mixup", "cutmix"):
            if getattr(cfg, k) < 0:
                raise ConfigError(f"{k}={getattr(cfg, k)} must be >= 0 (0 = off)")
        for k in ("mix_prob", "mix_switch"):
            if not 0.0 <= getattr(cfg, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(cfg, k)} must be in [0, 1]")
    if cfg.devices < 1:
        raise ConfigError(f"devices={cfg.devices} must be >= 1")
    cfg.check()


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path, task: str) -> None:
    data = {"task": task, **config_to_dict(cfg)}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def config_help(task: str) -> str:
    """One line per key: name, type, default and help, for ``--help``."""
    cls = TASK_CONFIGS[task]
    hints = typing.get_type_hints(cls)
    lines = []
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        typ = getattr(hints[f.name], "__name__", str(hints[f.name]))
        choices = f.metadata.get("choices")
        extra = f" [{'|'.join(map(str, choices))}]" if choices else ""
        lines.append(f"  {f.name:<16} {typ:<6} default={default!r:<12} {f.metadata['help']}{extra}")
    return "\n".join(lines)
