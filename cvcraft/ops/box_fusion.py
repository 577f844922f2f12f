"""Box ensembling: fuse the detections of several models (or TTA passes) on one image.

Where NMS keeps one box of a cluster and throws the others away, fusion lets every model's
box vote. Inputs are per-model lists (M models), each boxes (N_m, 4) xyxy, scores (N_m,),
labels (N_m,); a model weight w_m scales its scores. Boxes of different labels never mix.

- ``wbf``, weighted boxes fusion (Solovyev et al. 2021): boxes, best first, join the fused
  box they overlap most (IoU > t) or start a new one; a fused box is the score-weighted mean
  of its members, sum(s_i b_i) / sum(s_i), re-computed as members join. Its score is the
  mean member score rescaled by how many models agree (``conf_type``).
- ``nmw``, non-maximum weighted (Zhou et al. 2017): greedy NMS's keep set, each kept box
  replaced by the mean of the boxes it suppresses (each joins the kept box it overlaps
  most), weighted by s_i * IoU(b_i, kept); the score stays the kept box's.
- ``soft_nms`` (soft voting): every model's boxes pooled, their scores decayed by each
  better overlapping box, s *= exp(-IoU^2 / sigma) (or 1 - IoU above t), boxes above
  ``thresh`` kept; ``nms``: the plain greedy version.

All four equal the ``ensemble-boxes`` package (tests/ops/test_box_fusion.py), with three
deliberate differences: coordinates are not clipped to [0, 1] (fusion is scale-invariant,
so pixel boxes work; pass ``clip=(H, W)`` to clip), a box with x2 < x1 is an error rather
than silently swapped, and ``soft_nms`` returns the decayed scores (ensemble-boxes returns
the boxes it keeps with their undecayed scores). Score ties are ordered by input order.
Zero-area boxes are dropped, as there.

Returns numpy ``(boxes (K, 4) float64, scores (K,), labels (K,) int64)``, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.nms import batched_nms

__all__ = ["CONF_TYPES", "FUSION_METHODS", "fuse_boxes", "nms_fusion", "non_maximum_weighted",
           "soft_nms_fusion", "weighted_boxes_fusion"]  # fmt: skip

FUSION_METHODS = ("wbf", "nmw", "soft_nms", "nms")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
# Soft voting reuses ops.nms, whose IoU clamps the union at 1e-7 (unions of normalised
# boxes can be that small); IoU is scale-invariant, so boxes are scaled by 2**20 first
# (exact in binary floating point) and the clamp never bites.
_NMS_SCALE = float(2**20)

Boxes = Sequence[Any]


class _Pooled:
    """Every model's boxes in one table: box (P, 4), weighted score ws = s * w_m, model
    weight w, model index, label; sorted by ws descending (ties: input order)."""

    def __init__(self, boxes, scores, labels, weights, skip, clip) -> None:
        m = len(boxes)
        if not (len(scores) == len(labels) == m) or m == 0:
            raise DataError(
                f"box fusion needs one boxes/scores/labels list per model, got {len(boxes)}, "
                f"{len(scores)}, {len(labels)}"
            )
        w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(
                f"box fusion weights {list(np.atleast_1d(w))}: one non-negative number per "
                f"model ({m}), not all 0"
            )
        self.model_weights = w
        parts = [
            _as_model(i, b, s, lab) for i, (b, s, lab) in enumerate(zip(boxes, scores, labels))
        ]
        b = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts])
        lab = np.concatenate([p[2] for p in parts])
        model = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
        if clip is not None:
            h, wd = clip
            b = np.clip(b, 0, np.array([wd, h, wd, h], dtype=np.float64))
        keep = (s >= skip) & ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 0)
        b, s, lab, model = b[keep], s[keep], lab[keep], model[keep]
        ws = s * w[model]
        order = np.argsort(-ws, kind="stable")
        self.boxes, self.ws, self.labels = b[order], ws[order], lab[order]
        self.w, self.model, self.scores = w[model][order], model[order], s[order]


def _as_model(i: int, boxes, scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    s = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    b = b.reshape(-1, 4) if b.size == 0 else b
    if b.ndim != 2 or b.shape[1] != 4 or s.shape != (len(b),) or lab.shape != (len(b),):
        raise DataError(
            f"box fusion model {i}: boxes must be (N, 4) with scores and labels (N,), got "
            f"{b.shape}, {s.shape}, {lab.shape}"
        )
    if (b[:, 2:] < b[:, :2]).any():
        raise DataError(f"box fusion model {i}: a box has x2 < x1 or y2 < y1 (boxes are xyxy)")
    if not np.isfinite(b).all() or not np.isfinite(s).all():
        raise DataError(f"box fusion model {i}: boxes and scores must be finite")
    return b, s, lab.astype(np.int64)


def _iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with others (K, 4), no epsilon (exact at thresholds)."""
    wh = np.clip(np.minimum(box[2:], others[:, 2:]) - np.maximum(box[:2], others[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def _finish(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    return boxes[order].reshape(-1, 4), scores[order], labels[order].astype(np.int64)


def weighted_boxes_fusion(
    boxes: Boxes,
    scores: Boxes,
    labels: Boxes,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    allows_overflow: bool = False,
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion (module doc). With M models of weights w, a fused box of n
    members, weighted scores ws_i = s_i w_m(i) and member weights W_c = sum w_m(i):

    - ``avg``: sum(ws) / n * min(n, M) / sum(w) (``allows_overflow``: sum(ws) / sum(w));
    - ``max``: max(ws) / max(w);
    - ``box_and_model_avg``: sum(ws) / W_c * (sum of w over the distinct models) / sum(w);
    - ``absent_model_aware_avg``: sum(ws) / (W_c + sum of w over models absent from it).

    Boxes are visited best first and the loop is inherently sequential: each joins the
    fused box as it stands after the previous joins.
    """
    if conf_type not in CONF_TYPES:
        raise ConfigError(f"wbf conf_type={conf_type!r}; use one of {CONF_TYPES}")
    p = _Pooled(boxes, scores, labels, weights, skip_box_thr, clip)
    n_models, wsum = len(p.model_weights), p.model_weights.sum()
    k = len(p.boxes)
    fused = np.zeros((k, 4))  # current fused box of each cluster (first n_clusters rows)
    num = np.zeros((k, 4))  # sum ws_i * box_i
    den = np.zeros(k)  # sum ws_i
    wmax = np.zeros(k)  # max ws_i
    count = np.zeros(k, dtype=np.int64)
    lab = np.zeros(k, dtype=np.int64)
    owner = np.zeros(k, dtype=np.int64)  # cluster of each pooled box
    n = 0
    for j in range(k):
        c = -1
        if n:
            iou = _iou_one(p.boxes[j], fused[:n])
            iou[lab[:n] != p.labels[j]] = -1.0
            best = int(np.argmax(iou))
            c = best if iou[best] > iou_thr else -1
        if c < 0:
            c, n = n, n + 1
            lab[c] = p.labels[j]
        owner[j] = c
        num[c] += p.ws[j] * p.boxes[j]
        den[c] += p.ws[j]
        wmax[c] = max(wmax[c], p.ws[j])
        count[c] += 1
        fused[c] = num[c] / den[c]
    fused, den, wmax, count, lab = fused[:n], den[:n], wmax[:n], count[:n], lab[:n]
    if conf_type == "avg":
        s = den / wsum if allows_overflow else den / count * np.minimum(count, n_models) / wsum
    elif conf_type == "max":
        s = wmax / p.model_weights.max()
    else:
        present = np.zeros((n, n_models), dtype=bool)  # (clusters, models)
        present[owner, p.model] = True
        w_members = np.bincount(owner, weights=p.w, minlength=n)
        if conf_type == "box_and_model_avg":
            s = den / w_members * (present @ p.model_weights) / wsum
        else:  # absent_model_aware_avg
            s = den / (w_members + (~present) @ p.model_weights)
    return _finish(fused, s, lab)


def non_maximum_weighted(
    boxes: Boxes,
    scores: Boxes,
    labels: Boxes,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-maximum weighted (module doc); weights are divided by their maximum first.

    No loop over boxes: the kept boxes are greedy NMS's (a box starts a cluster iff no
    earlier kept box overlaps it by more than t), and every box joins the earlier kept box
    it overlaps most, one argmax over the (kept, P) IoU matrix.
    """
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and w.size and w.max() > 0:
        w = w / w.max()
    p = _Pooled(boxes, scores, labels, w, skip_box_thr, clip)
    if len(p.boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    keep = _greedy_keep(p, iou_thr)  # (K,) ascending = best first
    b = torch.from_numpy(p.boxes)
    iou = _pairwise_iou(b[keep], b).numpy()  # (K, P)
    pos = np.arange(len(p.boxes))
    cand = (
        (iou > iou_thr)
        & (keep[:, None] < pos[None, :])
        & (p.labels[keep][:, None] == p.labels[None, :])
    )
    cand[:, keep] = False
    cand[np.arange(len(keep)), keep] = True
    owner = np.argmax(np.where(cand, iou, -1.0), axis=0)  # (P,) first kept box of max IoU
    wgt = p.ws * iou[owner, pos]
    num = np.zeros((len(keep), 4))
    np.add.at(num, owner, wgt[:, None] * p.boxes)
    den = np.bincount(owner, weights=wgt, minlength=len(keep))
    return _finish(num / den[:, None], p.ws[keep], p.labels[keep])


def _pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K, 4), (P, 4) -> (K, P) IoU with no epsilon."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _greedy_keep(p: _Pooled, iou_thr: float) -> np.ndarray:
    """Positions (into the sorted pool) greedy class-aware NMS keeps, best first.

    torchvision's kernel, once per label (its IoU has no epsilon, so thresholds are exact),
    scored by rank so that its own sort cannot reorder ties.
    """
    b = torch.from_numpy(p.boxes)
    rank = torch.arange(len(b), 0, -1, dtype=torch.float64)
    keep = [
        idx[torchvision.ops.nms(b[idx], rank[idx], iou_thr)]
        for idx in (torch.from_numpy(np.flatnonzero(p.labels == c)) for c in np.unique(p.labels))
    ]
    return np.sort(torch.cat(keep).numpy()) if keep else np.zeros(0, dtype=np.int64)


def soft_nms_fusion(
    boxes: Boxes,
    scores: Boxes,
    labels: Boxes,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.5,
    sigma: float = 0.5,
    thresh: float = 0.001,
    decay: str = "gaussian",
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft voting over pooled boxes: scores s_i w_m / sum(w), class-aware Soft-NMS
    (``decay=gaussian``: s *= exp(-IoU^2 / sigma); ``linear``: s *= 1 - IoU where IoU > t), then
    the boxes whose decayed score is > ``thresh``. A box below ``thresh`` still decays the
    boxes after it, as in ensemble-boxes."""
    if decay not in ("gaussian", "linear"):
        raise ConfigError(f"soft_nms decay={decay!r}; use gaussian or linear")
    p = _pooled_for_nms(boxes, scores, labels, weights, clip)
    # ops.nms's linear decay applies at IoU >= t; ensemble-boxes' at IoU > t. The next
    # float64 above t turns one into the other exactly.
    thr = float(np.nextafter(iou_thr, np.inf)) if decay == "linear" else iou_thr
    res = batched_nms(
        torch.from_numpy(p.boxes * _NMS_SCALE),
        torch.from_numpy(p.ws),
        torch.from_numpy(p.labels),
        thr,
        "soft_" + decay,
        sigma=sigma,
    )
    keep, s = res.keep.numpy(), res.scores.numpy()
    ok = s > thresh
    return _finish(p.boxes[keep[ok]], s[ok], p.labels[keep[ok]])


def nms_fusion(
    boxes: Boxes,
    scores: Boxes,
    labels: Boxes,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.5,
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy class-aware NMS over every model's boxes, scores s_i w_m / sum(w)."""
    p = _pooled_for_nms(boxes, scores, labels, weights, clip)
    keep = _greedy_keep(p, iou_thr)
    return _finish(p.boxes[keep], p.ws[keep], p.labels[keep])


def _pooled_for_nms(boxes, scores, labels, weights, clip) -> _Pooled:
    """The pool with weights normalised to sum 1 (ensemble-boxes' NMS scaling)."""
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and w.size and w.sum() > 0 and (w >= 0).all():
        w = w / w.sum()  # as ensemble-boxes: no weights given means no scaling at all
    return _Pooled(boxes, scores, labels, w, float("-inf"), clip)


def fuse_boxes(
    method: str,
    boxes: Boxes,
    scores: Boxes,
    labels: Boxes,
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    **kw: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry point for :data:`FUSION_METHODS` (what ``cvcraft ensemble detect`` calls).
    ``skip_box_thr`` drops input boxes below it (for every method); ``kw`` goes to the
    method (``conf_type``, ``allows_overflow`` for wbf; ``sigma``, ``thresh``, ``decay``
    for soft_nms; ``clip`` for all)."""
    if method not in FUSION_METHODS:
        raise ConfigError(f"box fusion method={method!r}; use one of {FUSION_METHODS}")
    if skip_box_thr > 0 and method in ("soft_nms", "nms"):
        kept = [np.asarray(s, dtype=np.float64) >= skip_box_thr for s in scores]
        boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4)[k] for b, k in zip(boxes, kept)]
        scores = [np.asarray(s, dtype=np.float64)[k] for s, k in zip(scores, kept)]
        labels = [np.asarray(lab)[k] for lab, k in zip(labels, kept)]
    if method == "wbf":
        return weighted_boxes_fusion(boxes, scores, labels, weights, iou_thr, skip_box_thr, **kw)
    if method == "nmw":
        return non_maximum_weighted(boxes, scores, labels, weights, iou_thr, skip_box_thr, **kw)
    if method == "soft_nms":
        return soft_nms_fusion(boxes, scores, labels, weights, iou_thr, **kw)
    return nms_fusion(boxes, scores, labels, weights, iou_thr, **kw)
