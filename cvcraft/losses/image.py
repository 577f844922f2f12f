"""Differentiable image-similarity terms: SSIM, MS-SSIM and a gradient (edge) loss.

SSIM (Wang et al. 2004) compares local means, variances and covariance under an 11x11
Gaussian window (sigma 1.5), evaluated only where the window fits ("valid"):
SSIM = mean[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))],
C1 = (0.01 L)^2, C2 = (0.03 L)^2, L the data range. MS-SSIM (Wang et al. 2003) takes the
contrast-structure term cs at 4 scales (2x2 average-pooled) and full SSIM at the 5th:
prod_j relu(cs_j)^w_j * relu(SSIM_5)^w_5, w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
Inputs are float tensors (N, C, H, W); results per image are averaged over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.registry import LOSSES

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """Normalized 1-D Gaussian of odd length ``size``. -> (size,)"""
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"win_size must be odd and >= 1, got {size}")
    x = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _check_pair(x: torch.Tensor, y: torch.Tensor, win_size: int) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise DataError(
            f"SSIM needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if min(x.shape[-2:]) < win_size:
        raise DataError(
            f"images {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} SSIM "
            "window; use a smaller win_size"
        )


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel. (N, C, H, W) -> smaller."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim_maps(mu_x, mu_y, e_xx, e_yy, e_xy, c1: float, c2: float):
    """SSIM and contrast-structure maps from the local moments mu = G*x, e_xy = G*(x y).

    Pure arithmetic, so it serves torch tensors (the loss) and numpy arrays (the metric).
    """
    sxx = e_xx - mu_x * mu_x
    syy = e_yy - mu_y * mu_y
    sxy = e_xy - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return lum * cs, cs


def ssim_components(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM, cs) per image and channel, each the mean of its map. -> 2 x (N, C)"""
    _check_pair(x, y, win_size)
    g = gaussian_window(win_size, sigma, x.dtype).to(x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    c = x.shape[1]
    # the five local moments in one grouped convolution: (N, 5C, H, W)
    m = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), g).split(c, 1)
    s, cs = ssim_maps(*m, c1, c2)
    return s.mean((-2, -1)), cs.mean((-2, -1))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, **kw) -> torch.Tensor:
    """Mean SSIM per image (N,), averaged over channels. See the module docstring."""
    return ssim_components(x, y, data_range, **kw)[0].mean(1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    weights: tuple[float, ...] = MS_WEIGHTS,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Multi-scale SSIM per image (N,). The smaller side must exceed (win_size - 1) * 2^4
    for the default 5 scales (160 px)."""
    levels = len(weights)
    need = (win_size - 1) * 2 ** (levels - 1)
    if x.ndim == 4 and min(x.shape[-2:]) <= need:
        raise DataError(
            f"MS-SSIM with {levels} scales needs images larger than {need} px per side, got "
            f"{tuple(x.shape[-2:])}; use fewer weights or ssim"
        )
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)
    cs_all = []
    for level in range(levels):
        s, cs = ssim_components(x, y, data_range, win_size, sigma)
        if level < levels - 1:
            cs_all.append(torch.relu(cs))
            pad = [x.shape[-2] % 2, x.shape[-1] % 2]
            x = F.avg_pool2d(x, 2, padding=pad)
            y = F.avg_pool2d(y, 2, padding=pad)
    vals = torch.stack(cs_all + [torch.relu(s)], 0)  # (levels, N, C)
    return torch.prod(vals ** w.view(-1, 1, 1), 0).mean(1)


def sobel_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel gx, gy of every channel with a replicated border. (N, C, H, W) -> 2 x same."""
    c = x.shape[1]
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(xp, k.expand(c, 1, 3, 3), groups=c)
    gy = F.conv2d(xp, k.t().expand(c, 1, 3, 3), groups=c)
    return gx, gy


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Edge-preserving term: mean |Sobel_x(p) - Sobel_x(t)| + |Sobel_y(p) - Sobel_y(t)|."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise DataError(
            f"gradient_loss needs (N, C, H, W) tensors of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    px, py = sobel_gradients(pred)
    tx, ty = sobel_gradients(target)
    return (px - tx).abs().mean() + (py - ty).abs().mean()


@LOSSES.register("ssim")
class SSIMLoss(nn.Module):
    """1 - SSIM, averaged over the batch (for restoration / fusion / autoencoders)."""

    def __init__(self, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5):
        super().__init__()
        self.data_range, self.win_size, self.sigma = data_range, win_size, sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = ssim(pred, target, self.data_range, win_size=self.win_size, sigma=self.sigma)
        return 1 - s.mean()


@LOSSES.register("ms_ssim")
class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM, averaged over the batch."""

    def __init__(self, data_range: float = 1.0, weights: tuple[float, ...] = MS_WEIGHTS):
        super().__init__()
        self.data_range, self.weights = data_range, tuple(weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(pred, target, self.data_range, self.weights).mean()


@LOSSES.register("gradient")
class GradientLoss(nn.Module):
    """L1 distance between Sobel gradients (``gradient_loss``)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return gradient_loss(pred, target)
