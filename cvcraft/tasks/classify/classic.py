"""Classic models (``model=hog_svm``, ``lbp_random_forest``, ...) inside the classify task.

A scikit-learn pipeline is fitted once, in closed form, not by gradient steps, so its run
is one pass of the Trainer: the train "loader" yields the training images unaugmented
(the val transform: resized to ``imgsz``, every image once, in order), ``ClassicFit``
gathers them step by step and fits ``classic.ClassicClassifier`` at the last batch; then
the Trainer evaluates, checkpoints (the fitted arrays are the model's buffers) and writes
the same run folder and metrics as for a CNN. ``val``/``predict`` rebuild it from the
checkpoint (``classic`` entry: the buffers' layout) like any model.

This module stays light (no scikit-learn import): the config check and the task registry
read ``CLASSIC_MODELS`` on every command.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import ConfigError

# <feature>_<classifier> for the features of classic/ml.py and the classifiers whose fitted
# state classic/sklearn_arrays.py stores without pickle (a test keeps this list equal to them)
CLASSIC_FEATURES = ("pixels", "hog", "lbp", "colorhist", "bovw_sift", "bovw_orb")
CLASSIC_CLASSIFIERS = ("logreg", "linear_svm", "svm", "knn", "random_forest", "pca_svm")
CLASSIC_MODELS = tuple(f"{f}_{c}" for f in CLASSIC_FEATURES for c in CLASSIC_CLASSIFIERS)
# classic/ml.py classifiers with no pickle-free storage: scored by fit_classic, not trained here
UNSAVEABLE = ("adaboost", "gradient_boosting", "stacking")


def refuse_unsaveable(name: str) -> None:
    """A clear error for <feature>_<classifier> names whose fitted state cannot be stored."""
    for f in CLASSIC_FEATURES:
        if name.startswith(f + "_") and name[len(f) + 1 :] in UNSAVEABLE:
            raise ConfigError(
                f"model={name}: a fitted {name[len(f) + 1 :]} cannot be stored without pickle "
                f"(checkpoints never unpickle), so it cannot be a classify model; use "
                f"{f}_<{'|'.join(CLASSIC_CLASSIFIERS)}>, or cvcraft.classic.ml.fit_classic to "
                "score it without saving"
            )


def check_classic_config(cfg: Any) -> None:
    """Refuse what a closed-form fit cannot do; set what it implies (one epoch, no
    normalisation: the features take raw pixels, no EMA) and say so."""
    refused = {
        "teacher": "distillation", "adv": "adversarial training", "weights": "fine-tuning",
        "mixup_alpha": "mixup", "cutmix_alpha": "cutmix", "folds": "k-fold",
    }  # fmt: skip
    for key, what in refused.items():
        if getattr(cfg, key, None):
            raise ConfigError(f"model={cfg.model} is a classic (scikit-learn) model: {what} "
                              f"({key}=) needs a network trained by gradient steps")  # fmt: skip
    if cfg.devices > 1 or cfg.accumulate > 1:
        raise ConfigError(f"model={cfg.model} is fitted in one process: use devices=1 "
                          "accumulate=1")  # fmt: skip
    implied = {"epochs": 1, "normalize": "none", "ema": False, "channels_last": False}
    changed = [f"{k}={v}" for k, v in implied.items() if getattr(cfg, k) != v]
    for k, v in implied.items():
        setattr(cfg, k, v)
    if changed:
        print(f"model={cfg.model} is fitted once on the training images (classic ML): "
              f"{', '.join(changed)}")  # fmt: skip


def build_classic(name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any]) -> Any:
    """An unfitted ``ClassicClassifier`` (model_kwargs: features / classifier / scale)."""
    from cvcraft.classic.classic_classifier import ClassicClassifier

    try:
        return ClassicClassifier(name, num_classes, in_chans, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model_kwargs={kwargs} for {name}: {e}; use features=, "
                          "classifier=, scale=") from None  # fmt: skip


def classic_from_checkpoint(state: dict[str, Any]) -> Any:
    """The model a classic checkpoint describes, with empty buffers of its shapes."""
    from cvcraft.classic.classic_classifier import ClassicClassifier

    return ClassicClassifier.from_layout(state["model_name"], state["num_classes"],
                                         state["in_chans"], state.get("model_kwargs") or {},
                                         state["classic"])  # fmt: skip


def refuse_classic(meta: dict[str, Any], command: str) -> None:
    """Tools that need gradients or a traced graph (export, explain, attack, prune,
    quantize) cannot take a classic model: its forward runs scikit-learn-style numpy code."""
    if "classic" in meta:
        raise ConfigError(
            f"{command}: {meta.get('model_name')} is a classic (scikit-learn) model; its forward "
            "is numpy code with no gradients or graph to export, prune or quantize. Use "
            "`cvcraft val`/`predict` with its best.pt"
        )


class ClassicFit:
    """The classify task's training step for a classic model: gather every training image
    (as the model will see it: through the task's ``pre``), fit at the last batch, and
    report the training log-loss and top-1 of the fitted model."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def step(self, batch: dict[str, Any], ctx: Any) -> tuple[float, int]:
        x = self.task.pre(batch["images"])  # float (N, C, H, W) in [0, 1]
        x = (x * 255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        self.images.append(x)
        self.labels.append(batch["labels"].numpy())
        n = len(x)
        if ctx.micro_step + 1 < len(ctx.train_loader):
            return 0.0, n  # no loss before the fit: the last step accounts for these images
        images, labels = np.concatenate(self.images), np.concatenate(self.labels)
        self.images, self.labels = [], []
        model = ctx.module
        model.fit(images, labels)
        proba = model.predict_proba(images)
        picked = np.clip(proba[np.arange(len(labels)), labels], 1e-12, None)
        self.task.train_correct = int((proba.argmax(1) == labels).sum())
        self.task.train_seen = len(labels)
        # the Trainer's epoch loss is sum(value * n) / sum(n); the earlier steps gave 0, so
        # this one carries the whole set: the epoch's train_loss is the training log-loss
        return float(-np.log(picked).mean()) * len(labels) / n, n
