"""Test-time augmentation for classifiers: average the logits of mirrored (and shifted)
copies of each image, a free accuracy gain for a model trained with flips and translations.

``flip``:           ``L = (f(x) + f(mirror x)) / 2``
``flip_translate``: ``L = F(x) / 2 + (F(shift(x, -1)) + F(shift(x, +1))) / 4`` with ``F`` the
flip average and ``shift(x, s)`` the image moved by ``s`` pixels along both axes (reflect
padded) -- six views, the original weighted 1/4, each shifted view 1/8 (airbench's TTA).
Shapes: x (N, C, H, W) normalised -> logits (N, K). The views go through the model as one
batch (eval-mode BatchNorm makes that identical to separate passes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cvcraft.errors import ConfigError
from cvcraft.transforms.device_aug import reflect_pad

TTA_MODES = ("none", "flip", "flip_translate")


def tta_views(x: torch.Tensor, mode: str, shift: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(views (V * N, C, H, W), weights (V,)) of ``mode``; the weights sum to 1."""
    if mode not in TTA_MODES:
        raise ConfigError(f"tta={mode!r} must be one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return x, torch.ones(1)
    views = [x, x.flip(-1)]
    weights = [0.5, 0.5]
    if mode == "flip_translate":
        h, w = x.shape[-2:]
        p = reflect_pad(x, shift)
        for dy in (0, 2 * shift):  # up-left, down-right
            v = p[:, :, dy : dy + h, dy : dy + w]
            views += [v, v.flip(-1)]
        weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    return torch.cat(views), torch.tensor(weights)


def tta_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str, shift: int = 1
) -> torch.Tensor:
    """The weighted average of ``forward`` over the views of ``x``: (N, K) float."""
    views, weights = tta_views(x, mode, shift)
    if mode == "none":
        return forward(x).float()
    logits = forward(views).float()  # (V * N, K)
    per_view = logits.view(len(weights), x.shape[0], -1)
    return torch.einsum("v,vnk->nk", weights.to(logits), per_view)
