"""Mask IoU on run-length intervals, for many (detection, ground-truth) pairs at once.

Why runs: COCO segm evaluation compares thousands of mask pairs per split; an object's mask
is a few hundred ones-runs of its column-major flat index (its RLE), against ~300k pixels
as a bitmap. Each run of mask A meets mask B in ``F_B(end) - F_B(start)`` pixels, with
``F_B(x)`` = the number of B's pixels before flat index x (one binary search per run).

``iou = inter / (area_a + area_b - inter)``, or ``inter / area_a`` when b is a crowd region
(pycocotools' ``iou(dt, gt, iscrowd)``); 0 when the denominator is 0.

Shapes: a ``MaskRuns`` of N masks holds ``starts``, ``ends`` (R,) int64 and ``offsets``
(N + 1,): mask i's runs are ``[offsets[i], offsets[i + 1])``, sorted and disjoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskRuns:
    """N masks as ones-runs of their column-major flat index (a ragged array)."""

    starts: np.ndarray  # (R,) int64
    ends: np.ndarray  # (R,) int64
    offsets: np.ndarray  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @staticmethod
    def empty() -> MaskRuns:
        z = np.zeros(0, np.int64)
        return MaskRuns(z, z, np.zeros(1, np.int64))

    @staticmethod
    def from_list(runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> MaskRuns:
        """From one ``(starts, ends)`` pair per mask."""
        if not runs:
            return MaskRuns.empty()
        lengths = np.array([len(s) for s, _ in runs], np.int64)
        return MaskRuns(
            np.concatenate([s for s, _ in runs]).astype(np.int64),
            np.concatenate([e for _, e in runs]).astype(np.int64),
            np.concatenate([[0], np.cumsum(lengths)]),
        )

    @staticmethod
    def from_masks(masks: np.ndarray) -> MaskRuns:
        """From bool masks (N, H, W): all masks' runs found with one diff."""
        m = np.asarray(masks, bool)
        n = len(m)
        if n == 0:
            return MaskRuns.empty()
        flat = m.transpose(0, 2, 1).reshape(n, -1).astype(np.int8)  # column-major per mask
        pad = np.zeros((n, 1), np.int8)
        step = np.diff(np.concatenate([pad, flat, pad], axis=1), axis=1)  # (N, HW + 1)
        mi, starts = np.nonzero(step == 1)  # row-major: sorted by mask, then position
        _, ends = np.nonzero(step == -1)
        counts = np.bincount(mi, minlength=n)
        return MaskRuns(
            starts.astype(np.int64),
            ends.astype(np.int64),
            np.concatenate([[0], np.cumsum(counts)]),
        )

    @staticmethod
    def concat(parts: Sequence[MaskRuns]) -> MaskRuns:
        if not parts:
            return MaskRuns.empty()
        shift = np.cumsum([0] + [len(p.starts) for p in parts[:-1]])
        return MaskRuns(
            np.concatenate([p.starts for p in parts]),
            np.concatenate([p.ends for p in parts]),
            np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shift)]),
        )

    def select(self, keep: np.ndarray) -> MaskRuns:
        """The masks where ``keep`` (N,) bool is True, in order."""
        lengths = np.diff(self.offsets)
        run_keep = np.repeat(np.asarray(keep, bool), lengths)
        return MaskRuns(
            self.starts[run_keep],
            self.ends[run_keep],
            np.concatenate([[0], np.cumsum(lengths[keep])]),
        )

    def areas(self) -> np.ndarray:
        """(N,) int64 pixel count of each mask."""
        per_run = self.ends - self.starts
        csum = np.concatenate([[0], np.cumsum(per_run)])
        return csum[self.offsets[1:]] - csum[self.offsets[:-1]]


def runs_intersection(a: MaskRuns, b: MaskRuns, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Pixels shared by mask ``a[ia[p]]`` and ``b[ib[p]]`` for each pair p -> (P,) int64."""
    ia, ib = np.asarray(ia, np.int64).ravel(), np.asarray(ib, np.int64).ravel()
    n_pairs = len(ia)
    if n_pairs == 0 or len(b.starts) == 0 or len(a.starts) == 0:
        return np.zeros(n_pairs, np.int64)
    # Expand every pair into the runs of its a-mask.
    na = a.offsets[ia + 1] - a.offsets[ia]  # (P,)
    pair = np.repeat(np.arange(n_pairs), na)  # (Q,)
    first = np.cumsum(na) - na
    run = a.offsets[ia][pair] + np.arange(len(pair)) - first[pair]
    # B's runs of all masks on one number line: mask j's flat index x sits at j * stride + x.
    stride = int(max(a.ends.max(), b.ends.max())) + 1
    b_mask = np.repeat(np.arange(len(b)), np.diff(b.offsets))
    b_key = b_mask * stride + b.starts
    b_len = b.ends - b.starts
    b_cum = np.concatenate([[0], np.cumsum(b_len)])  # pixels of b before each run (global)
    target = ib[pair]
    lo = b.offsets[target]  # first run of the target mask

    def before(x: np.ndarray) -> np.ndarray:  # pixels of b[target] at flat index < x
        k = np.searchsorted(b_key, target * stride + x, side="right") - 1
        inside = k >= lo
        k = np.where(inside, k, 0)
        part = b_cum[k] - b_cum[lo] + np.minimum(x - b.starts[k], b_len[k])
        return np.where(inside, part, 0)

    per_run = before(a.ends[run]) - before(a.starts[run])
    return np.bincount(pair, weights=per_run, minlength=n_pairs).round().astype(np.int64)


def mask_iou_pairs(
    a: MaskRuns, b: MaskRuns, ia: np.ndarray, ib: np.ndarray, crowd: np.ndarray | None = None
) -> np.ndarray:
    """IoU of ``a[ia[p]]`` and ``b[ib[p]]`` (P,) float64; ``crowd`` (P,) bool: b is a crowd
    region, so ``iou = inter / area_a``."""
    ia, ib = np.asarray(ia, np.int64).ravel(), np.asarray(ib, np.int64).ravel()
    inter = runs_intersection(a, b, ia, ib).astype(np.float64)
    area_a, area_b = a.areas()[ia].astype(np.float64), b.areas()[ib].astype(np.float64)
    union = area_a + area_b - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool).ravel(), area_a, union)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix of bool masks a (N, H, W) and b (M, H, W) -> (N, M) float64 (``crowd`` (M,)
    marks crowd regions in b), as ``pycocotools.mask.iou``."""
    ra, rb = MaskRuns.from_masks(a), MaskRuns.from_masks(b)
    ia, ib = np.meshgrid(np.arange(len(ra)), np.arange(len(rb)), indexing="ij")
    c = None if crowd is None else np.broadcast_to(np.asarray(crowd, bool), ia.shape)
    return mask_iou_pairs(ra, rb, ia, ib, c).reshape(len(ra), len(rb))


__all__ = ["MaskRuns", "mask_iou", "mask_iou_pairs", "runs_intersection"]
