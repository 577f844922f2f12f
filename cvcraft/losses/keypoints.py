"""Heatmap regression losses for keypoints: SimpleBaseline's joints MSE and OpenPose's
multi-stage MSE (every stage supervised).

L = 0.5 * mean_{n,k,i,j} (w_nk (P_nk(i, j) - T_nk(i, j)))^2 with w the per-keypoint
visibility weight (0 for unlabelled keypoints, so they neither pull nor push).
Shapes: pred, target (N, K, h, w); weight (N, K).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import DataError
from cvcraft.losses.registry import LOSSES


def keypoint_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weighted heatmap MSE above (a scalar)."""
    if pred.shape != target.shape or pred.ndim != 4 or weight.shape != pred.shape[:2]:
        raise DataError(
            f"keypoint_mse needs pred and target (N, K, h, w) and weight (N, K), got "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(weight.shape)}"
        )
    w = weight[..., None, None].to(pred.dtype)
    return 0.5 * ((w * (pred - target)) ** 2).mean()


@LOSSES.register("keypoint_mse")
class KeypointMSELoss(nn.Module):
    """``keypoint_mse`` as a module: forward(pred, target, weight)."""

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        return keypoint_mse(pred, target, weight)


def multi_stage_mse(stages: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Intermediate supervision (OpenPose): sum over stages t of mean((P_t - T)^2); every
    stage regresses the same target. stages: T tensors shaped like target (N, C, h, w)."""
    if not stages or any(s.shape != target.shape for s in stages):
        raise DataError(
            f"multi_stage_mse needs >= 1 stage shaped like the target {tuple(target.shape)}, got "
            f"{[tuple(s.shape) for s in stages]}"
        )
    return sum(((s - target) ** 2).mean() for s in stages)
