"""Metric-learning losses against per-anchor / per-pair loops written from the papers, numpy
float64 formulas, and autograd of those loops."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.losses.metric import (
    arcface_loss,
    batch_hard_triplet_loss,
    center_loss,
    contrastive_loss,
    cosface_loss,
    margin_logits,
    pairwise_distances,
    semi_hard_triplet_loss,
)


def _batch(seed, b=12, d=5, ids=4):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, ids, (b,), generator=g)
    return emb, labels


def _triplet_loop(emb, labels, margin, soft=False):
    """Hermans et al.: for each anchor, max over positives, min over negatives (a loop)."""
    terms = []
    for a in range(len(emb)):
        pos = [torch.linalg.norm(emb[a] - emb[p]) for p in range(len(emb))
               if p != a and labels[p] == labels[a]]  # fmt: skip
        neg = [
            torch.linalg.norm(emb[a] - emb[n]) for n in range(len(emb)) if labels[n] != labels[a]
        ]
        if pos and neg:
            gap = torch.stack(pos).max() - torch.stack(neg).min()
            terms.append(F.softplus(gap) if soft else torch.clamp(gap + margin, min=0))
    return torch.stack(terms).mean()


def _contrastive_loop(emb, labels, margin):
    terms = []
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            d = torch.linalg.norm(emb[i] - emb[j])
            terms.append(d**2 if labels[i] == labels[j] else torch.clamp(margin - d, min=0) ** 2)
    return torch.stack(terms).mean()


def test_pairwise_distances_equal_cdist():
    x, _ = _batch(0)
    y, _ = _batch(1, b=7)
    np.testing.assert_allclose(pairwise_distances(x, y).numpy(), torch.cdist(x, y).numpy(),
                               rtol=1e-9)  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet_equals_loop_value_and_gradient(seed, soft):
    emb, labels = _batch(seed)
    a = emb.clone().requires_grad_(True)
    b = emb.clone().requires_grad_(True)
    got = batch_hard_triplet_loss(a, labels, margin=0.5, soft=soft)
    ref = _triplet_loop(b, labels, 0.5, soft)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10)
    got.backward()
    ref.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_triplet_skips_anchors_without_positive_or_negative():
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])  # anchor 2 has no positive
    # anchors 0 and 1: d_ap = 1; d_an = 3 and sqrt(10); margin 2.5
    want = (0.5 + (3.5 - math.sqrt(10))) / 2
    assert float(batch_hard_triplet_loss(emb, labels, 2.5)) == pytest.approx(want)
    one_id = batch_hard_triplet_loss(emb, torch.zeros(3, dtype=torch.long))
    assert float(one_id) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_contrastive_equals_pair_loop_value_and_gradient(seed):
    emb, labels = _batch(seed)
    a = emb.clone().requires_grad_(True)
    b = emb.clone().requires_grad_(True)
    got, ref = contrastive_loss(a, labels, 2.0), _contrastive_loop(b, labels, 2.0)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10)
    got.backward()
    ref.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)


def _arcface_np(cos, labels, s, m):
    """ArcFace written with arccos: target logit cos(theta + m) (theta + m <= pi here)."""
    out = cos.copy()
    rows = np.arange(len(labels))
    out[rows, labels] = np.cos(np.arccos(cos[rows, labels]) + m)
    z = s * out
    logp = (
        z
        - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        - z.max(1, keepdims=True)
    )
    return -logp[rows, labels].mean()


@pytest.mark.parametrize("seed", range(3))
def test_arcface_and_cosface_equal_formulas(seed):
    rng = np.random.default_rng(seed)
    cos = rng.uniform(-0.5, 0.99, (8, 5))  # theta + m <= pi for these angles
    labels = rng.integers(0, 5, 8)
    tc, tl = torch.from_numpy(cos), torch.from_numpy(labels)
    assert float(arcface_loss(tc, tl, 16.0, 0.4)) == pytest.approx(
        _arcface_np(cos, labels, 16.0, 0.4)
    )
    ref = cos.copy()
    ref[np.arange(8), labels] -= 0.3
    want = F.cross_entropy(torch.from_numpy(10.0 * ref), tl)
    assert float(cosface_loss(tc, tl, 10.0, 0.3)) == pytest.approx(float(want), rel=1e-12)


def test_arcface_gradient_by_autograd_of_arccos_formula():
    rng = np.random.default_rng(4)
    cos = torch.from_numpy(rng.uniform(-0.5, 0.95, (6, 4)))
    labels = torch.from_numpy(rng.integers(0, 4, 6))
    a = cos.clone().requires_grad_(True)
    b = cos.clone().requires_grad_(True)
    arcface_loss(a, labels, 8.0, 0.5).backward()
    onehot = F.one_hot(labels, 4).bool()
    logits = torch.where(onehot, torch.cos(torch.arccos(b) + 0.5), b) * 8.0
    F.cross_entropy(logits, labels).backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-10)


def test_arcface_past_pi_keeps_decreasing_and_errors():
    m = 0.5
    c = torch.tensor([[math.cos(math.pi - m) + 1e-3], [math.cos(math.pi - m) - 1e-3], [-1.0]],
                     dtype=torch.float64)  # fmt: skip
    z = margin_logits(c, torch.zeros(3, dtype=torch.long), "arcface", 1.0, m)[:, 0]
    assert z[0] > z[1] > z[2]  # monotone across the switch at theta = pi - m
    assert float(z[1]) == pytest.approx(float(c[1, 0]) - m * math.sin(m))
    with pytest.raises(ConfigError, match="arcface or cosface"):
        margin_logits(c, torch.zeros(3, dtype=torch.long), "sphereface")
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        batch_hard_triplet_loss(torch.zeros(3), torch.zeros(3))


def _semi_hard_loop(emb, labels, margin):
    """FaceNet's semi-hard choice, one anchor-positive pair at a time."""
    terms = []
    for a in range(len(emb)):
        negs = [n for n in range(len(emb)) if labels[n] != labels[a]]
        if not negs:
            continue
        for p in range(len(emb)):
            if p == a or labels[p] != labels[a]:
                continue
            d_ap = torch.linalg.norm(emb[a] - emb[p])
            d_n = torch.stack([torch.linalg.norm(emb[a] - emb[n]) for n in negs])
            farther = d_n[d_n > d_ap]
            d_an = farther.min() if len(farther) else d_n.max()
            terms.append(torch.clamp(d_ap - d_an + margin, min=0))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("seed", range(3))
def test_semi_hard_triplet_equals_pair_loop_value_and_gradient(seed):
    emb, labels = _batch(seed, b=10)
    a = emb.clone().requires_grad_(True)
    b = emb.clone().requires_grad_(True)
    got, ref = semi_hard_triplet_loss(a, labels, 0.8), _semi_hard_loop(b, labels, 0.8)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10)
    got.backward()
    ref.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)
    assert semi_hard_triplet_loss(emb, torch.zeros(10, dtype=torch.long)).item() == 0.0


def test_center_loss_equals_formula_and_gradients():
    emb, labels = _batch(11)
    centres = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    e, c = emb.clone().requires_grad_(True), centres.clone().requires_grad_(True)
    loss = center_loss(e, labels, c)
    ref = np.mean([0.5 * np.sum((emb[i].numpy() - centres[labels[i]].numpy()) ** 2)
                   for i in range(len(labels))])  # fmt: skip
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    loss.backward()
    # d/de_i = (e_i - c_y) / B; d/dc_k = -sum_{i: y_i = k} (e_i - c_k) / B
    diff = (emb - centres[labels]).numpy() / len(labels)
    np.testing.assert_allclose(e.grad.numpy(), diff, rtol=1e-12)
    want_c = np.zeros((4, 5))
    np.add.at(want_c, labels.numpy(), -diff)
    np.testing.assert_allclose(c.grad.numpy(), want_c, rtol=1e-12, atol=1e-15)
