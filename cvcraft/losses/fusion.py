"""The image-fusion loss: intensity + gradient + SSIM terms against both sources.

No fused ground truth exists, so the loss asks the fused image f to keep, pixel by pixel,
the brighter source intensity (infrared targets), the stronger source edge (visible
texture) and the structure of both (SeAFusion / U2Fusion style):

- intensity  L_int  = mean |f - max(a, b)|
- gradient   L_grad = mean | |grad f| - max(|grad a|, |grad b|) |, |grad| = |S_x| + |S_y| (Sobel)
- SSIM       L_ssim = 1 - (SSIM(f, a) + SSIM(f, b)) / 2

L = w_int L_int + w_grad L_grad + w_ssim L_ssim. Inputs are float (N, 1, H, W) in [0, 1]
(H, W >= the 11 px SSIM window).

DenseFuse's auto-encoder is trained without pairs, to reconstruct single images:
L_rec = mean (o - x)^2 + lambda (1 - SSIM(o, x)) (``ReconstructionLoss``; the paper's pixel
term is the Euclidean distance, here its mean square so lambda is independent of image size).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.image import sobel_gradients, ssim
from cvcraft.losses.registry import LOSSES


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|S_x| + |S_y| of every channel (Sobel, replicated border). (N, C, H, W) -> same."""
    gx, gy = sobel_gradients(x)
    return gx.abs() + gy.abs()


def fusion_loss_terms(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The three scalar terms ``intensity``, ``gradient``, ``ssim`` (see the module doc)."""
    if not (fused.shape == a.shape == b.shape) or fused.ndim != 4:
        raise DataError(
            f"fusion loss needs fused and both sources as (N, C, H, W) of one shape, got "
            f"{tuple(fused.shape)}, {tuple(a.shape)}, {tuple(b.shape)}"
        )
    intensity = (fused - torch.maximum(a, b)).abs().mean()
    target = torch.maximum(gradient_magnitude(a), gradient_magnitude(b))
    gradient = (gradient_magnitude(fused) - target).abs().mean()
    structure = 1 - (ssim(fused, a) + ssim(fused, b)).mean() / 2
    return {"intensity": intensity, "gradient": gradient, "ssim": structure}


@LOSSES.register("fusion")
class FusionLoss(nn.Module):
    """Weighted sum of the fusion terms; ``forward`` returns (total, {term: value})."""

    def __init__(self, intensity: float = 1.0, gradient: float = 1.0, ssim: float = 1.0):
        super().__init__()
        for k, w in (("intensity", intensity), ("gradient", gradient), ("ssim", ssim)):
            if w < 0:
                raise ConfigError(f"fusion loss weight {k}={w} must be >= 0")
        self.weights = {"intensity": intensity, "gradient": gradient, "ssim": ssim}

    def forward(
        self, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        terms = fusion_loss_terms(fused, a, b)
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}  # type: ignore[return-value]


@LOSSES.register("reconstruction")
class ReconstructionLoss(nn.Module):
    """DenseFuse's auto-encoder loss mean (o - x)^2 + ``ssim`` (1 - SSIM(o, x));
    ``forward(out, x)`` returns (total, {"pixel", "ssim"})."""

    def __init__(self, ssim: float = 10.0) -> None:
        super().__init__()
        if ssim < 0:
            raise ConfigError(f"reconstruction loss weight ssim={ssim} must be >= 0")
        self.weight = ssim

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if out.shape != x.shape or out.ndim != 4:
            raise DataError(
                f"reconstruction loss needs output and input (N, C, H, W) of one shape, got "
                f"{tuple(out.shape)}, {tuple(x.shape)}"
            )
        pixel = ((out - x) ** 2).mean()
        structure = 1 - ssim(out, x).mean()
        total = pixel + self.weight * structure
        return total, {"pixel": float(pixel.detach()), "ssim": float(structure.detach())}
