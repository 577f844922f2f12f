"""SSD's default boxes (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", section 2.2).

Key idea: level k of m feature maps gets boxes of scale ``s_k`` (a fraction of the image
side), ``s_k = s_min + (s_max - s_min) k / (m - 1)``, one square of side ``s_k``, one of side
``sqrt(s_k s_{k+1})``, and for each aspect ratio ``a`` a pair ``(s_k sqrt(a), s_k / sqrt(a))``
and its transpose; they sit at the centres ``((i + 0.5) / f_x, (j + 0.5) / f_y)`` of the
cells, with ``f`` the number of cells per image side (the feature size, or ``side / step``
when steps are given, SSD300's layout). Same numbers and order as torchvision's
``DefaultBoxGenerator``: level, then row-major cell, then box shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cvcraft.errors import ConfigError

__all__ = ["default_box_shapes", "default_boxes", "ssd_scales"]


def ssd_scales(num_levels: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
    """``num_levels + 1`` scales: evenly spaced from ``min_ratio`` to ``max_ratio``, then 1.0
    (the extra one only feeds the last level's ``sqrt(s_k s_{k+1})`` box)."""
    if num_levels < 1:
        raise ConfigError(f"ssd_scales: num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return [min_ratio, max_ratio]
    span = max_ratio - min_ratio
    return [min_ratio + span * k / (num_levels - 1.0) for k in range(num_levels)] + [1.0]


def default_box_shapes(
    scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]], clip: bool = True
) -> list[torch.Tensor]:
    """Per level k a (2 + 2 len(ratios_k), 2) tensor of (w, h) as fractions of the image side:
    ``(s_k, s_k)``, ``(s'_k, s'_k)`` with ``s'_k = sqrt(s_k s_{k+1})``, then per ratio ``a``
    ``(s_k sqrt(a), s_k / sqrt(a))`` and its transpose; clipped to [0, 1] if ``clip``."""
    if len(scales) != len(aspect_ratios) + 1:
        raise ConfigError(
            f"default boxes need one scale per level plus one: {len(aspect_ratios)} levels, "
            f"{len(scales)} scales"
        )
    shapes = []
    for k, ratios in enumerate(aspect_ratios):
        s, s_next = scales[k], math.sqrt(scales[k] * scales[k + 1])
        wh = [[s, s], [s_next, s_next]]
        for a in ratios:
            w, h = s * math.sqrt(a), s / math.sqrt(a)
            wh += [[w, h], [h, w]]
        t = torch.tensor(wh, dtype=torch.float32)
        shapes.append(t.clamp(0, 1) if clip else t)
    return shapes


def default_boxes(
    grid_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    shapes: Sequence[torch.Tensor],
    cells: Sequence[tuple[float, float]] | None = None,
) -> torch.Tensor:
    """All default boxes (N, 4) absolute xyxy for an image of ``image_size`` (H, W).

    ``grid_sizes``: (h, w) of each level's feature map; ``shapes``: per level (A, 2) relative
    (w, h) from :func:`default_box_shapes`; ``cells``: per level the number of cells per
    image side (f_y, f_x) that place the centres (default: the feature size).
    N = sum over levels of h w A; order: level, row-major cell, shape.
    """
    if len(grid_sizes) != len(shapes):
        raise ConfigError(f"default_boxes: {len(grid_sizes)} feature maps, {len(shapes)} levels")
    out = []
    for k, (h, w) in enumerate(grid_sizes):
        fy, fx = (h, w) if cells is None else cells[k]
        cx = (torch.arange(w, dtype=torch.float32) + 0.5) / fx
        cy = (torch.arange(h, dtype=torch.float32) + 0.5) / fy
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        a = len(shapes[k])
        centres = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)  # (h w, 2)
        centres = centres[:, None].expand(-1, a, -1).reshape(-1, 2)  # (h w A, 2)
        wh = shapes[k].repeat(h * w, 1)  # (h w A, 2)
        out.append(torch.cat([centres, wh], 1))
    boxes = torch.cat(out)  # (N, 4) relative cx, cy, w, h
    scale = torch.tensor([image_size[1], image_size[0]])
    return torch.cat(
        [(boxes[:, :2] - 0.5 * boxes[:, 2:]) * scale, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * scale],
        1,
    )
