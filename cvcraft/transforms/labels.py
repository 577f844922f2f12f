"""Target encodings for classification: one-hot and label smoothing (Szegedy et al. 2016).

Both accept torch tensors or numpy arrays and return the same kind (float32).
Label smoothing: y' = y * (1 - eps) + eps / K, so the true class gets 1 - eps + eps/K and
every other class eps/K; cross-entropy against y' equals
``torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps)``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def one_hot(labels: ArrayT, num_classes: int) -> ArrayT:
    """Integer labels (...,) -> float32 one-hot (..., num_classes)."""
    if num_classes < 1:
        raise ConfigError(f"one_hot: num_classes must be >= 1, got {num_classes}")
    is_torch = isinstance(labels, torch.Tensor)
    lab = labels.detach().cpu().numpy() if is_torch else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise DataError(f"one_hot: labels must be integers, got dtype {lab.dtype}")
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise DataError(
            f"one_hot: labels span [{lab.min()}, {lab.max()}] but num_classes={num_classes}; "
            "check the class list or num_classes"
        )
    if is_torch:
        return torch.nn.functional.one_hot(labels.long(), num_classes).float()
    return np.eye(num_classes, dtype=np.float32)[lab]


def smooth_labels(targets_or_labels: ArrayT, num_classes: int, smoothing: float) -> ArrayT:
    """Smoothed soft targets y * (1 - eps) + eps / K from integer labels or (…, K) targets.

    Integer input is one-hot encoded first; float input is taken as (soft) targets already
    (e.g. after mixup) and must have ``num_classes`` as its last dimension.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"smooth_labels: smoothing must be in [0, 1), got {smoothing}")
    x = targets_or_labels
    is_float = (
        x.is_floating_point() if isinstance(x, torch.Tensor) else np.asarray(x).dtype.kind == "f"
    )
    if is_float:
        if x.shape[-1] != num_classes:
            raise DataError(
                f"smooth_labels: targets have last dim {x.shape[-1]}, expected {num_classes}"
            )
        y = x.float() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    else:
        y = one_hot(x, num_classes)
    return y * (1.0 - smoothing) + smoothing / num_classes
