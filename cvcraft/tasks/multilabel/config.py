"""Multi-label classification keys."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import _opt
from cvcraft.errors import ConfigError
from cvcraft.tasks.image_input import ImageInputConfig


@dataclass
class MultilabelConfig(ImageInputConfig):
    """Several labels per image: a sigmoid per class, BCE / focal BCE / ASL, per-class
    thresholds tuned for F1 on validation. The augmentation keys mean what they mean in
    classify (the train pipeline is classify's; geometry leaves the multi-hot target alone)."""

    data: str = _opt(
        "shapes",
        "'shapes[:N]', a .csv of path,a|b rows, a folder with labels.csv, or a detection "
        "dataset (COCO .json / YOLO / VOC) whose box classes become labels",
    )
    imgsz: int = _opt(48, "square input size fed to the model")
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
    fold: int = _opt(-1, "k-fold: which fold is validation (0 .. folds - 1; -1 = every fold)")

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold={self.threshold} must be in [0, 1]")
        if self.folds and not (self.folds >= 2 and -1 <= self.fold < self.folds):
            raise ConfigError(f"folds={self.folds}, fold={self.fold}: need folds >= 2 and "
                              "-1 <= fold < folds (-1 = every fold)")  # fmt: skip
        if not 0.0 <= self.clip < 1.0:
            raise ConfigError(f"clip={self.clip} must be in [0, 1)")
        if min(self.focal_gamma, self.gamma_pos, self.gamma_neg) < 0:
            raise ConfigError("focal_gamma, gamma_pos and gamma_neg must be >= 0")
        if self.focal_alpha != -1.0 and not 0.0 <= self.focal_alpha <= 1.0:
            raise ConfigError(f"focal_alpha={self.focal_alpha} must be in [0, 1] (or -1 = off)")
