"""Merge instance "things" and semantic "stuff" into one panoptic segment-id map.

The standard heuristic of Panoptic FPN (Kirillov et al., 2019): paste instances in
descending score; an instance below ``score_thresh`` is dropped, one whose pixels are
already taken for more than ``overlap_thresh`` of its area is dropped, otherwise it keeps
only its free pixels. Then each stuff class of the semantic map fills the pixels still free,
if at least ``stuff_area_thresh`` of them remain. Unfilled pixels stay 0 (VOID).

Shapes: ``semantic`` (H, W) int class map (``ignore`` = no class), instance ``masks``
(N, H, W) bool with ``scores`` (N,) and ``labels`` (N,). Returns the id map (H, W) int32
(ids 1, 2, ... in paste order) and one segment dict per id (``id``, ``category_id``,
``isthing``, ``area``, ``score`` for things).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def merge_panoptic(
    semantic: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    stuff_classes: Sequence[int] | None = None,
    score_thresh: float = 0.5,
    overlap_thresh: float = 0.5,
    stuff_area_thresh: int = 4096,
    ignore: int = 255,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Panoptic id map (H, W) and its segments from semantic stuff + instance things.

    ``stuff_classes``: the semantic classes pasted as stuff (default: every class in the
    map except ``ignore`` and the instance labels' classes).
    """
    semantic = np.asarray(semantic)
    m = np.asarray(masks, bool)
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if semantic.ndim != 2:
        raise ValueError(f"semantic must be an (H, W) class map, got shape {semantic.shape}")
    if m.ndim != 3 or m.shape[1:] != semantic.shape:
        raise ValueError(
            f"masks must be (N, {semantic.shape[0]}, {semantic.shape[1]}), got {m.shape}"
        )
    if not (len(m) == len(scores) == len(labels)):
        raise ValueError(f"{len(m)} masks, {len(scores)} scores and {len(labels)} labels differ")
    if semantic.size and semantic.min() < 0:
        raise ValueError("semantic class indices must be >= 0")
    pan = np.zeros(semantic.shape, np.int32)
    segments: list[dict[str, Any]] = []
    mask_area = m.sum((1, 2))
    # Sequential by nature: an instance's free pixels depend on the ones pasted before it.
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < score_thresh or mask_area[i] == 0:
            continue
        taken = (m[i] & (pan > 0)).sum()
        if taken / mask_area[i] > overlap_thresh:
            continue
        free = m[i] & (pan == 0)
        seg_id = len(segments) + 1
        pan[free] = seg_id
        segments.append(
            {"id": seg_id, "category_id": int(labels[i]), "isthing": True,
             "area": int(free.sum()), "score": float(scores[i])}
        )  # fmt: skip
    if stuff_classes is None:
        present = np.unique(semantic)
        stuff = present[(present != ignore) & ~np.isin(present, labels)]
    else:
        stuff = np.unique(np.asarray(stuff_classes, np.int64))
    # Stuff classes are disjoint in the semantic map, so all fill at once.
    free = pan == 0
    cls = np.where(free, semantic, ignore).astype(np.int64)
    counts = np.bincount(cls[free].ravel(), minlength=int(max(stuff.max(initial=0), 0)) + 1)
    keep = [int(c) for c in stuff if 0 <= c < len(counts) and counts[c] >= stuff_area_thresh]
    if keep:
        ids = np.zeros(len(counts), np.int32)
        ids[keep] = len(segments) + 1 + np.arange(len(keep))
        fill = free & np.isin(semantic, keep)
        pan[fill] = ids[semantic[fill]]
        for c in keep:
            segments.append(
                {"id": int(ids[c]), "category_id": c, "isthing": False, "area": int(counts[c])}
            )
    return pan, segments


__all__ = ["merge_panoptic"]
