"""Instance masks from prototypes and per-instance coefficients (YOLACT, YOLOv8-seg).

Key idea: the network predicts ``nm`` prototype masks P (nm, Hp, Wp) once per image and, for
every detection, ``nm`` coefficients c; the detection's mask is ``sigmoid(c @ P)`` (a linear
combination of the prototypes), cropped to its box so pixels outside it are background.

``box_crop``: (N, H, W) maps, (N, 4) xyxy boxes in the maps' pixels -> the maps with every
pixel whose centre (x + 0.5, y + 0.5) lies outside its box set to 0.
``assemble_masks``: (N, nm) coefficients, (nm, Hp, Wp) prototypes, (N, 4) boxes in input
pixels, input (H, W) -> (N, H, W) probabilities; the logits are upsampled bilinearly
(``align_corners=False``) to the input before the sigmoid and the crop, so the crop is at
full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["assemble_masks", "box_crop"]


def box_crop(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero every pixel of ``masks[i]`` whose centre is outside ``boxes[i]``.

    (N, H, W), (N, 4) xyxy in the masks' pixel units -> (N, H, W). A pixel (y, x) is inside
    when ``x1 <= x + 0.5 < x2`` and ``y1 <= y + 0.5 < y2``.
    """
    n, h, w = masks.shape
    xs = torch.arange(w, device=masks.device, dtype=boxes.dtype) + 0.5  # (W,)
    ys = torch.arange(h, device=masks.device, dtype=boxes.dtype) + 0.5  # (H,)
    x1, y1, x2, y2 = boxes.reshape(n, 4, 1).unbind(1)  # each (N, 1)
    inside_x = (xs >= x1) & (xs < x2)  # (N, W)
    inside_y = (ys >= y1) & (ys < y2)  # (N, H)
    return masks * (inside_y[:, :, None] & inside_x[:, None, :]).to(masks.dtype)


def assemble_masks(
    coefs: torch.Tensor,
    protos: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """``box_crop(sigmoid(up(coefs @ protos)), boxes)``: (N, nm), (nm, Hp, Wp), (N, 4) xyxy
    input pixels, (H, W) -> (N, H, W) mask probabilities (``> 0.5`` is the mask)."""
    nm, hp, wp = protos.shape
    logits = (coefs @ protos.reshape(nm, hp * wp)).reshape(-1, hp, wp)  # (N, Hp, Wp)
    if (hp, wp) != tuple(size) and len(logits):
        logits = F.interpolate(logits[None], size=tuple(size), mode="bilinear")[0]
    elif not len(logits):
        logits = logits.new_zeros((0, *size))
    return box_crop(logits.sigmoid(), boxes.to(logits.dtype))
