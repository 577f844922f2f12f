"""Text-recognition keys (CRNN + CTC on synthetic MNIST digit strings)."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class RecognizeConfig(TrainConfig):
    """Digit strings composed from MNIST digits; the val strings use held-out digit images."""

    data: str = _opt(
        "../shared/data/mnist", "folder with MNIST IDX files (t10k-* or train-*, .gz or raw)"
    )
    model: str = _opt("crnn", "recognition model name from `cvcraft models`")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {width: 32, hidden: 128}")
    imgsz: int = _opt(32, "line height in pixels (a multiple of 16)")
    line_width: int = _opt(128, "width of a composed training/val line in pixels")
    min_len: int = _opt(3, "fewest digits in a composed string")
    max_len: int = _opt(5, "most digits in a composed string")
    train_strings: int = _opt(4000, "composed training strings per epoch (new ones each epoch)")
    val_strings: int = _opt(1000, "composed val strings (fixed, from the held-out digits)")
    val_fraction: float = _opt(0.15, "share of the digit images held out for val strings")
    split_seed: int = _opt(
        0, "seed of the train/val digit split and the val lines (kept apart from seed=)"
    )
    jitter: bool = _opt(
        True, "jitter each training digit (rotation, scale, shear, shift) before placing it"
    )
    decode: str = _opt("greedy", "CTC decoding for val/predict", ("greedy", "beam"))
    beam: int = _opt(8, "beam width when decode=beam")
    batch: int = _opt(32, "batch size per optimizer step (before accumulation)")
    epochs: int = _opt(12, "number of training epochs")
    optimizer: str = _opt(
        "adam", "optimizer", ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw")
    )
    lr: float = _opt(0.002, "base learning rate (the peak after warmup)")
    weight_decay: float = _opt(0.0, "weight decay")
    warmup_epochs: float = _opt(0.5, "linear warmup length in epochs")
    grad_clip: float = _opt(5.0, "clip the gradient norm (LSTMs can spike)")
    workers: int = _opt(0, "data-loading worker processes (composing strings is cheap)")

    def check(self) -> None:
        if self.imgsz % 16 or self.imgsz < 16:
            raise ConfigError(f"imgsz={self.imgsz}: the CRNN line height must be a multiple of 16")
        if not 1 <= self.min_len <= self.max_len:
            raise ConfigError(
                f"min_len={self.min_len}, max_len={self.max_len}: need 1 <= min_len <= max_len"
            )
        if self.line_width < 8 * self.max_len:
            raise ConfigError(
                f"line_width={self.line_width} is too narrow for max_len={self.max_len} digits"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in (0, 1)")
        if self.augment:
            raise ConfigError(
                "augment: recognize composes its own lines and takes no augmentation "
                "pipeline; use jitter=true|false for the per-digit jitter"
            )
        if self.beam < 1:
            raise ConfigError(f"beam={self.beam} must be >= 1")
        if self.train_strings < 1 or self.val_strings < 1:
            raise ConfigError("train_strings and val_strings must be >= 1")
