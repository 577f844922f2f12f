"""CenterNet's centre-heatmap coding (Zhou et al. 2019, "Objects as Points").

Each object is a peak of its class heatmap at its centre cell, splatted with a Gaussian whose
radius r is the largest corner displacement that still gives a box with IoU >= ``min_overlap``
(0.7) with the gt (CornerNet's rule), sigma = (2r + 1) / 6. r is the smallest of three cases,
each the root of a quadratic in r (w, h the box size in heatmap cells, m = min_overlap):

- one corner in, one out (translation by r):  (w - r)(h - r) = m (2wh - (w - r)(h - r))
- both corners in (shrink by r per side):       (w - 2r)(h - 2r) = m wh
- both corners out (grow by r per side):        wh = m (w + 2r)(h + 2r)

``rule="exact"`` solves them (the smallest positive root of each). ``rule="reference"`` is
the CornerNet/CenterNet reference code, which takes ``(b + sqrt(b^2 - 4ac)) / 2`` for every
case -- not the quadratics' roots, and 2-4x larger radii (softer targets); the published
CenterNet results were trained with it, so the model uses it by default.
Decoding keeps cells equal to the max of their 3x3 neighbourhood (a max-pool "NMS",
ties all kept) and takes the top k over classes and cells.

Shapes: boxes (M, 4) xyxy input pixels -> heatmap (C, h, w) and per-object centre cells;
heatmaps (B, C, h, w) -> scores, classes, ys, xs (B, k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError, DataError

__all__ = ["RADIUS_RULES", "centre_targets", "gaussian_radius", "heatmap_peaks"]

RADIUS_RULES = ("exact", "reference")


def gaussian_radius(
    wh: torch.Tensor, min_overlap: float = 0.7, rule: str = "exact"
) -> torch.Tensor:
    """Largest corner displacement keeping IoU >= min_overlap (module docstring): (..., 2)
    box (w, h) -> (...,) radius, the minimum over the three cases, 0 for empty boxes.
    ``rule``: ``exact`` (the roots) or ``reference`` (the reference code's formula)."""
    if not 0.0 < min_overlap < 1.0:
        raise ConfigError(f"gaussian_radius min_overlap must be in (0, 1), got {min_overlap}")
    if rule not in RADIUS_RULES:
        raise ConfigError(f"gaussian_radius rule {rule!r}; use one of {RADIUS_RULES}")
    w, h = wh[..., 0].clamp(min=0), wh[..., 1].clamp(min=0)
    m, s, p = min_overlap, w + h, w * h
    if rule == "reference":  # (b + sqrt(b^2 - 4ac)) / 2 for (a, b, c) of each case
        q1 = (s + torch.sqrt((s**2 - 4 * p * (1 - m) / (1 + m)).clamp(min=0))) / 2
        q2 = (2 * s + torch.sqrt((4 * s**2 - 16 * (1 - m) * p).clamp(min=0))) / 2
        q3 = (-2 * m * s + torch.sqrt(4 * m**2 * s**2 + 16 * m * (1 - m) * p)) / 2
        return torch.minimum(torch.minimum(q1, q2), q3).clamp(min=0)
    # translation: r^2 - (w + h) r + wh (1 - m) / (1 + m) = 0, smaller root
    r1 = (s - torch.sqrt((s**2 - 4 * p * (1 - m) / (1 + m)).clamp(min=0))) / 2
    # shrink: 4 r^2 - 2 (w + h) r + (1 - m) wh = 0, smaller root
    r2 = (2 * s - torch.sqrt((4 * s**2 - 16 * (1 - m) * p).clamp(min=0))) / 8
    # grow: 4m r^2 + 2m (w + h) r - (1 - m) wh = 0, positive root
    r3 = (-2 * m * s + torch.sqrt(4 * m**2 * s**2 + 16 * m * (1 - m) * p)) / (8 * m)
    return torch.minimum(torch.minimum(r1, r2), r3).clamp(min=0)


def centre_targets(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    size: tuple[int, int],
    stride: int,
    min_overlap: float = 0.7,
    radius_rule: str = "exact",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's training targets on an (h, w) grid at ``stride``.

    Returns heatmap (C, h, w) (max over the objects' Gaussians, exactly 1 at each centre
    cell), centre cells (M, 2) int64 (x, y), sizes (M, 2) (w, h) in cells and sub-cell
    offsets (M, 2) = centre / stride - cell.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or len(labels) != len(boxes):
        raise DataError(
            f"centre_targets: boxes must be (M, 4) with M labels, got {tuple(boxes.shape)} "
            f"and {len(labels)} labels"
        )
    h, w = size
    b = boxes.float() / stride
    centre = (b[:, :2] + b[:, 2:]) / 2  # (M, 2) in cells
    cell = centre.floor().long()
    cell[:, 0].clamp_(0, w - 1)
    cell[:, 1].clamp_(0, h - 1)
    wh = b[:, 2:] - b[:, :2]
    radius = gaussian_radius(wh, min_overlap, radius_rule).floor()  # (M,) whole cells, as the paper
    sigma = (2 * radius + 1) / 6
    ys = torch.arange(h, device=b.device, dtype=b.dtype).view(1, h, 1)
    xs = torch.arange(w, device=b.device, dtype=b.dtype).view(1, 1, w)
    dx, dy = xs - cell[:, 0, None, None], ys - cell[:, 1, None, None]  # (M, 1, w), (M, h, 1)
    g = torch.exp(-(dx**2 + dy**2) / (2 * sigma[:, None, None] ** 2))  # (M, h, w)
    r = radius[:, None, None]
    g = g * ((dx.abs() <= r) & (dy.abs() <= r))  # the Gaussian is cut at the radius
    heat = torch.zeros(num_classes, h, w, device=b.device, dtype=b.dtype)
    if len(boxes):
        idx = labels.long()[:, None].expand(-1, h * w)  # each object's class row
        heat.view(num_classes, -1).scatter_reduce_(0, idx, g.reshape(-1, h * w), "amax")
    return heat, cell, wh, centre - cell


def heatmap_peaks(
    heat: torch.Tensor, k: int = 100, kernel: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k local maxima: cells equal to the max of their ``kernel`` window (ties kept),
    ranked over all classes and cells. (B, C, h, w) -> scores, classes, ys, xs, each (B, k')
    with k' = min(k, C h w)."""
    if heat.ndim != 4:
        raise DataError(f"heatmap_peaks needs (B, C, h, w), got {tuple(heat.shape)}")
    if kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"heatmap_peaks kernel must be odd and positive, got {kernel}")
    b, c, h, w = heat.shape
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    kept = torch.where(hmax == heat, heat, torch.zeros_like(heat)).reshape(b, -1)
    scores, idx = kept.topk(min(k, kept.shape[1]), dim=1)
    return scores, idx // (h * w), (idx % (h * w)) // w, idx % w
