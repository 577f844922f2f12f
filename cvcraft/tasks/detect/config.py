"""Object detection keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class DetectConfig(TrainConfig):
    """Object detection keys (ultralytics-style names where they exist; flips are named as in
    every other task, ultralytics' spellings still work with a note)."""

    # keys only training reads: `val`/`predict --help` leave them out
    train_only_keys: ClassVar[tuple[str, ...]] = (
        "close_mosaic",
        "mosaic",
        "mixup",
        "degrees",
        "translate",
        "scale",
        "shear",
        "perspective",
        "hflip",
        "vflip",
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "multi_scale",
        "backbone_weights",
    )

    renamed: ClassVar[dict[str, str]] = {"fliplr": "hflip", "flipud": "vflip"}

    data: str = _opt("shapes", "dataset: 'shapes[:N]', COCO json, YOLO data yaml or VOC folder")
    model: str = _opt("yolo_n", "detector name from `cvcraft models`")
    imgsz: int = _opt(640, "square (letterboxed) input size")
    batch: int = _opt(16, "batch size per optimizer step (before accumulation)")
    model_kwargs: dict = _opt({}, "extra model options")
    in_chans: int = _opt(3, "input channels of the model (1: trained and run on grey images)")
    optimizer: str = _opt("adamw", "optimizer", "cvcraft.engine.optim:OPTIMIZERS")
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
    nms: str = _opt(
        "greedy",
        "val/predict NMS: greedy | soft (Gaussian) | soft_linear | diou | matrix | fast | weighted",
    )
    max_det: int = _opt(300, "maximum detections per image")
    tta: bool = _opt(False, "test-time augmentation (scales 1/0.83/0.67, a flip) in val/predict")
    gt: str = _opt(
        "",
        "predict: a COCO JSON whose image ids (by file name) and category ids (by class "
        "name) predictions.json uses, so `cvcraft eval detect` scores it against that file",
    )
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
    hflip: float = _opt(0.5, "horizontal flip probability (ultralytics: fliplr)")
    vflip: float = _opt(0.0, "vertical flip probability (ultralytics: flipud)")
    hsv_h: float = _opt(0.015, "HSV hue shift (fraction of the colour wheel)")
    hsv_s: float = _opt(0.7, "HSV saturation gain")
    hsv_v: float = _opt(0.4, "HSV value gain")
    multi_scale: bool = _opt(False, "train each batch at a random size in [0.5, 1.5] x imgsz")
    backbone_weights: str = _opt(
        "", "a cvcraft classification checkpoint to initialise the detector's backbone"
    )
    # training choices of the YOLO family
    assigner: str = _opt("", "anchor-free YOLO label assignment: tal (default) | simota | atss")
    label_smoothing: float = _opt(
        0.0, "YOLO class targets 1 - eps/2 and eps/2 on the positives (YOLOv5's smooth BCE)"
    )
    autoanchor: bool = _opt(
        False,
        "anchor-based YOLO: at the start of training, k-means anchors if the best possible "
        "recall of the model's anchors on the train boxes is below 0.98",
    )

    def check(self) -> None:
        unit = ("mosaic", "mixup", "hflip", "vflip", "conf", "val_conf", "iou", "hsv_s", "hsv_v")
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
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans={self.in_chans}: detection takes 1 (grey) or 3 (RGB)")
        from cvcraft.ops.nms import POSTPROCESS_NMS

        if self.nms not in POSTPROCESS_NMS:
            raise ConfigError(f"nms={self.nms!r}: use one of {', '.join(POSTPROCESS_NMS)}")
        if self.assigner not in ("", "tal", "simota", "atss"):
            raise ConfigError(f"assigner={self.assigner!r}: use tal, simota or atss")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.max_det < 1:
            raise ConfigError(f"max_det={self.max_det} must be >= 1")
        if self.gt and not Path(self.gt).is_file():
            raise ConfigError(f"gt={self.gt}: no such file (a COCO instances JSON)")
        if self.backbone_weights and not Path(self.backbone_weights).is_file():
            raise ConfigError(f"backbone_weights={self.backbone_weights}: no such file")
        props = (self.model_kwargs or {}).get("proposals")
        if isinstance(props, str) and props.endswith(".json"):
            # The file's boxes are in the pixels of the images as stored, but the task feeds
            # the model letterboxed, augmented views; the boxes would not follow them.
            raise ConfigError(
                f"model_kwargs proposals={props}: proposals from a JSON file work through the "
                "Python API (FastRCNN.forward(images, proposals=model.proposal_file"
                ".for_images(names)), not through the detect task, whose images are resized "
                "and augmented; use proposals: selective_search (the default)"
            )
        if self.augment:  # fail now, not in a worker: build the spec once
            from cvcraft.transforms.pipelines import sized_spec, split_pipeline

            split_pipeline(sized_spec(self.augment, self.imgsz), "augment")
