"""Human-pose keys (top-down and bottom-up models)."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class PoseConfig(TrainConfig):
    """Heatmap pose estimation keys: top-down (one person per crop, SimpleBaseline) or
    bottom-up (whole images, OpenPose's part affinity fields)."""

    data: str = _opt("shapes", "pose data: 'shapes[:N]' (stick figures), COCO keypoints JSON, "
                     "YOLO-pose folder")  # fmt: skip
    model: str = _opt("simple_baseline", "pose model name from `cvcraft models`")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {backbone: resnet18, "
                              "deconv_channels: 64}")  # fmt: skip
    imgsz: int = _opt(64, "square person crop (top-down) or whole image (bottom-up) fed to "
                       "the model (a multiple of 32)")  # fmt: skip
    batch: int = _opt(32, "batch size per optimizer step (before accumulation)")
    epochs: int = _opt(10, "number of training epochs")
    optimizer: str = _opt(
        "adam", "optimizer", ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
    )
    lr: float = _opt(0.002, "base learning rate (the peak after warmup)")
    weight_decay: float = _opt(0.0, "weight decay")
    warmup_epochs: float = _opt(0.3, "linear warmup length in epochs")
    sigma: float = _opt(2.0, "Gaussian sigma of the target heatmaps, in heatmap cells")
    padding: float = _opt(1.25, "person crop = the box's longer side times this")
    hflip: float = _opt(0.5, "horizontal flip probability (left/right keypoints swap)")
    degrees: float = _opt(30.0, "random rotation range (+-degrees)")
    scale: float = _opt(0.25, "random scale range 1 +- scale")
    oks_sigmas: list = _opt([], "per-keypoint OKS sigmas (default: COCO's 17)")
    decode: str = _opt("quarter", "heatmap decoding: argmax + quarter offset, or DARK",
                       ("quarter", "dark"))  # fmt: skip
    kpt_threshold: float = _opt(0.2, "predict: draw keypoints whose heatmap peak exceeds this")
    people: int = _opt(1, "stick figures per 'shapes' image: 1, or up to this many (bottom-up)")
    paf_width: float = _opt(1.0, "bottom-up: half-width of a limb's affinity field, in cells")
    peak_threshold: float = _opt(0.1, "bottom-up: heatmap peaks above this are candidates")

    def check(self) -> None:
        if self.imgsz % 32:
            raise ConfigError(f"imgsz={self.imgsz} must be a multiple of 32 (backbone stride)")
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"hflip={self.hflip} must be in [0, 1]")
        if self.people < 1 or self.paf_width <= 0 or not 0 < self.peak_threshold < 1:
            raise ConfigError("need people >= 1, paf_width > 0 and 0 < peak_threshold < 1")
        if self.sigma <= 0 or self.padding < 1 or not 0 <= self.scale < 1 or self.degrees < 0:
            raise ConfigError("need sigma > 0, padding >= 1, 0 <= scale < 1 and degrees >= 0")
