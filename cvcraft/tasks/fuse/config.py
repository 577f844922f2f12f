"""Infrared-visible image fusion keys."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class FuseConfig(TrainConfig):
    """Image-fusion keys (the fused luma is learned; colour comes from the visible image)."""

    data: str = _opt(
        "synthetic", "pairs: 'synthetic[:N]' or a folder with infrared/ and visible/ sub-folders"
    )
    model: str = _opt("densefuse", "fusion model name from `cvcraft models`")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {width: 16}")
    strategy: str = _opt(
        "learned",
        "learned: train the network end to end on pairs (fusion loss); add | l1: train an "
        "auto-encoder on single images (reconstruction loss) and fuse its features with this "
        "rule at test time (DenseFuse); val/predict of an auto-encoder may switch add <-> l1",
        ("learned", "add", "l1"),
    )
    w_rec_ssim: float = _opt(10.0, "auto-encoder (strategy=add|l1): SSIM weight lambda of the "
                             "reconstruction loss mean (o - x)^2 + lambda (1 - SSIM)")  # fmt: skip
    imgsz: int = _opt(96, "square training crop (synthetic pairs are generated at this size)")
    batch: int = _opt(8, "batch size per optimizer step (before accumulation)")
    epochs: int = _opt(10, "number of training epochs")
    optimizer: str = _opt(
        "adam", "optimizer", ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
    )
    lr: float = _opt(0.001, "base learning rate (the peak after warmup)")
    weight_decay: float = _opt(0.0, "weight decay")
    warmup_epochs: float = _opt(0.0, "linear warmup length in epochs")
    val_fraction: float = _opt(0.2, "held-out share of the pairs")
    w_intensity: float = _opt(1.0, "weight of the intensity loss |f - max(ir, vis)|")
    w_gradient: float = _opt(4.0, "weight of the gradient loss (Sobel, max of the sources)")
    w_ssim: float = _opt(1.0, "weight of the SSIM loss 1 - (SSIM(f, ir) + SSIM(f, vis)) / 2")
    resize: int = _opt(0, "val/predict: resize the longer side to this first (0 = native)")
    hflip: float = _opt(0.5, "horizontal flip probability (train; the pair flips together)")
    vflip: float = _opt(0.0, "vertical flip probability (train)")

    def check(self) -> None:
        for k in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        for k in ("w_intensity", "w_gradient", "w_ssim", "w_rec_ssim"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k}={getattr(self, k)} must be >= 0")
        if self.imgsz < 11:
            raise ConfigError(f"imgsz={self.imgsz}: the SSIM loss needs crops of >= 11 px")
        if self.resize < 0:
            raise ConfigError(f"resize={self.resize} must be >= 0")
        if self.strategy != "learned" and "strategy" in self.model_kwargs:
            raise ConfigError(
                f"strategy={self.strategy} and model_kwargs.strategy="
                f"{self.model_kwargs['strategy']}: give the fusion rule once, as strategy="
            )
