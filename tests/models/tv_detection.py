"""torchvision's detectors as oracles on the production path: 0-1 images through their own
``GeneralizedRCNNTransform`` (ImageNet normalization), shared by the detector tests."""

from __future__ import annotations

import torch


def tv_normalize(tv: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) 0-1 images normalized by torchvision's transform, as its backbone sees them."""
    return torch.stack([tv.transform.normalize(img) for img in x])


def tv_whole(tv: torch.nn.Module, x: torch.Tensor, score_thresh: float) -> list[dict]:
    """torchvision's whole model on 0-1 images: its transform normalizes them and, with
    min_size = H and max_size = W, neither resizes nor pads them (sides multiples of 32)."""
    tv.transform.min_size, tv.transform.max_size = (x.shape[-2],), x.shape[-1]
    tv.score_thresh = score_thresh
    with torch.no_grad():
        return tv(list(x))
