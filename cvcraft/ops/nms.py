"""Non-maximum suppression, the whole family behind one entry point.

``nms(boxes, scores, iou_threshold, method=...)`` and its class-aware twin ``batched_nms``
return an :class:`NMSResult`: the kept indices sorted by final score (descending), their
final scores (decayed for Soft-/Matrix-NMS) and their boxes (merged for weighted NMS).

Methods, boxes (N, 4) xyxy and scores (N,):

- ``greedy``: keep the best box, drop every box with IoU > t, repeat (torchvision's kernel).
- ``soft_linear`` / ``soft_gaussian`` (Bodla et al. 2017): instead of dropping, decay the
  scores of overlapping boxes, s *= 1 - IoU if IoU >= t, or s *= exp(-IoU^2 / sigma).
- ``fast`` (YOLACT, Bolya et al. 2019): one matrix op: drop box j if any higher-scored box,
  kept or not, has IoU > t with it. Suppresses at least as much as greedy.
- ``matrix`` (SOLOv2, Wang et al. 2020): parallel Soft-NMS, s_j *= min_i f(IoU_ij) /
  f(max_k IoU_ki) over higher-scored i, f(x) = exp(-x^2 / sigma) or 1 - x (``kernel``).
- ``diou`` (Zheng et al. 2020): greedy with DIoU in place of IoU, so boxes with distant
  centres (occluded neighbours) survive.
- ``weighted``: greedy keep set, each kept box replaced by the average of its cluster
  (itself and the boxes it suppressed) weighted by score * IoU with the kept box.

``multiclass_nms`` is a detector's whole per-image post-processing on top of
``batched_nms``: per-class score threshold, clip, drop tiny boxes, class-aware NMS, cap.
Its method is the one ``postprocess_nms(name)`` selects (a context manager; greedy outside
one), so the detect task's ``nms=`` reaches every detector without a new ``postprocess``
argument; ``POSTPROCESS_NMS`` names the choices (``soft`` = Soft-NMS, Gaussian).

Class-aware greedy/weighted NMS shift each class's boxes apart (the coordinate-offset trick)
so one torchvision call never compares different classes; the methods that compute IoU
themselves zero cross-class IoU with a label mask instead, which is exact where large
offsets would cost float32 precision.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.ops.boxes import box_iou, clip_boxes, elementwise_iou

__all__ = [
    "NMS_METHODS",
    "POSTPROCESS_NMS",
    "NMSResult",
    "batched_nms",
    "multiclass_nms",
    "nms",
    "postprocess_method",
    "postprocess_nms",
]

NMS_METHODS = (
    "greedy",
    "soft_linear",
    "soft_gaussian",
    "fast",
    "matrix",
    "diou",
    "weighted",
)
MATRIX_KERNELS = ("gaussian", "linear")
IOU_BLOCK_ROWS = 512  # rows of the (n, n) IoU matrix Fast/Matrix NMS hold at once
# The detect task's nms= choices -> NMS_METHODS ("soft" is the Gaussian Soft-NMS of the paper)
POSTPROCESS_NMS = {m: m for m in NMS_METHODS} | {"soft": "soft_gaussian"}
_POSTPROCESS_METHOD: contextvars.ContextVar[str] = contextvars.ContextVar(
    "postprocess_nms", default="greedy"
)


@contextlib.contextmanager
def postprocess_nms(name: str) -> Iterator[str]:
    """Within the block, ``multiclass_nms`` (every detector's post-processing) uses the
    NMS method ``name`` (a key of :data:`POSTPROCESS_NMS`); yields the method."""
    if name not in POSTPROCESS_NMS:
        raise ConfigError(f"nms={name!r}: use one of {', '.join(POSTPROCESS_NMS)}")
    token = _POSTPROCESS_METHOD.set(POSTPROCESS_NMS[name])
    try:
        yield POSTPROCESS_NMS[name]
    finally:
        _POSTPROCESS_METHOD.reset(token)


def postprocess_method() -> str:
    """The NMS method ``postprocess_nms`` selected here (greedy outside any block), for
    detectors that call ``batched_nms`` themselves rather than ``multiclass_nms``."""
    return _POSTPROCESS_METHOD.get()


class NMSResult(NamedTuple):
    """What survives NMS, best first: ``keep`` (K,) int64 indices into the input boxes,
    ``scores`` (K,) final scores, ``boxes`` (K, 4) final boxes."""

    keep: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.5,
    method: str = "greedy",
    *,
    score_threshold: float = 0.0,
    max_det: int | None = None,
    sigma: float = 0.5,
    kernel: str = "gaussian",
    top_k: int | None = None,
) -> NMSResult:
    """Suppress overlapping boxes with one of :data:`NMS_METHODS` (see the module doc).

    boxes (N, 4) xyxy, scores (N,). Boxes scoring below ``score_threshold`` are dropped first
    and, for Soft-/Matrix-NMS, again once their decayed score falls below it (Bodla et al.
    use 0.001). ``top_k`` keeps only the best k candidates before suppression (YOLACT and
    SOLOv2 do this to bound the (k, k) IoU matrix); ``max_det`` caps the output. ``sigma``
    is the Gaussian width of ``soft_gaussian`` and ``matrix``; ``kernel`` picks Matrix-NMS's
    decay. ``iou_threshold`` is unused by ``soft_gaussian`` and ``matrix``.
    """
    return _nms(
        boxes, scores, None, iou_threshold, method, score_threshold, max_det, sigma, kernel, top_k
    )


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float = 0.5,
    method: str = "greedy",
    *,
    class_agnostic: bool = False,
    score_threshold: float = 0.0,
    max_det: int | None = None,
    sigma: float = 0.5,
    kernel: str = "gaussian",
    top_k: int | None = None,
) -> NMSResult:
    """:func:`nms` run independently per class label (N,), in one call.

    Boxes of different labels never suppress each other, unless ``class_agnostic``. The
    result still interleaves all classes by score; ``top_k``/``max_det`` count all classes.
    """
    if labels.shape != scores.shape:
        raise ValueError(
            f"batched_nms labels shape {tuple(labels.shape)} must match scores "
            f"{tuple(scores.shape)}"
        )
    return _nms(
        boxes, scores, None if class_agnostic else labels, iou_threshold, method,
        score_threshold, max_det, sigma, kernel, top_k,
    )  # fmt: skip


def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
    image_size: tuple[int, int] | None = None,
    pre_nms_top_k: int = 10_000,
    min_size: float = 0.0,
    method: str | None = None,
    return_index: bool = False,
) -> dict[str, torch.Tensor]:
    """One image's detections from per-class scores: threshold, class-aware NMS, cap.

    ``boxes`` (N, 4) shared by all classes or (N, C, 4) one per class (Fast R-CNN);
    ``scores`` (N, C). Every (box, class) pair scoring above ``conf`` is a candidate (so one
    box may be reported for two classes, as in torchvision/ultralytics multi-label mode);
    boxes are clipped to ``image_size`` (H, W) when given, then boxes with a side below
    ``min_size`` pixels are dropped. ``method`` is one of :data:`NMS_METHODS` (default: the
    one ``postprocess_nms`` set, else greedy); Soft-/Matrix-NMS drop boxes whose decayed
    score falls to ``conf`` or below. Returns ``{"boxes" (K, 4), "scores" (K,), "labels" (K,)
    int64}`` sorted by score; ``return_index`` adds ``"index"`` (K,), the row of ``scores``
    each came from (a YOLO-seg cell's mask coefficients).
    """
    method = method or _POSTPROCESS_METHOD.get()
    idx, cls = torch.nonzero(scores > conf, as_tuple=True)  # (P,), (P,)
    s = scores[idx, cls]
    b = boxes[idx, cls] if boxes.ndim == 3 else boxes[idx]  # (P, 4)
    if image_size is not None:
        b = clip_boxes(b, image_size[0], image_size[1])
    if min_size > 0:
        big = ((b[:, 2:] - b[:, :2]) >= min_size).all(1)
        b, s, cls, idx = b[big], s[big], cls[big], idx[big]
    res = batched_nms(b, s, cls, iou, method, max_det=max_det, top_k=pre_nms_top_k)
    keep, out_s, out_b = res.keep, res.scores, res.boxes
    if method.startswith("soft") or method == "matrix":  # decayed to the threshold: gone
        above = out_s > conf
        keep, out_s, out_b = keep[above], out_s[above], out_b[above]
    out = {"boxes": out_b, "scores": out_s, "labels": cls[keep].to(torch.int64)}
    if return_index:
        out["index"] = idx[keep]
    return out


def _nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    iou_threshold: float,
    method: str,
    score_threshold: float,
    max_det: int | None,
    sigma: float,
    kernel: str,
    top_k: int | None,
) -> NMSResult:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"nms boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms scores must be (N,)={boxes.shape[0]}, got {tuple(scores.shape)}")
    if method not in NMS_METHODS:
        raise ConfigError(f"unknown NMS method {method!r}; use one of {NMS_METHODS}")
    if kernel not in MATRIX_KERNELS:
        raise ConfigError(f"unknown Matrix-NMS kernel {kernel!r}; use one of {MATRIX_KERNELS}")
    if sigma <= 0:
        raise ConfigError(f"NMS sigma must be > 0, got {sigma}")

    # Candidates: above the score threshold, at most top_k of them, best first.
    cand = torch.nonzero(scores >= score_threshold).squeeze(1)
    order = torch.sort(scores[cand], descending=True, stable=True).indices
    cand = cand[order[:top_k] if top_k is not None else order]  # (n,) sorted by score
    b, s = boxes[cand], scores[cand]
    lab = labels[cand] if labels is not None else None

    if method == "greedy":
        keep = _greedy(b, s, lab, iou_threshold)
        out_s, out_b = s[keep], b[keep]
    elif method in ("soft_linear", "soft_gaussian"):
        keep, out_s = _soft(b, s, lab, iou_threshold, sigma, score_threshold, method)
        out_b = b[keep]
    elif method == "fast":
        keep = _fast(b, lab, iou_threshold)
        out_s, out_b = s[keep], b[keep]
    elif method == "matrix":
        keep, out_s = _matrix(b, s, lab, sigma, kernel, score_threshold)
        out_b = b[keep]
    elif method == "diou":
        keep = _diou(b, lab, iou_threshold)
        out_s, out_b = s[keep], b[keep]
    else:  # weighted
        keep, out_b = _weighted(b, s, lab, iou_threshold)
        out_s = s[keep]
    if max_det is not None:
        keep, out_s, out_b = keep[:max_det], out_s[:max_det], out_b[:max_det]
    return NMSResult(cand[keep], out_s, out_b)


# Every helper below takes candidates already sorted by score (descending, ties by input
# order) and returns positions into that order, best first.


def _same_label(labels: torch.Tensor | None, i: int) -> torch.Tensor | None:
    """(n,) mask of boxes sharing box i's label, or None when NMS is class-agnostic."""
    return None if labels is None else labels == labels[i]


def _class_offsets(boxes: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Shift each class by label * (extent + 1) so boxes of different classes never overlap."""
    if labels is None or boxes.numel() == 0:
        return boxes
    extent = boxes.max() - boxes.min() + 1  # robust to negative coordinates
    return boxes + (labels.to(boxes) * extent)[:, None]


# Above this many candidates class-aware greedy NMS runs once per class: one call over all
# classes (coordinate offsets) costs O(n^2) in the total count, per-class calls O(sum n_c^2).
# torchvision's ``batched_nms`` switches at the same count on the CPU (4,000 coordinates).
PER_CLASS_ABOVE = 1000


def _greedy(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, thr: float
) -> torch.Tensor:
    if labels is None or len(boxes) <= PER_CLASS_ABOVE:
        return torchvision.ops.nms(_class_offsets(boxes, labels), scores, thr)
    keep = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).squeeze(1)  # ascending: this class's score order
        keep.append(idx[torchvision.ops.nms(boxes[idx], scores[idx], thr)])
    # candidates come sorted by score, so ascending positions are the best-first order
    return torch.cat(keep).sort().values


def _soft(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    thr: float,
    sigma: float,
    score_threshold: float,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS: pick the best remaining box, decay all the others in one op, repeat.

    The picks come out in final-score order: each was the maximum of scores that only
    decrease afterwards, and a picked score is frozen.
    """
    n = len(scores)
    s = scores.clone()
    alive = torch.ones(n, dtype=torch.bool, device=scores.device)
    pos = torch.arange(n, device=scores.device)  # working slot -> candidate position
    picked: list[torch.Tensor] = []
    picked_scores: list[torch.Tensor] = []
    neg_inf = torch.tensor(float("-inf"), dtype=s.dtype, device=s.device)
    for step in range(n):
        # Every so often drop picked and below-floor boxes from the working set, so later
        # steps cost O(remaining) rather than O(n).
        if step % 32 == 31 and 2 * int(alive.sum()) < len(alive):
            boxes, s, pos = boxes[alive], s[alive], pos[alive]
            labels = labels[alive] if labels is not None else None
            alive = alive[alive]
        i = int(torch.where(alive, s, neg_inf).argmax())
        if not alive[i]:
            break
        picked.append(pos[i])
        picked_scores.append(s[i].clone())
        alive[i] = False
        iou = elementwise_iou(boxes[i], boxes)  # (remaining,)
        same = _same_label(labels, i)
        if same is not None:
            iou = iou * same
        if method == "soft_linear":
            decay = torch.where(iou >= thr, 1 - iou, torch.ones_like(iou))
        else:
            decay = torch.exp(-(iou**2) / sigma)
        s = s * decay  # picked scores were recorded above, so decaying them is harmless
        alive &= s >= score_threshold
    if not picked:
        return pos[:0], scores[:0]
    return torch.stack(picked), torch.stack(picked_scores)


def _upper_iou_blocks(
    boxes: torch.Tensor, labels: torch.Tensor | None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (r0, r1, iou) with iou (r1 - r0, n - r0) = IoU of higher-scored rows i in
    [r0, r1) with boxes j >= r0, zeroed where j <= i and across classes.

    Row blocks of the upper triangle: half the work of the full (n, n) matrix, and memory
    bounded by block * n, which is what keeps 10k-box Fast/Matrix NMS practical.
    """
    n, block = len(boxes), IOU_BLOCK_ROWS
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        iou = box_iou(boxes[r0:r1], boxes[r0:]).triu_(diagonal=1)  # j > i within the block
        if labels is not None:
            iou = iou * (labels[r0:r1, None] == labels[None, r0:])
        yield r0, r1, iou


def _max_iou_from_above(boxes: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """(n,) max_i IoU_ij over higher-scored boxes i < j (0 for the best box)."""
    cmax = boxes.new_zeros(len(boxes))
    for r0, _, iou in _upper_iou_blocks(boxes, labels):
        cmax[r0:] = torch.maximum(cmax[r0:], iou.amax(dim=0))
    return cmax


def _fast(boxes: torch.Tensor, labels: torch.Tensor | None, thr: float) -> torch.Tensor:
    """Fast NMS: box j survives iff no higher-scored box (suppressed or not) has IoU > t."""
    return torch.nonzero(_max_iou_from_above(boxes, labels) <= thr).squeeze(1)


def _matrix(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    sigma: float,
    kernel: str,
    score_threshold: float,
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix NMS: decay_j = min_i f(IoU_ij) / f(cmax_i), cmax_i = max_k IoU_ki (k < i).

    Dividing by f(cmax_i) compensates for box i itself being likely suppressed: a box that
    overlaps a much better one should not suppress others strongly. Pairs with i >= j give
    f(0) / f(cmax_i) >= 1 and the best box gives f(IoU_0j) <= 1, so taking the min over the
    whole zero-filled block is the min over higher-scored boxes. For the Gaussian,
    min_i exp(-(IoU_ij^2 - cmax_i^2) / sigma) = exp(-max_i (IoU_ij^2 - cmax_i^2) / sigma),
    so the exponential is taken once per box instead of once per pair.
    """
    cmax = _max_iou_from_above(boxes, labels)  # (n,)
    gaussian = kernel == "gaussian"
    acc = scores.new_full((len(boxes),), float("-inf") if gaussian else float("inf"))
    for r0, r1, iou in _upper_iou_blocks(boxes, labels):
        c = cmax[r0:r1, None]  # (rows, 1): the compensation of each suppressing row
        if gaussian:
            acc[r0:] = torch.maximum(acc[r0:], (iou**2 - c**2).amax(dim=0))
        else:
            acc[r0:] = torch.minimum(acc[r0:], ((1 - iou) / (1 - c).clamp(min=eps)).amin(dim=0))
    decay = torch.exp(-acc / sigma) if gaussian else acc
    decayed = scores * decay  # (n,)
    keep = torch.nonzero(decayed >= score_threshold).squeeze(1)
    order = torch.sort(decayed[keep], descending=True, stable=True).indices
    return keep[order], decayed[keep[order]]


def _diou(boxes: torch.Tensor, labels: torch.Tensor | None, thr: float) -> torch.Tensor:
    """Greedy NMS with DIoU: take the best remaining box, drop the rest it suppresses (one
    tensor op), repeat; the working set shrinks with every kept box."""
    pos = torch.arange(len(boxes), device=boxes.device)  # candidate position of each row
    picked: list[torch.Tensor] = []
    while len(pos):
        picked.append(pos[0])
        survive = elementwise_iou(boxes[0], boxes[1:], "diou") <= thr
        if labels is not None:
            survive |= labels[1:] != labels[0]
            labels = labels[1:][survive]
        boxes, pos = boxes[1:][survive], pos[1:][survive]
    return torch.stack(picked) if picked else pos


def _weighted(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, thr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted NMS: greedy's keep set, each kept box the score*IoU-weighted mean of its cluster.

    No loop is needed: in greedy order, box j is suppressed by the *first* kept box before
    it with IoU > t, so its cluster is found by one argmax over a (kept, n) mask.
    """
    keep = _greedy(boxes, scores, labels, thr)  # (k,) positions, ascending = by score
    n, k = len(boxes), len(keep)
    if k == 0:
        return keep, boxes[:0]
    iou = box_iou(boxes[keep], boxes)  # (k, n)
    if labels is not None:
        iou = iou * (labels[keep][:, None] == labels[None, :])
    pos = torch.arange(n, device=boxes.device)
    member = (iou > thr) & (keep[:, None] < pos[None, :])  # kept box ranks before box j
    member[:, keep] = False  # a kept box is nobody's member but its own
    member[torch.arange(k, device=boxes.device), keep] = True
    owner = member.to(torch.uint8).argmax(dim=0)  # (n,) first (best) kept box claiming j
    # (n,) score * IoU with the owner (s for a kept box); the member factor zeroes a box no
    # kept box claims, which only float rounding at exactly IoU == t could produce.
    w = scores * iou[owner, pos] * member[owner, pos]
    num = torch.zeros(k, 4, dtype=boxes.dtype, device=boxes.device)
    num.index_add_(0, owner, w[:, None] * boxes)
    den = torch.zeros(k, dtype=boxes.dtype, device=boxes.device).index_add_(0, owner, w)
    # A kept box with zero score would give 0/0; it then keeps its own coordinates.
    merged = torch.where(den[:, None] > 0, num / den.clamp(min=1e-12)[:, None], boxes[keep])
    return keep, merged
