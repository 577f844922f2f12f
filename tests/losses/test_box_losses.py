"""Box and dense-head losses against torchvision / torch oracles and hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from cvcraft.losses import LOSSES, build_loss
from cvcraft.losses import box as L
from cvcraft.ops.boxes import elementwise_iou

REDUCTIONS = ("none", "mean", "sum")


def random_pairs(n: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=dtype) * 50
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * 30 + 1
    target = torch.cat([xy, xy + wh], 1)
    jitter = (torch.rand(n, 4, generator=gen, dtype=dtype) - 0.5) * 20
    pred = target + jitter
    pred = torch.cat([pred[:, :2], torch.maximum(pred[:, 2:], pred[:, :2] + 0.5)], 1)
    return pred, target


TV_LOSSES = {
    "giou": torchvision.ops.generalized_box_iou_loss,
    "diou": torchvision.ops.distance_box_iou_loss,
    "ciou": torchvision.ops.complete_box_iou_loss,
}


@pytest.mark.parametrize("kind", list(TV_LOSSES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_iou_family_losses_match_torchvision(kind: str, reduction: str) -> None:
    pred, target = random_pairs(64, seed=1)
    expected = TV_LOSSES[kind](pred, target, reduction=reduction)
    got = build_loss(kind, reduction=reduction)(pred, target)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_iou_loss_is_one_minus_torchvision_iou(reduction: str) -> None:
    pred, target = random_pairs(32, seed=2)
    per_box = 1 - torchvision.ops.box_iou(pred, target).diagonal()
    expected = {"none": per_box, "mean": per_box.mean(), "sum": per_box.sum()}[reduction]
    torch.testing.assert_close(L.IoULoss(reduction)(pred, target), expected)


def test_siou_loss_is_one_minus_siou_and_zero_at_target() -> None:
    pred, target = random_pairs(16, seed=3)
    expected = 1 - elementwise_iou(pred, target, "siou")
    torch.testing.assert_close(L.SIoULoss("none")(pred, target), expected)
    assert L.SIoULoss("sum")(target, target).item() == pytest.approx(0.0, abs=1e-5)
    # hand case: equal-size boxes offset only horizontally, 5 px on a 10 px box:
    # IoU = 1/3, angle cost 0, rho_x = (5/15)^2, gamma = 2, shape cost 0
    a = torch.tensor([[0.0, 0, 10, 10]], dtype=torch.float64)
    b = torch.tensor([[5.0, 0, 15, 10]], dtype=torch.float64)
    hand = 1 - (1 / 3 - (1 - math.exp(-2 * (5 / 15) ** 2)) / 2)
    assert L.iou_loss(a, b, "siou").item() == pytest.approx(hand, abs=1e-12)


def test_ciou_gradcheck_float64() -> None:
    pred, target = random_pairs(4, seed=4, dtype=torch.float64)
    pred.requires_grad_(True)

    def full(p: torch.Tensor) -> torch.Tensor:
        return L.iou_loss(p, target, "ciou", reduction="none", ciou_alpha_grad=True)

    assert torch.autograd.gradcheck(full, (pred,), eps=1e-6, atol=1e-6)


def test_ciou_default_gradient_matches_torchvision() -> None:
    # torchvision (like the CIoU authors) holds alpha constant; so do we by default.
    pred, target = random_pairs(16, seed=5, dtype=torch.float64)
    p1 = pred.clone().requires_grad_(True)
    p2 = pred.clone().requires_grad_(True)
    L.CIoULoss("sum")(p1, target).backward()
    torchvision.ops.complete_box_iou_loss(p2, target, reduction="sum").backward()
    torch.testing.assert_close(p1.grad, p2.grad, atol=1e-10, rtol=1e-8)


def test_empty_batch_mean_is_zero_with_graph() -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    for kind in ("iou", "giou", "diou", "ciou", "siou"):
        loss = build_loss(kind)(pred, torch.zeros(0, 4))
        assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_smooth_l1_matches_torch(beta: float, reduction: str) -> None:
    gen = torch.Generator().manual_seed(6)
    pred, target = torch.randn(8, 4, generator=gen) * 2, torch.randn(8, 4, generator=gen)
    expected = F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)
    torch.testing.assert_close(L.smooth_l1_loss(pred, target, beta, reduction), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 2.0), (0.5, 0.0), (0.25, 1.5)])
def test_sigmoid_focal_matches_torchvision(reduction: str, alpha: float | None, gamma) -> None:
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(10, 5, generator=gen) * 3
    target = (torch.rand(10, 5, generator=gen) < 0.3).float()
    expected = torchvision.ops.sigmoid_focal_loss(
        logits, target, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    got = L.SigmoidFocalLoss(alpha, gamma, reduction)(logits, target)
    torch.testing.assert_close(got, expected)


def test_varifocal_matches_hand_computation() -> None:
    logits = torch.tensor([0.3, -1.2, 2.0, -0.5], dtype=torch.float64)
    q = torch.tensor([0.8, 0.0, 0.35, 0.0], dtype=torch.float64)
    alpha, gamma = 0.75, 2.0
    expected = []
    for z, t in zip(logits.tolist(), q.tolist(), strict=True):
        p = 1 / (1 + math.exp(-z))
        if t > 0:
            expected.append(-t * (t * math.log(p) + (1 - t) * math.log(1 - p)))
        else:
            expected.append(-alpha * p**gamma * math.log(1 - p))
    got = L.varifocal_loss(logits, q, alpha, gamma, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    assert L.VarifocalLoss()(logits, q).item() == pytest.approx(sum(expected) / 4)


def test_dfl_matches_hand_computation() -> None:
    logits = torch.tensor([[0.1, 1.0, -0.5, 0.3], [2.0, 0.0, 0.5, -1.0]], dtype=torch.float64)
    target = torch.tensor([1.3, 3.0], dtype=torch.float64)  # 3.0 is the last bin edge
    logp = torch.log_softmax(logits, -1)
    row0 = -(0.7 * logp[0, 1] + 0.3 * logp[0, 2])
    row1 = -(0.0 * logp[1, 2] + 1.0 * logp[1, 3])
    got = L.distribution_focal_loss(logits, target, reduction="none")
    torch.testing.assert_close(got, torch.stack([row0, row1]))


def test_dfl_is_minimal_at_the_two_bin_distribution() -> None:
    n, y = 8, 3.25
    best = torch.full((n + 1,), -30.0, dtype=torch.float64)
    best[3], best[4] = math.log(0.75), math.log(0.25)  # softmax ~ (0.75 at 3, 0.25 at 4)
    target = torch.tensor(y, dtype=torch.float64)
    loss_best = L.distribution_focal_loss(best, target, reduction="sum")
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert loss_best.item() == pytest.approx(entropy, abs=1e-9)
    gen = torch.Generator().manual_seed(8)
    for _ in range(20):
        other = best + torch.randn(n + 1, generator=gen, dtype=torch.float64) * 0.3
        assert L.distribution_focal_loss(other, target, reduction="sum") > loss_best
    # and the expectation of that distribution is the target distance
    assert (torch.softmax(best, -1) * torch.arange(n + 1)).sum().item() == pytest.approx(y)


def test_dfl_rejects_out_of_range_targets() -> None:
    with pytest.raises(ValueError, match="must lie in"):
        L.distribution_focal_loss(torch.zeros(2, 5), torch.tensor([1.0, 4.5]))


def test_registry_names_build_and_run() -> None:
    names = ["iou", "giou", "diou", "ciou", "siou", "smooth_l1", "sigmoid_focal", "varifocal"]
    assert set(names + ["dfl"]) <= set(LOSSES.names())
    pred, target = random_pairs(6, seed=9)
    for name in names:
        t = target if name not in ("sigmoid_focal", "varifocal") else (target > 25).float()
        value = build_loss(name)(pred, t)
        assert value.ndim == 0 and torch.isfinite(value)
    assert build_loss("dfl")(torch.zeros(3, 5), torch.tensor([0.5, 2.0, 4.0])).item() > 0
