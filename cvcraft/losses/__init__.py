"""Losses by name: ``build_loss("focal", gamma=2.0)`` (floor 2)."""

from cvcraft.losses.classification import (
    CrossEntropyLoss,
    FocalLoss,
    SoftTargetCrossEntropy,
    cross_entropy,
)
from cvcraft.losses.registry import LOSSES, build_loss

__all__ = [
    "LOSSES",
    "CrossEntropyLoss",
    "FocalLoss",
    "SoftTargetCrossEntropy",
    "build_loss",
    "cross_entropy",
]
