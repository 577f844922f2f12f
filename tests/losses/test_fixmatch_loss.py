"""FixMatch's masked pseudo-label loss against a by-hand computation, at the exact threshold
boundary (max p == tau counts) and on random logits."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.losses.fixmatch import fixmatch_unlabeled_loss, pseudo_labels


def by_hand(weak: np.ndarray, strong: np.ndarray, tau: float) -> tuple[float, np.ndarray]:
    """The loop a reader would write from the paper (float64)."""
    total, mask = 0.0, []
    for zw, zs in zip(weak, strong):
        q = np.exp(zw - zw.max())
        q /= q.sum()
        keep = q.max() >= tau
        mask.append(float(keep))
        if keep:
            log_p = zs - zs.max() - np.log(np.exp(zs - zs.max()).sum())
            total += -log_p[int(np.argmax(q))]
    return total / len(weak), np.array(mask)


def test_pseudo_labels_threshold_is_inclusive():
    probs = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.94, 0.06], [0.5, 0.5]])
    labels, mask = pseudo_labels(probs, 0.95)  # 0.95 == 0.95 exactly in float32
    assert mask.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert labels[:2].tolist() == [0, 1]
    _, mask = pseudo_labels(probs, 0.5)
    assert mask.tolist() == [1.0, 1.0, 1.0, 1.0]  # the tie 0.5 == tau is in
    _, mask = pseudo_labels(probs, float(np.nextafter(np.float32(0.5), np.float32(1))))
    assert mask[3] == 0.0  # one ulp above the tie is out


def test_loss_at_the_boundary_equals_by_hand():
    # equal logits -> softmax exactly 1/C; tau = 1/C sits on the boundary
    weak = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    strong = np.array([[1.0, -1.0, 0.5, 0.0], [0.3, 0.2, -2.0, 1.0], [0.0, 3.0, 0.0, 0.0]])
    for tau in (0.25, float(np.nextafter(0.25, 1.0)), 0.9):
        loss, mask = fixmatch_unlabeled_loss(torch.tensor(weak), torch.tensor(strong), tau)
        want, want_mask = by_hand(weak, strong, tau)
        assert mask.tolist() == want_mask.tolist()
        assert float(loss) == pytest.approx(want, rel=1e-6)
    # tau = 1/4 keeps every row (ties go to the first class); above it only the confident one
    _, mask = fixmatch_unlabeled_loss(torch.tensor(weak), torch.tensor(strong), 0.25)
    assert mask.tolist() == [1.0, 1.0, 1.0]
    _, mask = fixmatch_unlabeled_loss(torch.tensor(weak), torch.tensor(strong), 0.26)
    assert mask.tolist() == [0.0, 0.0, 1.0]


def test_loss_on_random_logits_and_gradients():
    rng = np.random.default_rng(3)
    weak, strong = rng.normal(size=(64, 10)) * 3, rng.normal(size=(64, 10))
    tau = 0.6
    want, want_mask = by_hand(weak, strong, tau)
    assert 0 < want_mask.sum() < 64  # the test exercises both sides
    w = torch.tensor(weak, requires_grad=True)
    s = torch.tensor(strong, requires_grad=True)
    loss, mask = fixmatch_unlabeled_loss(w, s, tau)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert w.grad is None  # the weak view is a target only
    # masked-out rows get no gradient; kept rows do
    g = s.grad.abs().sum(1).numpy()
    assert (g[want_mask == 0] == 0).all() and (g[want_mask == 1] > 0).all()


def test_bad_input():
    with pytest.raises(ConfigError, match="must both be"):
        fixmatch_unlabeled_loss(torch.zeros(3, 4), torch.zeros(3, 5), 0.9)
    with pytest.raises(ConfigError, match="empty"):
        fixmatch_unlabeled_loss(torch.zeros(0, 4), torch.zeros(0, 4), 0.9)
    with pytest.raises(ConfigError, match="tau"):
        pseudo_labels(torch.ones(2, 2) / 2, 1.5)
