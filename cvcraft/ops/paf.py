"""Part affinity fields (OpenPose, Cao et al. 2017): bottom-up grouping of keypoints into people.

A limb (a, b) gets a 2-channel field: at every cell within ``width`` cells of the segment
from a person's keypoint a to b (extended by ``width`` past both ends), the unit vector
v = (p_b - p_a) / |p_b - p_a| (averaged where people overlap), zero elsewhere. Grouping,
given keypoint heatmaps and the fields:
1. candidates: local maxima (3x3) of each heatmap above ``threshold``;
2. limb score of candidates (a_i, b_j): the line integral of the field along the segment,
   E = mean_s F(p(s)) . v over ``samples`` interior points, plus min(0, max_len / |d| - 1)
   so implausibly long limbs lose; a pair counts if > 80 % of the samples exceed
   ``paf_threshold`` and E > 0;
3. per limb, the Hungarian assignment (max total E, one partner per candidate);
4. people: the accepted connections, strongest first, merge candidate groups unless the merge
   would give a person two candidates of one keypoint type.

Coordinates: heatmap cells; cell j's centre is input x = (j + 0.5) * stride.
Shapes: keypoints (N, K, 3) -> fields (2L, h, w); heatmaps (K, h, w), fields (2L, h, w) ->
people (P, K, 3) in input pixels (x, y, score; score 0 = not found).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from cvcraft.errors import DataError


def paf_targets(
    keypoints: np.ndarray,
    limbs: Sequence[tuple[int, int]],
    size: tuple[int, int],
    stride: float,
    width: float = 1.0,
) -> np.ndarray:
    """The (2L, h, w) fields of all people in ``keypoints`` (N, K, 3) (input pixels)."""
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim != 3 or kp.shape[-1] < 3:
        raise DataError(f"keypoints must be (N, K, 3), got {kp.shape}")
    h, w = size
    lim = np.asarray(limbs, np.int64).reshape(-1, 2)
    pa = kp[:, lim[:, 0], :2] / stride - 0.5  # (N, L, 2) in cells
    pb = kp[:, lim[:, 1], :2] / stride - 0.5
    ok = (kp[:, lim[:, 0], 2] > 0) & (kp[:, lim[:, 1], 2] > 0)  # (N, L)
    d = pb - pa
    length = np.linalg.norm(d, axis=-1)  # (N, L)
    ok &= length > 1e-6
    v = d / np.maximum(length, 1e-6)[..., None]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rx = xs[None, None] - pa[..., 0, None, None]  # (N, L, h, w)
    ry = ys[None, None] - pa[..., 1, None, None]
    along = rx * v[..., 0, None, None] + ry * v[..., 1, None, None]
    across = np.abs(rx * v[..., 1, None, None] - ry * v[..., 0, None, None])
    # the band runs ``width`` past both ends too: decoded peaks land up to a cell off
    on = (along >= -width) & (along <= length[..., None, None] + width) & (across <= width)
    on &= ok[..., None, None]
    count = on.sum(0)  # (L, h, w)
    field = (on[..., None] * v[:, :, None, None, :]).sum(0)  # (L, h, w, 2)
    field /= np.maximum(count, 1)[..., None]
    return field.transpose(0, 3, 1, 2).reshape(2 * len(lim), h, w).astype(np.float32)


def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1) -> list[np.ndarray]:
    """Per keypoint type, the 3x3 local maxima above ``threshold``: a list of (M_k, 3) arrays
    (x, y, score) in cells, refined by the quarter offset towards the higher neighbour."""
    hm = torch.as_tensor(np.asarray(heatmaps, np.float32))[None]  # (1, K, h, w)
    k, h, w = hm.shape[1:]
    peak = (hm == F.max_pool2d(hm, 3, 1, 1)) & (hm > threshold)
    pad = F.pad(hm, (1, 1, 1, 1), mode="replicate")[0]
    out = []
    for c in range(k):  # one small list per keypoint type
        iy, ix = torch.nonzero(peak[0, c], as_tuple=True)
        m = pad[c]
        dx = torch.where((ix > 0) & (ix < w - 1),
                         torch.sign(m[iy + 1, ix + 2] - m[iy + 1, ix]) * 0.25, 0.0)  # fmt: skip
        dy = torch.where((iy > 0) & (iy < h - 1),
                         torch.sign(m[iy + 2, ix + 1] - m[iy, ix + 1]) * 0.25, 0.0)  # fmt: skip
        out.append(torch.stack([ix + dx, iy + dy, hm[0, c, iy, ix]], -1).numpy())
    return out


def limb_scores(
    field: np.ndarray,
    cand_a: np.ndarray,
    cand_b: np.ndarray,
    samples: int = 10,
    paf_threshold: float = 0.05,
    max_len: float | None = None,
) -> np.ndarray:
    """Line-integral scores (A, B) of every candidate pair of one limb; -inf for pairs that
    fail the sample criterion. ``field`` (2, h, w); candidates (A, 2+), (B, 2+) in cells."""
    h, w = field.shape[1:]
    a, b = cand_a[:, None, :2], cand_b[None, :, :2]  # (A, 1, 2), (1, B, 2)
    d = b - a
    dist = np.linalg.norm(d, axis=-1)  # (A, B)
    v = d / np.maximum(dist, 1e-6)[..., None]
    t = (np.arange(samples) + 0.5) / samples  # interior points: the peaks sit at the ends
    pts = a[..., None, :] + t[:, None] * d[..., None, :]  # (A, B, S, 2)
    xi = np.clip(np.rint(pts[..., 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.rint(pts[..., 1]).astype(np.int64), 0, h - 1)
    dots = field[0][yi, xi] * v[..., None, 0] + field[1][yi, xi] * v[..., None, 1]  # (A, B, S)
    max_len = max_len if max_len is not None else h / 2
    score = dots.mean(-1) + np.minimum(0, max_len / np.maximum(dist, 1e-6) - 1)
    good = ((dots > paf_threshold).mean(-1) > 0.8) & (score > 0)
    return np.where(good, score, -np.inf)


def group_people(
    heatmaps: np.ndarray,
    fields: np.ndarray,
    limbs: Sequence[tuple[int, int]],
    stride: float,
    threshold: float = 0.1,
    min_keypoints: int = 3,
) -> np.ndarray:
    """People assembled from heatmap peaks and limb fields -> (P, K, 3) input-pixel
    keypoints (x, y, peak score; 0 where a person lacks that keypoint), strongest first."""
    k = heatmaps.shape[0]
    cands = find_peaks(heatmaps, threshold)
    offset = np.cumsum([0] + [len(c) for c in cands])  # global candidate ids
    kind = np.repeat(np.arange(k), [len(c) for c in cands])
    conns: list[tuple[float, int, int]] = []
    for li, (ka, kb) in enumerate(limbs):
        if not len(cands[ka]) or not len(cands[kb]):
            continue
        s = limb_scores(fields[2 * li : 2 * li + 2], cands[ka], cands[kb])
        rows, cols = linear_sum_assignment(np.where(np.isfinite(s), -s, 1e9))
        for r, c in zip(rows, cols):
            if np.isfinite(s[r, c]):
                conns.append((float(s[r, c]), offset[ka] + r, offset[kb] + c))
    parent = np.arange(offset[-1])
    members = {i: {int(kind[i])} for i in range(offset[-1])}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    for _, i, j in sorted(conns, reverse=True):  # strongest limbs first
        ri, rj = root(i), root(j)
        if ri != rj and not members[ri] & members[rj]:  # one keypoint of each type
            parent[rj] = ri
            members[ri] |= members.pop(rj)
    groups: dict[int, list[int]] = {}
    for i in range(offset[-1]):
        groups.setdefault(root(i), []).append(i)
    allc = np.concatenate(cands) if offset[-1] else np.zeros((0, 3))
    people = []
    for ids in groups.values():
        if len(ids) < min_keypoints:
            continue
        p = np.zeros((k, 3))
        for i in ids:
            x, y, s = allc[i]
            p[kind[i]] = ((x + 0.5) * stride, (y + 0.5) * stride, s)
        people.append(p)
    people.sort(key=lambda p: -p[:, 2].sum())
    return np.stack(people) if people else np.zeros((0, k, 3))
