"""Anchor-free DFL box coding of the YOLOv8 head: anchor points, decode, encode.

Each cell centre (anchor point) predicts the distances from itself to the four box edges,
(l, t, r, b), in units of its level's stride. Each distance is a discrete distribution over
``reg_max`` bins 0..reg_max-1 (Generalized Focal Loss, Li et al. 2020); its value is the
expectation ``sum_i i softmax(z)_i``, so a box edge can sit between bins and the spread of
the distribution expresses uncertainty. Decode: ``xyxy = (ax - l s, ay - t s, ax + r s,
ay + b s)``; encode is its inverse, clamped to the representable range.
"""

from __future__ import annotations

import torch

__all__ = ["dfl_expectation", "encode_ltrb", "make_anchor_points", "yolo_decode"]


def make_anchor_points(
    feature_sizes: list[tuple[int, int]],
    strides: tuple[int, ...],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre anchor points in input pixels, ((j + 0.5) s, (i + 0.5) s), row-major per
    level, levels concatenated: -> points (N, 2) and strides (N, 1)."""
    points, strd = [], []
    for (h, w), s in zip(feature_sizes, strides):  # a handful of levels
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx, yy], -1).reshape(-1, 2))
        strd.append(torch.full((h * w, 1), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(strd)


def dfl_expectation(box_logits: torch.Tensor) -> torch.Tensor:
    """Expected bin index per edge: ``sum_i i softmax(z)_i``; (..., 4R) -> (..., 4), in bins."""
    *lead, c = box_logits.shape
    reg_max = c // 4
    prob = box_logits.reshape(*lead, 4, reg_max).softmax(-1)
    bins = torch.arange(reg_max, device=box_logits.device, dtype=prob.dtype)
    return prob @ bins


def yolo_decode(
    box_logits: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor
) -> torch.Tensor:
    """DFL logits -> xyxy boxes in pixels. (B, N, 4R), (N, 2), (N, 1) -> (B, N, 4)."""
    ltrb = dfl_expectation(box_logits) * strides  # (B, N, 4) pixels
    return torch.cat([anchors - ltrb[..., :2], anchors + ltrb[..., 2:]], -1)


def encode_ltrb(
    boxes: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor, reg_max: int
) -> torch.Tensor:
    """xyxy boxes -> edge distances (l, t, r, b) from the anchor point in stride units,
    clamped to the DFL range [0, reg_max - 1 - 0.01]. (..., 4), (..., 2), (..., 1) -> (..., 4).
    Inverse of :func:`yolo_decode` for boxes inside that range."""
    ltrb = torch.cat([anchors - boxes[..., :2], boxes[..., 2:] - anchors], -1) / strides
    return ltrb.clamp(0, reg_max - 1 - 0.01)
