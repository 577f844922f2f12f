"""Anchor boxes: per-cell base anchors, their tiling over feature maps, and k-means fitting.

Anchor-based detectors (Faster R-CNN, RetinaNet, SSD, YOLOv2-v5) regress boxes relative to a
fixed set of prior boxes. ``generate_anchors`` + ``grid_anchors`` reproduce torchvision's
``AnchorGenerator`` exactly (same values, same order); ``kmeans_anchors`` fits anchor shapes
to a dataset's box sizes (YOLOv2's k-means with ``1 - IoU`` distance, plus YOLOv5-style
genetic refinement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError

__all__ = [
    "AnchorFit",
    "AutoAnchor",
    "anchor_fitness",
    "autoanchor",
    "generate_anchors",
    "grid_anchors",
    "kmeans_anchors",
    "ratio_recall",
    "wh_iou",
]


def generate_anchors(
    sizes: Sequence[float],
    ratios: Sequence[float],
    scales: Sequence[float] = (1,),
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Base anchors of one feature level, centred on (0, 0), as xyxy.

    Aspect ratio is ``h / w`` (torchvision's convention), so an anchor of side ``s`` and ratio
    ``r`` keeps its area ``s**2``: ``h = s * sqrt(r)``, ``w = s / sqrt(r)``. Corners are
    rounded to integers like torchvision (``round(±w/2)``). ``scales`` multiply every size
    (RetinaNet's octave scales ``2**(i/3)``).

    Order: ratio-major, then size, then scale -> shape (len(ratios)*len(sizes)*len(scales), 4).
    """
    if len(sizes) == 0 or len(ratios) == 0 or len(scales) == 0:
        raise ConfigError("generate_anchors: sizes, ratios and scales must each be non-empty")
    if min(ratios) <= 0 or min(sizes) <= 0 or min(scales) <= 0:
        raise ConfigError(
            f"generate_anchors: sizes {tuple(sizes)}, ratios {tuple(ratios)} and scales "
            f"{tuple(scales)} must all be positive"
        )
    side = (
        torch.as_tensor(sizes, dtype=dtype)[:, None] * torch.as_tensor(scales, dtype=dtype)[None]
    ).reshape(-1)  # (S*C,)
    h_ratio = torch.sqrt(torch.as_tensor(ratios, dtype=dtype))  # (R,)
    ws = (side[None, :] / h_ratio[:, None]).reshape(-1)  # (R*S*C,)
    hs = (side[None, :] * h_ratio[:, None]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def _pair(v: int | float | Sequence[int | float]) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return float(v), float(v)
    if len(v) != 2:
        raise ConfigError(f"grid_anchors: a stride must be an int or (stride_h, stride_w), got {v}")
    return float(v[0]), float(v[1])


def grid_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int | float | Sequence[int | float]],
    base_anchors: Sequence[torch.Tensor],
    *,
    offset: float = 0.0,
) -> list[torch.Tensor]:
    """Tile each level's base anchors over its (H, W) grid -> list of (H*W*A, 4) xyxy.

    The anchor at cell (i, j) is the base anchor shifted by ``((j + offset) * stride_w,
    (i + offset) * stride_h)``. ``offset=0`` matches torchvision's ``AnchorGenerator``;
    ``offset=0.5`` puts anchors at pixel-cell centres (mmdet, YOLO). Order inside a level:
    row-major over cells, then the A base anchors of a cell (torchvision's order), so index
    ``(i * W + j) * A + a`` is anchor ``a`` of cell ``(i, j)``.
    """
    if not (len(feature_sizes) == len(strides) == len(base_anchors)):
        raise ConfigError(
            f"grid_anchors: got {len(feature_sizes)} feature sizes, {len(strides)} strides and "
            f"{len(base_anchors)} base-anchor sets; give one of each per level"
        )
    out = []
    for (h, w), stride, base in zip(feature_sizes, strides, base_anchors):
        sh, sw = _pair(stride)
        ys = (torch.arange(h, dtype=base.dtype, device=base.device) + offset) * sh
        xs = (torch.arange(w, dtype=base.dtype, device=base.device) + offset) * sw
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
        out.append((shifts + base.reshape(1, -1, 4)).reshape(-1, 4))
    return out


# ---------------------------------------------------------------------------- k-means anchors


def wh_iou(wh1: torch.Tensor | np.ndarray, wh2: torch.Tensor | np.ndarray) -> torch.Tensor:
    """IoU of boxes given only by (w, h), all aligned at the same corner: (N,2),(M,2) -> (N,M).

    YOLOv2's k-means distance ``1 - IoU`` compares shapes, not positions, so boxes are
    overlaid at (0, 0): ``inter = min(w1, w2) * min(h1, h2)``.
    """
    a = torch.as_tensor(wh1, dtype=torch.float64)[:, None, :]  # (N, 1, 2)
    b = torch.as_tensor(wh2, dtype=torch.float64)[None, :, :]  # (1, M, 2)
    inter = torch.minimum(a, b).prod(-1)
    union = a.prod(-1) + b.prod(-1) - inter
    return inter / union.clamp(min=1e-12)


def ratio_recall(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """Best possible recall under YOLOv5's shape-ratio rule.

    A box can be matched by an anchor when both ``w/aw`` and ``h/ah`` lie in ``[1/thr, thr]``;
    BPR is the fraction of boxes for which at least one anchor qualifies.
    """
    r = wh[:, None, :] / anchors[None, :, :]  # (N, K, 2)
    worst = np.minimum(r, 1.0 / r).min(-1)  # (N, K) the tighter of the two side ratios
    return float((worst.max(1) > 1.0 / thr).mean())


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes of the best IoU with any anchor: the k-means objective (higher = better)."""
    return float(wh_iou(wh, anchors).max(1).values.mean())


@dataclass
class AnchorFit:
    """Result of ``kmeans_anchors``.

    - ``anchors``: (k, 2) float32 (w, h) in pixels, sorted by area.
    - ``mean_best_iou``: mean over boxes of the best wh-IoU with any anchor (= fitness).
    - ``bpr``: best possible recall, YOLOv5's ratio rule at ``thr`` (see ``ratio_recall``).
    - ``history``: fitness after each k-means iteration, then after each genetic generation.
    """

    anchors: np.ndarray
    mean_best_iou: float
    bpr: float
    history: list[float] = field(default_factory=list)


def _kmeanspp_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the 1 - IoU distance: far-apart shapes are likelier picks."""
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - wh_iou(wh, np.stack(centres)).max(1).values.numpy()  # (N,)
        p = d**2
        total = p.sum()
        idx = rng.integers(len(wh)) if total <= 0 else rng.choice(len(wh), p=p / total)
        centres.append(wh[idx])
    return np.stack(centres)


def kmeans_anchors(
    wh: np.ndarray | torch.Tensor,
    k: int = 9,
    *,
    iters: int = 300,
    seed: int = 0,
    genetic_generations: int = 0,
    img_size: int | None = None,
    thr: float = 4.0,
    min_side: float = 2.0,
) -> AnchorFit:
    """Fit ``k`` anchor shapes to box sizes by k-means with distance ``1 - IoU`` (YOLOv2).

    Boxes are compared as (0,0)-aligned (w, h) pairs (``wh_iou``); each iteration assigns a
    box to the anchor of highest IoU and moves an anchor to the mean (w, h) of its boxes.
    Then ``genetic_generations`` rounds of YOLOv5-style refinement: multiply the anchors by
    random log-normal-ish factors (each coordinate mutated with p=0.9, sigma=0.1, factor
    clipped to [0.3, 3]) and keep the mutant only if the fitness (mean best IoU, the same
    objective k-means minimises) improves -- so refinement never lowers fitness.

    ``wh``: (N, 2) widths and heights in pixels, or normalized to [0, 1] when ``img_size`` is
    given (then scaled by ``img_size``; letterbox per-image aspect beforehand if you need it).
    Boxes with a side below ``min_side`` pixels are dropped (they drag a centroid to zero).
    Deterministic for a given ``seed``.
    """
    wh = np.asarray(wh.cpu() if isinstance(wh, torch.Tensor) else wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise DataError(f"kmeans_anchors: wh must have shape (N, 2), got {wh.shape}")
    if img_size is not None:
        wh = wh * float(img_size)
    wh = wh[(wh >= min_side).all(1)]
    if len(wh) < k:
        raise DataError(
            f"kmeans_anchors: only {len(wh)} boxes with both sides >= {min_side}px for k={k}; "
            "check the label scale (pass img_size= for normalized labels) or lower k"
        )
    rng = np.random.default_rng(seed)
    centres = _kmeanspp_init(wh, k, rng)
    history: list[float] = []
    assign = np.full(len(wh), -1)
    for _ in range(iters):
        iou = wh_iou(wh, centres)  # (N, k)
        history.append(float(iou.max(1).values.mean()))
        new_assign = iou.argmax(1).numpy()
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros((k, 2))
        np.add.at(sums, assign, wh)
        empty = counts == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
        if empty.any():  # re-seed an empty cluster at the worst-covered box
            worst = np.argsort(iou.max(1).values.numpy())[: int(empty.sum())]
            centres[empty] = wh[worst]

    best = anchor_fitness(wh, centres)
    for _ in range(genetic_generations):
        factor = np.ones_like(centres)
        while (factor == 1).all():  # redraw until something actually mutates
            mutate = rng.random(centres.shape) < 0.9
            noise = rng.standard_normal(centres.shape) * rng.random() * 0.1 + 1.0
            factor = np.where(mutate, noise, 1.0).clip(0.3, 3.0)
        candidate = (centres * factor).clip(min=min_side)
        fit = anchor_fitness(wh, candidate)
        if fit > best:
            centres, best = candidate, fit
        history.append(best)

    centres = centres[np.argsort(centres.prod(1), kind="stable")]
    if not math.isfinite(best):
        raise DataError("kmeans_anchors: fitness is not finite; check wh for NaN/inf values")
    return AnchorFit(
        anchors=centres.astype(np.float32),
        mean_best_iou=best,
        bpr=ratio_recall(wh, centres, thr),
        history=history,
    )


@dataclass
class AutoAnchor:
    """Outcome of ``autoanchor``: the anchors to use (K, 2), whether they replaced the
    given ones, the best possible recall before and after, and a one-line ``note``."""

    anchors: np.ndarray
    replaced: bool
    bpr_before: float
    bpr_after: float
    note: str


def autoanchor(
    wh: np.ndarray,
    anchors: np.ndarray,
    *,
    thr: float = 4.0,
    min_bpr: float = 0.98,
    seed: int = 0,
    generations: int = 1000,
    min_side: float = 2.0,
) -> AutoAnchor:
    """YOLOv5's autoanchor check: keep ``anchors`` (K, 2) pixels if their best possible
    recall on the boxes ``wh`` (N, 2) pixels (``ratio_recall`` at ``thr``) is at least
    ``min_bpr``; otherwise fit K anchors by k-means plus ``generations`` of genetic
    refinement and take them only if they recall more. Boxes with a side below ``min_side``
    are left out, as in ``kmeans_anchors``; too few boxes to fit keeps the anchors.
    """
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    wh = wh[(wh >= min_side).all(1)]
    if len(wh) == 0:
        raise DataError("autoanchor: no training box has both sides >= "
                        f"{min_side}px at the training size; check the labels")  # fmt: skip
    before = ratio_recall(wh, a, thr)
    if before >= min_bpr:
        return AutoAnchor(a.astype(np.float32), False, before, before,
                          f"autoanchor: best possible recall {before:.4f} >= {min_bpr}, "
                          "anchors kept")  # fmt: skip
    if len(wh) < len(a):
        return AutoAnchor(a.astype(np.float32), False, before, before,
                          f"autoanchor: recall {before:.4f} but only {len(wh)} boxes for "
                          f"{len(a)} anchors; anchors kept")  # fmt: skip
    fit = kmeans_anchors(wh, len(a), seed=seed, genetic_generations=generations, thr=thr,
                         min_side=min_side)  # fmt: skip
    if fit.bpr > before:
        shown = np.round(fit.anchors).astype(int).tolist()
        return AutoAnchor(fit.anchors, True, before, fit.bpr,
                          f"autoanchor: best possible recall {before:.4f} -> {fit.bpr:.4f} "
                          f"with k-means anchors {shown}")  # fmt: skip
    return AutoAnchor(a.astype(np.float32), False, before, before,
                      f"autoanchor: recall {before:.4f}; k-means anchors reach {fit.bpr:.4f}, "
                      "no better, anchors kept")  # fmt: skip
