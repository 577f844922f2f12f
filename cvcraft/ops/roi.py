"""Region-of-interest pooling: fixed-size features for arbitrary boxes (two-stage detectors).

RoIPool (Fast R-CNN) max-pools quantized bins; RoIAlign (Mask R-CNN) bilinearly samples
un-quantized bins, which matters for masks and small boxes. The kernels are torchvision's;
this module adds the input checks, the FPN level rule (which pyramid level a box is pooled
from) and the multi-level pooler built on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import roi_align as _tv_roi_align
from torchvision.ops import roi_pool as _tv_roi_pool

from cvcraft.errors import ConfigError
from cvcraft.structures import box_area

__all__ = ["fpn_level", "multiscale_roi_align", "roi_align", "roi_pool", "to_rois"]

Boxes = torch.Tensor | Sequence[torch.Tensor]


def to_rois(boxes: Boxes) -> torch.Tensor:
    """Boxes as a list of per-image (K_i, 4) xyxy, or already (K, 5) -> (K, 5) ``[batch, xyxy]``."""
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ConfigError(
                f"RoI boxes as one tensor must be (K, 5) [batch_index, x1, y1, x2, y2], "
                f"got {tuple(boxes.shape)}; pass a list of per-image (K_i, 4) tensors otherwise"
            )
        return boxes
    for i, b in enumerate(boxes):
        if b.ndim != 2 or b.shape[1] != 4:
            raise ConfigError(f"RoI boxes for image {i} must be (K, 4) xyxy, got {tuple(b.shape)}")
    if len(boxes) == 0:
        raise ConfigError("RoI boxes: got an empty list of images")
    cat = torch.cat(list(boxes))
    ids = torch.repeat_interleave(
        torch.arange(len(boxes), device=cat.device, dtype=cat.dtype),
        torch.tensor([len(b) for b in boxes], device=cat.device),
    )
    return torch.cat([ids[:, None], cat], 1)


def _size2(output_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    return int(output_size[0]), int(output_size[1])


def roi_align(
    features: torch.Tensor,
    boxes: Boxes,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign (He et al. 2017): (N, C, H, W) features, K boxes -> (K, C, oh, ow).

    Each output bin averages ``sampling_ratio``^2 bilinear samples (adaptive when -1);
    ``spatial_scale`` maps image coordinates to the feature map (1 / stride); ``aligned``
    shifts by half a pixel so a box's pixel corners, not centres, are sampled (Detectron2).
    """
    return _tv_roi_align(
        features, to_rois(boxes), _size2(output_size), spatial_scale, sampling_ratio, aligned
    )


def roi_pool(
    features: torch.Tensor,
    boxes: Boxes,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """RoIPool (Girshick 2015): max over quantized bins, (N, C, H, W), K boxes -> (K, C, oh, ow)."""
    return _tv_roi_pool(features, to_rois(boxes), _size2(output_size), spatial_scale)


def fpn_level(
    boxes: torch.Tensor,
    k_min: int = 2,
    k_max: int = 5,
    canonical_size: float = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> torch.Tensor:
    """FPN pyramid level for each box (Lin et al. 2017, eq. 1): (K, 4) xyxy -> (K,) int64.

    ``k = floor(k0 + log2(sqrt(w h) / 224))`` clamped to [k_min, k_max]: a 224-px box (the
    ImageNet canonical size) goes to level k0 = 4 (stride 16), each halving of size one level
    down. ``eps`` keeps boxes of exactly 2^n * 224 px on the higher level despite rounding.
    """
    s = torch.sqrt(box_area(boxes))
    k = torch.floor(canonical_level + torch.log2(s / canonical_size) + eps)
    return k.clamp(k_min, k_max).to(torch.int64)


def multiscale_roi_align(
    features: Sequence[torch.Tensor],
    boxes: Boxes,
    output_size: int | Sequence[int],
    sampling_ratio: int = -1,
    strides: Sequence[int] = (4, 8, 16, 32),
    canonical_size: float = 224,
    canonical_level: int = 4,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign over an FPN: pool each box from the level ``fpn_level`` picks -> (K, C, oh, ow).

    ``features[i]`` (N, C, H_i, W_i) has stride ``strides[i]`` (powers of two, consecutive
    levels); level numbers are ``log2(stride)``, so strides (4, ..., 32) are P2..P5. Output
    rows follow the box order (image-major for a list). Same result as torchvision's
    ``MultiScaleRoIAlign`` when its inferred scales equal ``1 / strides``.
    """
    if len(features) != len(strides) or len(features) == 0:
        raise ConfigError(
            f"multiscale_roi_align: {len(features)} feature maps but {len(strides)} strides; "
            "give one stride per level"
        )
    levels = [math.log2(s) for s in strides]
    if any(lv != round(lv) for lv in levels) or any(b - a != 1 for a, b in zip(levels, levels[1:])):
        raise ConfigError(
            f"multiscale_roi_align: strides {tuple(strides)} must be consecutive powers of two"
        )
    rois = to_rois(boxes)
    size = _size2(output_size)
    if len(features) == 1:
        return _tv_roi_align(features[0], rois, size, 1.0 / strides[0], sampling_ratio, aligned)
    k_min = int(levels[0])
    lvl = fpn_level(rois[:, 1:], k_min, int(levels[-1]), canonical_size, canonical_level) - k_min
    out = features[0].new_zeros((len(rois), features[0].shape[1], *size))
    for i, (feat, stride) in enumerate(zip(features, strides)):  # one kernel call per level
        idx = torch.nonzero(lvl == i).squeeze(1)
        if len(idx):
            out[idx] = _tv_roi_align(
                feat, rois[idx], size, 1.0 / stride, sampling_ratio, aligned
            ).to(out.dtype)
    return out
