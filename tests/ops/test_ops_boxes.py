"""IoU family in cvcraft.ops.boxes against torchvision.ops and a hand-computed SIoU."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from cvcraft import structures
from cvcraft.errors import ConfigError
from cvcraft.ops import boxes as B

TV = {
    "iou": (B.box_iou, torchvision.ops.box_iou),
    "giou": (B.generalized_box_iou, torchvision.ops.generalized_box_iou),
    "diou": (B.distance_box_iou, torchvision.ops.distance_box_iou),
    "ciou": (B.complete_box_iou, torchvision.ops.complete_box_iou),
}


def random_boxes(n: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=dtype) * 100
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * 40 + 0.5
    return torch.cat([xy, xy + wh], 1)


def tricky_boxes(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random boxes plus identical, nested, touching, disjoint and zero-width/height ones."""
    a = random_boxes(40, gen)
    b = random_boxes(30, gen)
    special_a = torch.tensor(
        [
            [10.0, 10, 20, 20],  # identical to special_b[0]
            [0, 0, 100, 100],  # contains special_b[1]
            [0, 0, 10, 10],  # touches special_b[2] at an edge
            [500, 500, 510, 530],  # far from everything
            [5, 5, 5, 25],  # zero width
            [30, 40, 60, 40],  # zero height
        ]
    )
    special_b = torch.tensor(
        [[10.0, 10, 20, 20], [20, 30, 40, 50], [10, 0, 20, 10], [0, 0, 1, 1], [3, 7, 9, 12]]
    )
    return torch.cat([a, special_a]), torch.cat([b, special_b])


@pytest.mark.parametrize("kind", list(TV))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_matches_torchvision(kind: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    a, b = tricky_boxes(gen)
    ours, theirs = TV[kind]
    expected = theirs(a, b)
    got = ours(a, b)
    assert got.shape == (len(a), len(b))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert torch.equal(B.pairwise_iou(a, b, kind), got)


@pytest.mark.parametrize("kind", list(TV))
def test_pairwise_batched_leading_dims_match_torchvision(kind: str) -> None:
    gen = torch.Generator().manual_seed(7)
    a = random_boxes(24, gen).reshape(3, 8, 4)
    b = random_boxes(15, gen).reshape(3, 5, 4)
    ours, theirs = TV[kind]
    torch.testing.assert_close(ours(a, b), theirs(a, b), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", B.IOU_KINDS)
def test_elementwise_is_the_diagonal_of_pairwise(kind: str) -> None:
    gen = torch.Generator().manual_seed(3)
    a, b = random_boxes(25, gen), random_boxes(25, gen)
    full = B.pairwise_iou(a, b, kind)
    torch.testing.assert_close(B.elementwise_iou(a, b, kind), full.diagonal(), atol=1e-7, rtol=0)


def test_identical_boxes_score_one_and_ordering_of_variants() -> None:
    gen = torch.Generator().manual_seed(4)
    a = random_boxes(10, gen)
    for kind in B.IOU_KINDS:
        torch.testing.assert_close(B.elementwise_iou(a, a, kind), torch.ones(10))
    b = random_boxes(10, gen)
    iou = B.elementwise_iou(a, b, "iou")
    # every penalised variant is <= IoU; CIoU subtracts a non-negative term from DIoU
    for kind in ("giou", "diou", "siou"):
        assert (B.elementwise_iou(a, b, kind) <= iou + 1e-6).all()
    assert (B.elementwise_iou(a, b, "ciou") <= B.elementwise_iou(a, b, "diou") + 1e-6).all()


def test_empty_boxes_give_zero_not_nan() -> None:
    # torchvision returns NaN for two empty boxes (0 / 0); we clamp the denominators.
    point = torch.tensor([[5.0, 5, 5, 5]])
    for kind in B.IOU_KINDS:
        v = B.pairwise_iou(point, point, kind)
        assert torch.isfinite(v).all(), kind
    assert B.box_iou(point, point).item() == 0.0


def siou_by_hand(a: list[float], b: list[float], theta: float = 4.0) -> float:
    """SIoU from the paper's text, step by step, with its alpha/beta switch at pi/4."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    wa, ha, wb, hb = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    iou = inter / (wa * ha + wb * hb - inter)
    acx, acy, bcx, bcy = (ax1 + ax2) / 2, (ay1 + ay2) / 2, (bx1 + bx2) / 2, (by1 + by2) / 2
    sigma = math.hypot(bcx - acx, bcy - acy)
    c_h = max(acy, bcy) - min(acy, bcy)  # vertical centre gap
    sin_alpha = c_h / sigma
    x = sin_alpha if sin_alpha <= math.sqrt(2) / 2 else abs(bcx - acx) / sigma  # use beta
    angle = 1 - 2 * math.sin(math.asin(x) - math.pi / 4) ** 2
    cw = max(ax2, bx2) - min(ax1, bx1)  # enclosing box
    ch = max(ay2, by2) - min(ay1, by1)
    gamma = 2 - angle
    rho_x, rho_y = ((bcx - acx) / cw) ** 2, ((bcy - acy) / ch) ** 2
    distance = (1 - math.exp(-gamma * rho_x)) + (1 - math.exp(-gamma * rho_y))
    om_w, om_h = abs(wa - wb) / max(wa, wb), abs(ha - hb) / max(ha, hb)
    shape = (1 - math.exp(-om_w)) ** theta + (1 - math.exp(-om_h)) ** theta
    return iou - (distance + shape) / 2


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.0, 0, 10, 10], [4, 3, 16, 11]),  # shallow angle (alpha < 45 deg)
        ([0.0, 0, 10, 20], [2, 9, 9, 40]),  # steep angle: the paper switches to beta
        ([0.0, 0, 4, 4], [10, 10, 14, 18]),  # disjoint
        ([0.0, 0, 10, 10], [5, 0, 15, 10]),  # purely horizontal offset (angle cost 0)
    ],
)
def test_siou_matches_hand_computation(a: list[float], b: list[float]) -> None:
    expected = siou_by_hand(a, b)
    ta, tb = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    assert B.siou(ta, tb).item() == pytest.approx(expected, abs=1e-10)
    assert B.elementwise_iou(ta, tb, "siou").item() == pytest.approx(expected, abs=1e-10)
    assert B.siou(tb, ta).item() == pytest.approx(expected, abs=1e-10)  # symmetric


def test_giou_has_gradient_for_disjoint_boxes() -> None:
    a = torch.tensor([[0.0, 0, 2, 2]], requires_grad=True)
    b = torch.tensor([[5.0, 5, 7, 7]])
    assert B.elementwise_iou(a, b, "iou").sum().item() == 0.0
    B.elementwise_iou(a, b, "giou").sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_reexports_are_the_structures_functions() -> None:
    for name in ("box_area", "clip_boxes", "convert_boxes", "xyxy_to_xywh", "cxcywh_to_xyxy"):
        assert getattr(B, name) is getattr(structures, name)
    boxes = torch.tensor([[1.0, 2, 4, 8]])
    torch.testing.assert_close(B.box_area(boxes), torchvision.ops.box_area(boxes))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError, match="unknown IoU kind"):
        B.elementwise_iou(torch.zeros(2, 4), torch.zeros(2, 4), "eiou")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.box_iou(torch.zeros(2, 5), torch.zeros(2, 4))
