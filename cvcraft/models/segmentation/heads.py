"""Pieces every segmentation model shares: the FCN-style classifier head and the output contract.

- ``FCNHead``: 3x3 conv-BN-ReLU to ``in/4`` channels, dropout, 1x1 conv to the classes — the
  auxiliary head of PSPNet/DeepLab (Zhao et al. 2017 put it on ResNet's ``layer3`` to ease
  optimisation of the deep backbone) and torchvision's ``FCNHead``.
- ``aux_logits``: the auxiliary head's logits in training only.
- ``check_min_size``: a clear error when an input is too small for a model's poolings.
- ``is_exporting``: whether a graph is being traced/exported (shape-dependent fast paths
  step aside then).
- ``seg_outputs``: resize logits to the input size and apply the train/eval contract:
  training with auxiliary heads -> ``(main, [aux, ...])``, otherwise ``main`` alone.
- ``fcn_head_tv_rules``: key renames from torchvision's flat FCNHead to ours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct


def is_exporting() -> bool:
    """True while a graph is traced/exported: shape-dependent shortcuts would be frozen into
    a graph that may later run at other sizes, so the plain op is used instead."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_exporting()
    )


class FCNHead(nn.Sequential):
    """(B, in_ch, h, w) -> (B, num_classes, h, w) via a 3x3 ConvBNAct to ``in_ch // 4``."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.1) -> None:
        mid = max(in_ch // 4, 1)
        super().__init__(
            ConvBNAct(in_ch, mid, 3), nn.Dropout(dropout), nn.Conv2d(mid, num_classes, 1)
        )


def fcn_head_tv_rules(prefix: str) -> list[tuple[str, str]]:
    """Regex renames of a torchvision ``FCNHead`` under ``prefix`` to ours: its flat
    (conv 0, BN 1, ReLU 2, dropout 3, conv 4) becomes (ConvBNAct 0 = conv + bn, dropout 1,
    conv 2)."""
    p = re.escape(prefix)
    return [
        (rf"^{p}\.0\.weight$", f"{prefix}.0.conv.weight"),
        (rf"^{p}\.1\.", f"{prefix}.0.bn."),
        (rf"^{p}\.4\.", f"{prefix}.2."),
    ]


def aux_logits(head: nn.Module | None, feat: Tensor, training: bool) -> list[Tensor]:
    """``[head(feat)]`` in training when the model has an auxiliary head, else ``[]`` (the
    auxiliary branch costs nothing at inference)."""
    return [head(feat)] if head is not None and training else []


def check_min_size(x: Tensor, minimum: int, model: str) -> None:
    """Raise a ``ConfigError`` if H or W of ``x`` is below ``minimum`` (a pooling would reach
    zero size): names the model, the size and the fix instead of torch's shape error."""
    if min(x.shape[-2:]) < minimum:
        raise ConfigError(
            f"{model}: input {tuple(x.shape[-2:])} is too small; this configuration pools "
            f"down to 1/{minimum}, so H and W must be >= {minimum} (raise imgsz or lower depth)"
        )


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of logits to ``size`` (align_corners=False); a no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def seg_outputs(
    training: bool, main: Tensor, aux: Sequence[Tensor], size: Sequence[int]
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """The segmentation contract: ``main`` (and in training ``aux``) resized to ``size``."""
    main = resize(main, size)  # (B, K, H, W)
    if not training or not aux:
        return main
    return main, [resize(a, size) for a in aux]


__all__ = [
    "FCNHead",
    "aux_logits",
    "fcn_head_tv_rules",
    "check_min_size",
    "is_exporting",
    "resize",
    "seg_outputs",
]
