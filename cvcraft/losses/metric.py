"""Metric-learning losses: pull embeddings of one identity together, push others apart.

- Contrastive (Hadsell et al. 2006), over every pair of the batch:
  ``mean_pairs [y d^2 + (1 - y) max(0, m - d)^2]``, y = same identity, d = Euclidean distance.
- Triplet with batch-hard mining (Hermans et al. 2017): per anchor the farthest positive and
  the nearest negative in the batch, ``mean_a max(0, d(a, p*) - d(a, n*) + m)`` (``soft``:
  ``log(1 + exp(d_ap - d_an))``); anchors without a positive or a negative are skipped.
- Triplet with semi-hard mining (Schroff et al. 2015, FaceNet): for every anchor-positive
  pair, the nearest negative still farther than the positive (``d_an > d_ap``; if the
  anchor has none, its farthest negative), ``mean_(a,p) max(0, d_ap - d_an + m)``.
- Centre loss (Wen et al. 2016): ``mean_i ||e_i - c_(y_i)||^2 / 2`` pulls each embedding to
  its identity's learned centre; an auxiliary term beside a discriminative loss.
- ArcFace (Deng et al. 2019) / CosFace (Wang et al. 2018) on the cosines between
  L2-normalized embeddings and class centres: the target logit ``cos t`` becomes
  ``cos(t + m)`` (additive angle) / ``cos t - m`` (additive cosine), all logits times ``s``,
  then cross-entropy.
embeddings (B, D), labels (B,) -> scalar; cosines (B, C), labels (B,) -> scalar.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError

EPS = 1e-12


def pairwise_distances(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances (N, M) from ``|x|^2 + |y|^2 - 2 x.y`` (one matmul); the square
    root is taken of values clamped at 1e-12, so a zero distance has a finite gradient."""
    y = x if y is None else y
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return d2.clamp(min=EPS).sqrt()


def _check(emb: torch.Tensor, labels: torch.Tensor) -> None:
    if emb.ndim != 2 or labels.ndim != 1 or len(emb) != len(labels):
        raise ValueError(
            f"metric loss: embeddings must be (B, D) and labels (B,), got "
            f"{tuple(emb.shape)} and {tuple(labels.shape)}"
        )


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean over the B(B-1)/2 pairs of ``y d^2 + (1 - y) relu(margin - d)^2``."""
    _check(emb, labels)
    if len(emb) < 2:
        raise ValueError("contrastive loss needs at least 2 embeddings")
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    pair = torch.triu(torch.ones_like(same), diagonal=1)  # each unordered pair once
    per = torch.where(same, d.pow(2), F.relu(margin - d).pow(2))
    return per[pair].mean()


def batch_hard_triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, soft: bool = False
) -> torch.Tensor:
    """Batch-hard triplet loss; 0 when no anchor has both a positive and a negative."""
    _check(emb, labels)
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    pos_mask, neg_mask = same & ~eye, ~same
    hardest_pos = torch.where(pos_mask, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(neg_mask, d, torch.full_like(d, math.inf)).amin(1)
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return emb.sum() * 0.0  # keeps the graph: a batch of one identity adds nothing
    gap = hardest_pos[valid] - hardest_neg[valid]
    per = F.softplus(gap) if soft else F.relu(gap + margin)
    return per.mean()


def semi_hard_triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.3
) -> torch.Tensor:
    """Semi-hard triplet loss over all anchor-positive pairs; 0 when there are none (or no
    negatives). Builds a (B, B, B) candidate mask: fine for metric-learning batch sizes."""
    _check(emb, labels)
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    pos_pair = same & ~eye  # (a, p)
    neg = ~same  # (a, n)
    if not pos_pair.any() or not neg.any():
        return emb.sum() * 0.0
    d_ap = d[:, :, None]  # (a, p, 1)
    d_an = d[:, None, :]  # (a, 1, n)
    farther = neg[:, None, :] & (d_an > d_ap)  # (a, p, n) semi-hard candidates
    nearest_farther = torch.where(farther, d_an, torch.full_like(d_an, math.inf)).amin(2)
    farthest = torch.where(neg, d, torch.full_like(d, -math.inf)).amax(1)  # (a,)
    chosen = torch.where(farther.any(2), nearest_farther, farthest[:, None].expand_as(d))
    valid = pos_pair & neg.any(1)[:, None]
    return F.relu(d[valid] - chosen[valid] + margin).mean()


def margin_logits(
    cos: torch.Tensor, labels: torch.Tensor, kind: str = "arcface", scale: float = 30.0,
    margin: float = 0.5,
) -> torch.Tensor:  # fmt: skip
    """Scaled logits with the target class's margin: ArcFace ``cos(t + m)`` (where
    ``t + m > pi`` it continues linearly as ``cos t - m sin m``, keeping the logit
    decreasing in t), CosFace ``cos t - m``. (B, C) cosines -> (B, C) logits."""
    if kind not in ("arcface", "cosface"):
        raise ConfigError(f"margin loss {kind!r} unknown; use arcface or cosface")
    if cos.ndim != 2 or labels.shape != cos.shape[:1]:
        raise ValueError(f"cosines must be (B, C) and labels (B,), got {tuple(cos.shape)}, "
                         f"{tuple(labels.shape)}")  # fmt: skip
    target = cos.gather(1, labels[:, None])  # (B, 1)
    if kind == "cosface":
        changed = target - margin
    else:
        c = target.clamp(-1 + 1e-7, 1 - 1e-7)
        sin = (1 - c * c).sqrt()
        rotated = c * math.cos(margin) - sin * math.sin(margin)  # cos(t + m)
        # t + m > pi  <=>  cos t < cos(pi - m): past that point cos(t + m) would rise again
        changed = torch.where(c > math.cos(math.pi - margin), rotated,
                              c - margin * math.sin(margin))  # fmt: skip
    return scale * cos.scatter(1, labels[:, None], changed)


def arcface_loss(
    cos: torch.Tensor, labels: torch.Tensor, scale: float = 30.0, margin: float = 0.5
) -> torch.Tensor:
    """Cross-entropy of ArcFace logits (additive angular margin)."""
    return F.cross_entropy(margin_logits(cos, labels, "arcface", scale, margin), labels)


def cosface_loss(
    cos: torch.Tensor, labels: torch.Tensor, scale: float = 30.0, margin: float = 0.35
) -> torch.Tensor:
    """Cross-entropy of CosFace logits (additive cosine margin)."""
    return F.cross_entropy(margin_logits(cos, labels, "cosface", scale, margin), labels)


def center_loss(emb: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``mean_i ||e_i - c_(y_i)||^2 / 2`` with ``centres`` (C, D) learned by gradient descent
    (the paper's separate centre update rule is plain SGD on this same term)."""
    _check(emb, labels)
    if centres.ndim != 2 or centres.shape[1] != emb.shape[1]:
        raise ValueError(f"centres must be (C, {emb.shape[1]}), got {tuple(centres.shape)}")
    return 0.5 * (emb - centres[labels]).pow(2).sum(1).mean()
