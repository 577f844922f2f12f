"""Box operations on torch tensors: format conversions and the IoU family.

Boxes are float (N, 4) absolute ``xyxy``. The format converters, ``box_area`` and
``clip_boxes`` live in :mod:`cvcraft.structures` and are re-exported here so detection code
finds every box operation in one place.

The IoU family — IoU, GIoU, DIoU, CIoU, SIoU — is written once, elementwise with
broadcasting (:func:`_iou_terms` + :func:`_iou_from_terms`). Pairwise (N, M) matrices are the
same code applied to ``a[:, None]`` against ``b[None]``; aligned (N,) values (what a box loss
needs) are the same code applied to ``a`` against ``b``.

Denominators (union, enclosing area and diagonal, centre distance) are clamped at ``eps``
rather than shifted by it: for ordinary boxes the results equal ``torchvision.ops`` exactly,
and two empty boxes give 0 instead of NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from cvcraft.errors import ConfigError
from cvcraft.structures import (
    box_area,
    clip_boxes,
    convert_boxes,
    cxcywh_to_xyxy,
    denormalize_boxes,
    normalize_boxes,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)

__all__ = [
    "IOU_KINDS",
    "box_area",
    "box_iou",
    "clip_boxes",
    "complete_box_iou",
    "convert_boxes",
    "cxcywh_to_xyxy",
    "denormalize_boxes",
    "distance_box_iou",
    "elementwise_iou",
    "generalized_box_iou",
    "normalize_boxes",
    "pairwise_iou",
    "siou",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]

IOU_KINDS = ("iou", "giou", "diou", "ciou", "siou")
SIOU_THETA = 4.0  # shape-cost exponent theta, the value Gevorgyan (2022) recommends


class _IoUTerms(NamedTuple):
    """The quantities every IoU variant is built from; each broadcasts to the output shape."""

    iou: torch.Tensor  # intersection / union
    union: torch.Tensor  # |A| + |B| - |A ∩ B|
    # The rest is None when only IoU is wanted, so NMS inner loops skip the extra ops.
    enclose_w: torch.Tensor | None  # width of the smallest box enclosing both
    enclose_h: torch.Tensor | None
    dx: torch.Tensor | None  # centre offset b - a along x
    dy: torch.Tensor | None
    wa: torch.Tensor  # widths/heights of the two boxes
    ha: torch.Tensor
    wb: torch.Tensor
    hb: torch.Tensor


def _iou_terms(a: torch.Tensor, b: torch.Tensor, eps: float, enclosing: bool = True) -> _IoUTerms:
    """Intersection, union and (if ``enclosing``) enclosing-box and centre terms of
    ``a`` (..., 4) and ``b`` (..., 4), broadcast against each other."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    wa, ha, wb, hb = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    inter_w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    inter_h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = inter_w * inter_h
    union = wa.clamp(min=0) * ha.clamp(min=0) + wb.clamp(min=0) * hb.clamp(min=0) - inter
    iou = inter / union.clamp(min=eps)
    if not enclosing:
        return _IoUTerms(iou, union, None, None, None, None, wa, ha, wb, hb)
    return _IoUTerms(
        iou=iou,
        union=union,
        enclose_w=torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1),
        enclose_h=torch.maximum(ay2, by2) - torch.minimum(ay1, by1),
        dx=(bx1 + bx2 - ax1 - ax2) / 2,
        dy=(by1 + by2 - ay1 - ay2) / 2,
        wa=wa,
        ha=ha,
        wb=wb,
        hb=hb,
    )


def _iou_from_terms(t: _IoUTerms, kind: str, eps: float, ciou_alpha_grad: bool) -> torch.Tensor:
    """One IoU variant from the shared terms (formulas in :func:`elementwise_iou`)."""
    if kind == "iou":
        return t.iou
    if kind == "giou":
        enclose = (t.enclose_w * t.enclose_h).clamp(min=eps)
        return t.iou - (enclose - t.union) / enclose
    if kind in ("diou", "ciou"):
        diag2 = (t.enclose_w**2 + t.enclose_h**2).clamp(min=eps)
        diou = t.iou - (t.dx**2 + t.dy**2) / diag2
        if kind == "diou":
            return diou
        # atan2(w, h) == atan(w / h) for h > 0 and stays finite for empty boxes
        v = (4 / math.pi**2) * (torch.atan2(t.wb, t.hb) - torch.atan2(t.wa, t.ha)) ** 2
        alpha = v / (1 - t.iou + v).clamp(min=eps)
        # CIoU's authors treat alpha as a constant weight (no gradient through it)
        return diou - (alpha if ciou_alpha_grad else alpha.detach()) * v
    if kind == "siou":
        return t.iou - _siou_penalty(t, eps)
    raise ConfigError(f"unknown IoU kind {kind!r}; use one of {IOU_KINDS}")


def _siou_penalty(t: _IoUTerms, eps: float) -> torch.Tensor:
    """SIoU's (distance cost + shape cost) / 2, with the angle cost folded into the distance."""
    sigma2 = (t.dx**2 + t.dy**2).clamp(min=eps)
    # Angle cost 1 - 2 sin^2(arcsin(|dy| / sigma) - pi/4) = sin(2 alpha) = 2 |dx| |dy| / sigma^2;
    # the closed form is the same whichever of alpha / beta the paper picks (sin 2a = sin 2b).
    angle = 2 * (t.dx * t.dy).abs() / sigma2
    gamma = 2 - angle
    rho_x = (t.dx / t.enclose_w.clamp(min=eps)) ** 2
    rho_y = (t.dy / t.enclose_h.clamp(min=eps)) ** 2
    distance = 2 - torch.exp(-gamma * rho_x) - torch.exp(-gamma * rho_y)
    omega_w = (t.wa - t.wb).abs() / torch.maximum(t.wa, t.wb).clamp(min=eps)
    omega_h = (t.ha - t.hb).abs() / torch.maximum(t.ha, t.hb).clamp(min=eps)
    shape = (1 - torch.exp(-omega_w)) ** SIOU_THETA + (1 - torch.exp(-omega_h)) ** SIOU_THETA
    return (distance + shape) / 2


def _check_boxes(name: str, boxes: torch.Tensor) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape (..., 4) xyxy, got {tuple(boxes.shape)}")


def elementwise_iou(
    a: torch.Tensor,
    b: torch.Tensor,
    kind: str = "iou",
    eps: float = 1e-7,
    *,
    ciou_alpha_grad: bool = False,
) -> torch.Tensor:
    """IoU-family value of aligned box pairs: ``a`` (..., 4), ``b`` (..., 4) -> (...).

    Shapes broadcast, so ``elementwise_iou(a[:, None], b[None])`` is the (N, M) matrix.

    - ``iou``  = |A ∩ B| / |A ∪ B|
    - ``giou`` = IoU - |C \\ (A ∪ B)| / |C|, C the smallest enclosing box (Rezatofighi 2019)
    - ``diou`` = IoU - rho^2 / c^2, rho the centre distance, c C's diagonal (Zheng 2020)
    - ``ciou`` = DIoU - alpha v, v = 4/pi^2 (atan(w_b/h_b) - atan(w_a/h_a))^2,
      alpha = v / (1 - IoU + v), held constant in backprop unless ``ciou_alpha_grad``
    - ``siou`` = IoU - (Delta + Omega) / 2 (Gevorgyan 2022), with angle cost
      Lambda = 1 - 2 sin^2(arcsin(|dy|/sigma) - pi/4), distance cost
      Delta = sum_{x,y} 1 - exp(-(2 - Lambda) (d_t / C_t)^2), shape cost
      Omega = sum_{w,h} (1 - exp(-|w_a - w_b| / max(w_a, w_b)))^theta, theta = 4
    """
    _check_boxes("a", a)
    _check_boxes("b", b)
    if kind not in IOU_KINDS:
        raise ConfigError(f"unknown IoU kind {kind!r}; use one of {IOU_KINDS}")
    terms = _iou_terms(a, b, eps, enclosing=kind != "iou")
    return _iou_from_terms(terms, kind, eps, ciou_alpha_grad)


def pairwise_iou(
    a: torch.Tensor, b: torch.Tensor, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """IoU-family matrix: ``a`` (..., N, 4), ``b`` (..., M, 4) -> (..., N, M)."""
    _check_boxes("a", a)
    _check_boxes("b", b)
    return elementwise_iou(a.unsqueeze(-2), b.unsqueeze(-3), kind, eps)


def box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU |A ∩ B| / |A ∪ B|: (N, 4), (M, 4) -> (N, M) in [0, 1]."""
    return pairwise_iou(a, b, "iou", eps)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise GIoU = IoU - |C \\ (A ∪ B)| / |C|: (N, 4), (M, 4) -> (N, M) in [-1, 1].

    Unlike IoU it keeps a gradient for disjoint boxes (Rezatofighi et al. 2019).
    """
    return pairwise_iou(a, b, "giou", eps)


def distance_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise DIoU = IoU - rho^2 / c^2 (centre distance over enclosing diagonal): (N, M)."""
    return pairwise_iou(a, b, "diou", eps)


def complete_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise CIoU = DIoU - alpha v (aspect-ratio consistency term): (N, 4), (M, 4) -> (N, M)."""
    return pairwise_iou(a, b, "ciou", eps)


def siou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise SIoU = IoU - (distance cost + shape cost) / 2 (Gevorgyan 2022): (N, M)."""
    return pairwise_iou(a, b, "siou", eps)
