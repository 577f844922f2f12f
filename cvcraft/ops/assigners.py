"""Label assignment: decide which priors (anchors, points, queries) learn which ground truth.

Every detector's training target comes from an assigner; the choice changes accuracy as much
as the architecture (ATSS's point). All assigners here work on one image, vectorized over
priors x gts, and return the same ``AssignResult`` (the task-aligned one is written once, for
a padded batch, ``batched_task_aligned_assign``; ``task_aligned_assign`` is its one-image view):

- ``max_iou_assign`` -- IoU thresholds (Faster R-CNN / RetinaNet; torchvision ``Matcher``).
- ``ssd_assign`` -- IoU threshold plus each gt's single best prior (SSD's matching).
- ``atss_assign`` -- adaptive IoU threshold from per-level centre-nearest candidates (ATSS).
- ``simota_assign`` -- YOLOX's dynamic-k optimal-transport approximation.
- ``task_aligned_assign`` -- TOOD / YOLOv8's ``score^alpha * IoU^beta`` alignment.
- ``hungarian_match`` -- DETR's one-to-one bipartite matching.

Boxes are absolute xyxy unless a function says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment

from cvcraft.errors import ConfigError
from cvcraft.ops.boxes import box_iou, elementwise_iou, generalized_box_iou
from cvcraft.structures import cxcywh_to_xyxy

__all__ = [
    "IGNORE",
    "NEGATIVE",
    "AssignResult",
    "TaskAlignedAssignment",
    "atss_assign",
    "batched_task_aligned_assign",
    "hungarian_match",
    "max_iou_assign",
    "simota_assign",
    "ssd_assign",
    "task_aligned_assign",
]

NEGATIVE = -1  # prior is background
IGNORE = -2  # prior takes part in no loss (between thresholds)


@dataclass
class AssignResult:
    """Per-prior outcome of an assigner, for one image with N priors and M gts.

    - ``gt_index`` (N,) int64: matched gt in [0, M), ``NEGATIVE`` (-1) or ``IGNORE`` (-2).
    - ``labels`` (N,) int64: class of the matched gt, -1 where not positive (or when the
      assigner was given no labels).
    - ``quality`` (N,) float: IoU of the prior (or its predicted box, for prediction-aware
      assigners) with its matched gt; for non-positives, the best IoU over gts (0 if M = 0).
    - ``num_gts``: M.
    - ``extras``: assigner-specific tensors, each (N,) -- e.g. TOOD's ``score_targets``.
    """

    gt_index: torch.Tensor
    labels: torch.Tensor
    quality: torch.Tensor
    num_gts: int
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def pos_mask(self) -> torch.Tensor:
        return self.gt_index >= 0

    @property
    def neg_mask(self) -> torch.Tensor:
        return self.gt_index == NEGATIVE

    @property
    def ignore_mask(self) -> torch.Tensor:
        return self.gt_index == IGNORE

    @property
    def num_pos(self) -> int:
        return int(self.pos_mask.sum())

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(prior indices, gt indices) of the positives, each (P,)."""
        idx = torch.nonzero(self.pos_mask).squeeze(1)
        return idx, self.gt_index[idx]


def _finish(
    gt_index: torch.Tensor,
    iou: torch.Tensor,
    gt_labels: torch.Tensor | None,
    extras: dict[str, torch.Tensor] | None = None,
) -> AssignResult:
    """Build an AssignResult from gt_index (N,) and the (N, M) IoU matrix."""
    n, m = iou.shape
    pos = gt_index >= 0
    safe = gt_index.clamp(min=0)
    if m == 0:
        quality = iou.new_zeros(n)
    else:
        best = iou.max(1).values
        quality = torch.where(pos, iou.gather(1, safe[:, None]).squeeze(1), best)
    labels = torch.full_like(gt_index, -1)
    if gt_labels is not None and m > 0:
        labels = torch.where(pos, gt_labels.to(gt_index)[safe], labels)
    return AssignResult(gt_index, labels, quality, m, extras or {})


def _check(name: str, boxes: torch.Tensor, what: str, cols: int = 4) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != cols:
        raise ConfigError(f"{name}: {what} must be (K, {cols}), got {tuple(boxes.shape)}")


def _centres(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 2) points strictly inside (M, 4) boxes -> (N, M) bool."""
    lt = points[:, None, :] - boxes[None, :, :2]
    rb = boxes[None, :, 2:] - points[:, None, :]
    return torch.cat([lt, rb], -1).amin(-1) > 0


# ----------------------------------------------------------------------------- max IoU


def max_iou_assign(
    priors: torch.Tensor,
    gts: torch.Tensor,
    pos_thr: float = 0.5,
    neg_thr: float = 0.4,
    min_pos_iou: float = 0.0,
    allow_low_quality: bool = True,
    gt_labels: torch.Tensor | None = None,
) -> AssignResult:
    """IoU-threshold assignment (Faster R-CNN RPN/RoI heads, RetinaNet).

    Each prior takes its highest-IoU gt: positive if IoU >= ``pos_thr``, negative if
    < ``neg_thr``, ignored in between. With ``allow_low_quality`` every gt also keeps the
    prior(s) that overlap it best (ties included, if that IoU >= ``min_pos_iou``), so no gt is
    left without a positive; such a prior is matched to *its own* best gt -- torchvision
    ``Matcher(allow_low_quality_matches=True)`` semantics, reproduced exactly.

    priors (N, 4), gts (M, 4) -> AssignResult with quality = max IoU.
    """
    _check("max_iou_assign", priors, "priors")
    _check("max_iou_assign", gts, "gts")
    if neg_thr > pos_thr:
        raise ConfigError(f"max_iou_assign: neg_thr {neg_thr} must be <= pos_thr {pos_thr}")
    n, m = len(priors), len(gts)
    if m == 0 or n == 0:
        return _finish(
            torch.full((n,), NEGATIVE, dtype=torch.int64, device=priors.device),
            priors.new_zeros((n, m)),
            gt_labels,
        )
    iou = box_iou(gts, priors)  # (M, N): max over dim 0 like the torchvision Matcher
    best_iou, best_gt = iou.max(0)  # (N,)
    gt_index = best_gt.clone()
    gt_index[best_iou < pos_thr] = IGNORE
    gt_index[best_iou < neg_thr] = NEGATIVE
    if allow_low_quality:
        per_gt = iou.max(1).values  # (M,)
        keep = (iou == per_gt[:, None]) & (per_gt >= min_pos_iou)[:, None]  # (M, N)
        rescue = keep.any(0)
        gt_index[rescue] = best_gt[rescue]
    return _finish(gt_index, iou.T, gt_labels)


def ssd_assign(
    priors: torch.Tensor,
    gts: torch.Tensor,
    iou_thr: float = 0.5,
    gt_labels: torch.Tensor | None = None,
) -> AssignResult:
    """SSD's matching (Liu et al. 2016, 2.2): each prior takes its best gt if their IoU is
    >= ``iou_thr`` (else it is negative; nothing is ignored), then each gt takes its single
    best prior, overriding that prior's own choice, so every gt has a positive.

    torchvision's ``SSDMatcher`` exactly (its ties: the first prior of the best; a prior that
    is two gts' best goes to the later gt). priors (N, 4), gts (M, 4) -> AssignResult.
    """
    _check("ssd_assign", priors, "priors")
    _check("ssd_assign", gts, "gts")
    n, m = len(priors), len(gts)
    if m == 0 or n == 0:
        return _finish(
            torch.full((n,), NEGATIVE, dtype=torch.int64, device=priors.device),
            priors.new_zeros((n, m)),
            gt_labels,
        )
    iou = box_iou(gts, priors)  # (M, N)
    best_iou, best_gt = iou.max(0)  # (N,)
    gt_index = torch.where(best_iou >= iou_thr, best_gt, torch.full_like(best_gt, NEGATIVE))
    gt_index[iou.max(1).indices] = torch.arange(m, device=priors.device)
    return _finish(gt_index, iou.T, gt_labels)


# ----------------------------------------------------------------------------- ATSS


def atss_assign(
    anchors: torch.Tensor,
    num_anchors_per_level: Sequence[int],
    gts: torch.Tensor,
    topk: int = 9,
    gt_labels: torch.Tensor | None = None,
) -> AssignResult:
    """Adaptive Training Sample Selection (Zhang et al. 2020).

    For each gt: on every pyramid level take the ``topk`` anchors whose centres are nearest
    the gt centre; the IoU threshold is ``mean + std`` (unbiased std) of those candidates'
    IoUs; a candidate is positive if its IoU >= threshold and its centre lies strictly inside
    the gt. An anchor positive for several gts goes to the one it overlaps most.

    anchors (N, 4) concatenated level by level, ``num_anchors_per_level`` summing to N.
    """
    _check("atss_assign", anchors, "anchors")
    _check("atss_assign", gts, "gts")
    if sum(num_anchors_per_level) != len(anchors):
        raise ConfigError(
            f"atss_assign: num_anchors_per_level {list(num_anchors_per_level)} sums to "
            f"{sum(num_anchors_per_level)} but there are {len(anchors)} anchors"
        )
    n, m = len(anchors), len(gts)
    iou = box_iou(anchors, gts) if m and n else anchors.new_zeros((n, m))  # (N, M)
    gt_index = torch.full((n,), NEGATIVE, dtype=torch.int64, device=anchors.device)
    if m == 0 or n == 0:
        return _finish(gt_index, iou, gt_labels)
    # exact pairwise distances: the matmul shortcut could reorder near-equal candidates
    dist = torch.cdist(
        _centres(anchors), _centres(gts), compute_mode="donot_use_mm_for_euclid_dist"
    )  # (N, M)
    candidates = []
    start = 0
    for count in num_anchors_per_level:  # a handful of levels, each a single topk
        k = min(topk, count)
        if k:
            candidates.append(
                dist[start : start + count].topk(k, dim=0, largest=False).indices + start
            )
        start += count
    cand = torch.cat(candidates)  # (sum_k, M) anchor indices per gt
    cand_iou = iou.gather(0, cand)  # (sum_k, M)
    thr = cand_iou.mean(0) + cand_iou.std(0)  # (M,)
    is_pos = (cand_iou >= thr[None]) & _inside(_centres(anchors), gts).gather(0, cand)
    pos = torch.zeros((n, m), dtype=torch.bool, device=anchors.device)
    pos.scatter_(0, cand, is_pos)
    masked = torch.where(pos, iou, iou.new_full((), -1.0))
    best_val, best_gt = masked.max(1)
    gt_index = torch.where(best_val >= 0, best_gt, gt_index)
    return _finish(gt_index, iou, gt_labels)


# ----------------------------------------------------------------------------- SimOTA


def _bce_cost(scores: torch.Tensor, gt_labels: torch.Tensor) -> torch.Tensor:
    """Sum over classes of BCE(scores, one_hot(gt)), for every prior x gt: (N,C),(M,) -> (N,M).

    ``sum_c BCE = sum_c -log(1 - p_c) + [log(1 - p_g) - log(p_g)]``: one (N,) sum plus a
    gather, instead of materialising (N, M, C). Logs clamp at -100 like ``F.binary_cross_entropy``.
    """
    log_p = torch.log(scores).clamp(min=-100)
    log_1p = torch.log1p(-scores).clamp(min=-100)
    neg_all = -log_1p.sum(1, keepdim=True)  # (N, 1)
    return neg_all + log_1p[:, gt_labels] - log_p[:, gt_labels]


def simota_assign(
    pred_scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    priors_centres: torch.Tensor,
    gts: torch.Tensor,
    gt_labels: torch.Tensor,
    *,
    strides: torch.Tensor | float,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> AssignResult:
    """YOLOX SimOTA (Ge et al. 2021): dynamic-k, least-cost assignment of predictions.

    Candidates are priors whose centre lies in some gt box or within ``center_radius *
    stride`` of some gt centre; others are negative. Cost per (prior, gt):
    ``cls_weight * sum_c BCE(score, one_hot) + iou_weight * -log(IoU + 1e-8)`` plus 1e5 unless
    the prior is both in the box and in the centre region. Each gt takes its
    ``k = max(1, int(sum of its top-``candidate_topk`` candidate IoUs))`` cheapest priors; a
    prior claimed by several gts keeps the cheapest.

    pred_scores (N, C) probabilities (e.g. cls * obj), pred_boxes (N, 4), priors_centres (N, 2),
    strides (N,) or scalar, gts (M, 4), gt_labels (M,).
    """
    _check("simota_assign", pred_boxes, "pred_boxes")
    _check("simota_assign", gts, "gts")
    _check("simota_assign", priors_centres, "priors_centres", cols=2)
    n, m = len(pred_boxes), len(gts)
    gt_index = torch.full((n,), NEGATIVE, dtype=torch.int64, device=pred_boxes.device)
    if m == 0 or n == 0:
        return _finish(gt_index, pred_boxes.new_zeros((n, m)), gt_labels)
    stride = torch.as_tensor(strides, dtype=priors_centres.dtype, device=priors_centres.device)
    radius = (center_radius * stride).expand(n)[:, None]  # (N, 1)
    in_box = _inside(priors_centres, gts)  # (N, M)
    off = (priors_centres[:, None, :] - _centres(gts)[None]).abs()  # (N, M, 2)
    in_ctr = (off < radius[..., None]).all(-1)  # within radius * stride of the gt centre
    valid = (in_box | in_ctr).any(1)  # (N,)
    iou = box_iou(pred_boxes, gts)  # (N, M)
    vidx = torch.nonzero(valid).squeeze(1)
    if len(vidx) == 0:
        return _finish(gt_index, iou, gt_labels)
    v_iou = iou[vidx]  # (V, M)
    cost = (
        cls_weight * _bce_cost(pred_scores[vidx].to(v_iou.dtype), gt_labels)
        + iou_weight * -torch.log(v_iou + 1e-8)
        + 1e5 * (~(in_box[vidx] & in_ctr[vidx])).to(v_iou.dtype)
    )  # (V, M)
    k_iou = min(candidate_topk, len(vidx))
    dynamic_k = v_iou.topk(k_iou, dim=0).values.sum(0).int().clamp(min=1)  # (M,)
    order = cost.argsort(dim=0, stable=True)  # (V, M) cheapest first per gt
    rank = torch.empty_like(order).scatter_(
        0, order, torch.arange(len(vidx), device=order.device)[:, None].expand_as(order)
    )
    chosen = rank < dynamic_k[None]  # (V, M)
    masked = torch.where(chosen, cost, cost.new_full((), float("inf")))
    best_cost, best_gt = masked.min(1)
    gt_index[vidx] = torch.where(torch.isfinite(best_cost), best_gt, NEGATIVE)
    return _finish(gt_index, iou, gt_labels)


# ----------------------------------------------------------------------------- TOOD


class TaskAlignedAssignment(NamedTuple):
    """Batched task-aligned assignment: per image b and prior n, ``gt_index`` (B, N) int64
    (-1 = background), ``score_targets`` t_hat (B, N) and the positives' raw ``align_metric``
    t (B, N), both 0 for negatives."""

    gt_index: torch.Tensor
    score_targets: torch.Tensor
    align_metric: torch.Tensor


@torch.no_grad()
def batched_task_aligned_assign(
    pred_scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchor_points: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_mask: torch.Tensor,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
) -> TaskAlignedAssignment:
    """Task-aligned assignment (TOOD, Feng et al. 2021; YOLOv8) for a padded batch.

    Alignment ``t = s^alpha * u^beta`` with s the predicted score of the gt's class and u the
    IoU of the predicted box with the gt, counted only for anchor points strictly inside the
    gt. Each gt takes the ``topk`` anchors by t (still inside it, with t > 0, where YOLOv8
    would also keep zero-t anchors when fewer than topk overlap); an anchor claimed by several
    gts goes to the claimant of highest IoU. Classification targets are normalized so each
    gt's best positive gets that gt's best IoU: ``t_hat = t / max_pos(t) * max_pos(u)``.

    pred_scores (B, N, C) probabilities, pred_boxes (B, N, 4), anchor_points (N, 2),
    gt_boxes (B, M, 4), gt_labels (B, M), gt_mask (B, M) bool (False = padding row).
    """
    b, n, _ = pred_boxes.shape
    m = gt_boxes.shape[1]
    if m == 0 or n == 0:
        zeros = pred_boxes.new_zeros(b, n)
        none = torch.full((b, n), NEGATIVE, dtype=torch.int64, device=pred_boxes.device)
        return TaskAlignedAssignment(none, zeros, zeros.clone())
    lt = anchor_points[None, :, None] - gt_boxes[:, None, :, :2]  # (B, N, M, 2)
    rb = gt_boxes[:, None, :, 2:] - anchor_points[None, :, None]
    inside = (torch.minimum(lt.amin(-1), rb.amin(-1)) > 0) & gt_mask[:, None, :]  # (B, N, M)
    # IoU and alignment only where they can be non-zero: the anchor-in-gt pairs are a small
    # fraction of B x N x M, which keeps time and memory flat at 640 px with many objects
    bi, ni, mi = inside.nonzero(as_tuple=True)
    iou = pred_boxes.new_zeros(b, n, m)
    metric = pred_boxes.new_zeros(b, n, m)
    pair_iou = elementwise_iou(pred_boxes[bi, ni], gt_boxes[bi, mi]).clamp(min=0)
    pair_score = pred_scores[bi, ni, gt_labels[bi, mi]].to(pair_iou.dtype)
    iou[bi, ni, mi] = pair_iou
    metric[bi, ni, mi] = pair_score.pow(alpha) * pair_iou.pow(beta)
    top = metric.topk(min(topk, n), dim=1).indices  # (B, k, M)
    pos = torch.zeros_like(inside).scatter_(1, top, True) & inside & (metric > 0)
    multi = pos.sum(2) > 1  # anchors claimed by several gts keep the highest-IoU one
    best = torch.where(pos, iou, iou.new_full((), -1.0)).argmax(2)  # (B, N)
    one = torch.zeros_like(pos).scatter_(2, best[..., None], True)
    pos = torch.where(multi[..., None], one, pos)
    gt_index = torch.where(pos.any(2), pos.to(torch.uint8).argmax(2), NEGATIVE)  # (B, N)
    metric_pos, iou_pos = metric * pos, iou * pos
    scale = iou_pos.amax(1, keepdim=True) / (metric_pos.amax(1, keepdim=True) + eps)  # (B,1,M)
    return TaskAlignedAssignment(gt_index, (metric_pos * scale).amax(2), metric_pos.amax(2))


def task_aligned_assign(
    pred_scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchor_points: torch.Tensor,
    gts: torch.Tensor,
    gt_labels: torch.Tensor,
    topk: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
    eps: float = 1e-9,
) -> AssignResult:
    """:func:`batched_task_aligned_assign` on one image, as an ``AssignResult``:
    ``extras["score_targets"]`` is t_hat and ``extras["align_metric"]`` the raw t.

    pred_scores (N, C) probabilities, pred_boxes (N, 4), anchor_points (N, 2), gts (M, 4),
    gt_labels (M,).
    """
    _check("task_aligned_assign", pred_boxes, "pred_boxes")
    _check("task_aligned_assign", gts, "gts")
    _check("task_aligned_assign", anchor_points, "anchor_points", cols=2)
    mask = torch.ones(1, len(gts), dtype=torch.bool, device=gts.device)
    r = batched_task_aligned_assign(
        pred_scores[None], pred_boxes[None], anchor_points, gts[None], gt_labels[None], mask,
        topk, alpha, beta, eps,
    )  # fmt: skip
    extras = {"score_targets": r.score_targets[0], "align_metric": r.align_metric[0]}
    return _finish(r.gt_index[0], box_iou(pred_boxes, gts), gt_labels, extras)


# ----------------------------------------------------------------------------- DETR


def hungarian_match(
    pred_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> AssignResult:
    """DETR bipartite matching (Carion et al. 2020): a one-to-one, minimum-cost query<->gt map.

    Cost per (query, gt): ``-cost_class * softmax(logits)[gt class] + cost_bbox * L1(cxcywh)
    - cost_giou * GIoU(xyxy)``; solved exactly by the Hungarian algorithm (scipy
    ``linear_sum_assignment``). Unmatched queries are ``NEGATIVE`` (they learn "no object").

    pred_logits (Q, C+1) incl. the no-object class, pred_boxes (Q, 4) and gt_boxes (M, 4)
    normalized cxcywh, gt_labels (M,). ``extras["cost"]`` is each query's matched cost.
    """
    _check("hungarian_match", pred_boxes, "pred_boxes")
    _check("hungarian_match", gt_boxes, "gt_boxes")
    q, m = len(pred_boxes), len(gt_boxes)
    gt_index = torch.full((q,), NEGATIVE, dtype=torch.int64, device=pred_boxes.device)
    cost_out = pred_boxes.new_zeros(q)
    if m == 0 or q == 0:
        return _finish(gt_index, pred_boxes.new_zeros((q, m)), gt_labels, {"cost": cost_out})
    pxy, gxy = cxcywh_to_xyxy(pred_boxes), cxcywh_to_xyxy(gt_boxes)
    prob = pred_logits.softmax(-1)[:, gt_labels]  # (Q, M)
    cost = (
        -cost_class * prob
        + cost_bbox * torch.cdist(pred_boxes, gt_boxes.to(pred_boxes.dtype), p=1)
        - cost_giou * generalized_box_iou(pxy, gxy)
    )  # (Q, M)
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    rows_t = torch.as_tensor(rows, dtype=torch.int64, device=pred_boxes.device)
    cols_t = torch.as_tensor(cols, dtype=torch.int64, device=pred_boxes.device)
    gt_index[rows_t] = cols_t
    cost_out[rows_t] = cost.detach()[rows_t, cols_t]
    return _finish(gt_index, box_iou(pxy, gxy), gt_labels, {"cost": cost_out})
