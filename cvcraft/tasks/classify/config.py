"""Image classification keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cvcraft.engine.config import TrainConfig, _opt, check_class_weights
from cvcraft.errors import ConfigError
from cvcraft.tasks.classify.classic import (
    CLASSIC_MODELS,
    check_classic_config,
    refuse_unsaveable,
)
from cvcraft.tasks.classify.semi_config import check_semi


@dataclass
class ClassifyConfig(TrainConfig):
    """Image classification keys. Mixup/CutMix are batch-level here (timm's recipe): their
    Beta alphas are ``mixup_alpha``/``cutmix_alpha`` and ``mix_prob`` is how often a batch is
    mixed, so ``mixup`` means "a probability" in no task and "an alpha" in another."""

    # keys only training reads: `val`/`predict --help` leave them out
    train_only_keys: ClassVar[tuple[str, ...]] = (
        "semi",
        "labeled",
        "labels_per_class",
        "unlabeled",
        "tau",
        "mu",
        "lambda_u",
        "bag",
        "label_smoothing",
        "loss",
        "scale_min",
        "hflip",
        "vflip",
        "degrees",
        "translate",
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "cutout",
        "policy",
        "erasing",
        "mixup_alpha",
        "cutmix_alpha",
        "mix_prob",
        "mix_switch",
        "sampler",
        "folds",
        "fold",
        "class_weights",
        "teacher",
        "kd",
        "kd_t",
        "kd_alpha",
        "kd_layers",
        "adv",
        "adv_eps",
        "adv_alpha",
        "adv_steps",
        "trades_beta",
        "alt_flip",
        "device_translate",
        "lookahead",
        "lookahead_decay",
        "whiten_samples",
    )

    renamed: ClassVar[dict[str, str]] = {"mixup": "mixup_alpha", "cutmix": "cutmix_alpha"}

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
    mixup_alpha: float = _opt(0.0, "Mixup alpha (Beta(alpha, alpha)); 0 = off")
    cutmix_alpha: float = _opt(0.0, "CutMix alpha; 0 = off")
    mix_prob: float = _opt(1.0, "probability a batch is mixed (when mixup or cutmix is on)")
    mix_switch: float = _opt(0.5, "with both on: probability of CutMix instead of Mixup")
    sampler: str = _opt(
        "random",
        "training sampler for imbalanced data (over/undersample: to the largest/smallest class)",
        ("random", "weighted", "sqrt", "balanced", "oversample", "undersample"),
    )
    bag: int = _opt(
        -1, "bagging: train on bootstrap resample number bag of the train split (-1 = off)"
    )
    folds: int = _opt(0, "k-fold: train on the other folds of train + val (0 = off)")
    fold: int = _opt(
        -1, "k-fold: which stratified fold is validation (0 .. folds - 1; -1 = train every fold)"
    )
    class_weights: list = _opt(
        [], "per-class loss weights: inverse | sqrt (from label counts) or one number per class"
    )
    # knowledge distillation (Hinton et al. 2015; FitNets hints)
    teacher: str = _opt("", "a classify checkpoint to distil from (same classes)")
    kd: str = _opt("hinton", "distillation with teacher=: hinton (soft logits) | hint (FitNets)",
                   ("hinton", "hint"))  # fmt: skip
    kd_t: float = _opt(4.0, "distillation temperature T (the soft term is scaled by T^2)")
    kd_alpha: float = _opt(0.9, "weight of the distillation term; the label term gets 1 - alpha")
    kd_layers: str = _opt(
        "", "kd=hint: STUDENT_LAYER:TEACHER_LAYER, e.g. layer2:layer3 (module names)"
    )
    # adversarial training (Madry et al. 2018; TRADES, Zhang et al. 2019)
    adv: str = _opt("", "adversarial training: fgsm | pgd | trades ('' = off)")
    adv_eps: float = _opt(8 / 255, "attack budget in [0, 1] pixel units (L-inf)")
    adv_alpha: float = _opt(2 / 255, "PGD step size in [0, 1] pixel units")
    adv_steps: int = _opt(7, "PGD steps per batch")
    trades_beta: float = _opt(6.0, "TRADES weight of the robustness (KL) term")
    # semi-supervised FixMatch (Sohn et al. 2020; semi.py)
    semi: str = _opt(
        "", "semi-supervised method: fixmatch | pseudolabel | meanteacher (needs ema) ('' = off)"
    )
    labeled: float = _opt(
        0.0, "semi: labelled images kept (N, balanced over classes, or a fraction per class)"
    )
    labels_per_class: int = _opt(0, "semi: keep this many labels of every class (not labeled=)")
    unlabeled: str = _opt("", "semi: a folder of extra unlabelled images")
    tau: float = _opt(0.95, "semi: confidence threshold of a pseudo-label (max prob >= tau)")
    mu: int = _opt(7, "semi: unlabelled images per labelled image in a batch")
    lambda_u: float = _opt(1.0, "semi: weight of the unlabelled loss")
    # the speed recipe's parts (docs/speedrun.md)
    recipe: str = _opt(
        "", "a preset of keys: speedrun | long (tasks/classify/recipes/) or a YAML path"
    )
    alt_flip: bool = _opt(
        False, "alternating flip on the device: each image flips every other epoch (not hflip)"
    )
    device_translate: int = _opt(
        0, "random translation by up to N px on the device, reflect padded (the CPU only resizes)"
    )
    lookahead: int = _opt(0, "pull the weights into a slow average every N steps (0 = off)")
    lookahead_decay: float = _opt(0.7738, "lookahead: final share of the slow weights (0.95^5)")
    whiten_samples: int = _opt(
        5000, "images that fit a model's patch-whitening stem (e.g. speednet)"
    )
    tta: str = _opt(
        "none", "test-time augmentation in evaluation and predict",
        ("none", "flip", "flip_translate"),
    )  # fmt: skip

    def check(self) -> None:
        refuse_unsaveable(self.model)
        if self.model in CLASSIC_MODELS:
            check_classic_config(self)
        for k in ("label_smoothing", "hflip", "vflip", "cutout", "erasing"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        if self.crop not in ("auto", "rrc", "pad", "none"):
            raise ConfigError(f"crop={self.crop!r} must be one of auto, rrc, pad, none")
        for k in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k}={getattr(self, k)} must be >= 0 (0 = off)")
        if self.folds and not (self.folds >= 2 and -1 <= self.fold < self.folds):
            raise ConfigError(
                f"folds={self.folds}, fold={self.fold}: need folds >= 2 and -1 <= fold < folds "
                "(-1 = every fold)"
            )
        for k in ("mix_prob", "mix_switch", "kd_alpha"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k}={getattr(self, k)} must be in [0, 1]")
        check_class_weights(self.class_weights)
        if self.kd_t <= 0:
            raise ConfigError(f"kd_t={self.kd_t} must be > 0")
        if self.teacher and not Path(self.teacher).is_file():
            raise ConfigError(f"teacher={self.teacher}: no such file")
        if self.kd == "hint" and self.teacher and ":" not in self.kd_layers:
            raise ConfigError("kd=hint needs kd_layers=STUDENT_LAYER:TEACHER_LAYER")
        if self.adv not in ("", "fgsm", "pgd", "trades"):
            raise ConfigError(f"adv={self.adv!r} must be fgsm, pgd, trades or '' (off)")
        if self.adv and (self.adv_eps < 0 or self.adv_alpha <= 0 or self.adv_steps < 1):
            raise ConfigError("need adv_eps >= 0, adv_alpha > 0 and adv_steps >= 1")
        if self.device_translate < 0 or self.lookahead < 0 or self.whiten_samples < 1:
            raise ConfigError(
                f"device_translate={self.device_translate} and lookahead={self.lookahead} must "
                f"be >= 0, whiten_samples={self.whiten_samples} >= 1"
            )
        cpu_aug = [k for k in ("degrees", "translate", "hsv_h", "hsv_s", "hsv_v", "cutout",
                               "erasing", "policy", "augment") if getattr(self, k)]  # fmt: skip
        if self.device_translate and cpu_aug:
            raise ConfigError(
                f"device_translate={self.device_translate} makes the CPU pipeline resize only, "
                f"so {', '.join(k + '=' for k in cpu_aug)} would be ignored; drop them or "
                "device_translate"
            )
        if not 0.0 <= self.lookahead_decay <= 1.0:
            raise ConfigError(f"lookahead_decay={self.lookahead_decay} must be in [0, 1]")
        if self.adv and (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            raise ConfigError("adversarial training needs hard labels; drop mixup/cutmix")
        check_semi(self)
