"""SSD's building blocks against torchvision: default boxes (``DefaultBoxGenerator``), the
matcher (``SSDMatcher``) including IoU exactly at the threshold, and the 3:1 hard-negative
selection (the ranking inside torchvision's ``SSD.compute_loss``) against a per-row loop."""

import math

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from cvcraft.errors import ConfigError
from cvcraft.ops.assigners import NEGATIVE, ssd_assign
from cvcraft.ops.default_boxes import default_box_shapes, default_boxes, ssd_scales
from cvcraft.ops.hard_negatives import hard_negative_mask


def _tv_boxes(gen, grid, image):
    feats = [torch.zeros(1, 1, h, w) for h, w in grid]
    return gen(ImageList(torch.zeros(1, 3, *image), [image]), feats)[0]


@pytest.mark.parametrize(
    "ratios,scales,steps,grid,image",
    [  # SSD300's layout, SSDLite320's, and an odd non-square one without steps
        ([[2], [2, 3], [2, 3], [2, 3], [2], [2]], [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
         [8, 16, 32, 64, 100, 300], [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)],
         (300, 300)),
        ([[2, 3]] * 6, None, None, [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)],
         (320, 320)),
        ([[2], [3, 0.5]], None, None, [(7, 9), (4, 5)], (70, 90)),
    ],
)  # fmt: skip
def test_default_boxes_equal_torchvision(ratios, scales, steps, grid, image):
    kw = {"scales": scales} if scales else {"min_ratio": 0.2, "max_ratio": 0.95}
    gen = DefaultBoxGenerator(ratios, steps=steps, **kw)
    ref = _tv_boxes(gen, grid, image)
    s = scales or ssd_scales(len(ratios), 0.2, 0.95)
    assert s == gen.scales
    cells = None if steps is None else [(image[0] / t, image[1] / t) for t in steps]
    ours = default_boxes(grid, image, default_box_shapes(s, ratios), cells)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_default_box_shapes_hand_values_and_errors():
    shapes = default_box_shapes([0.2, 0.8], [[4]])[0]
    # s, sqrt(s s'), (s sqrt(4), s / 2), transposed
    expected = torch.tensor([[0.2, 0.2], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]])
    torch.testing.assert_close(shapes, expected)
    assert default_box_shapes([0.9, 1.2], [[4]])[0].max() == 1.0  # clipped to the image
    assert ssd_scales(1, 0.2, 0.9) == [0.2, 0.9]
    with pytest.raises(ConfigError, match="one scale per level plus one"):
        default_box_shapes([0.1, 0.2], [[2], [2]])
    with pytest.raises(ConfigError, match="2 feature maps, 1 levels"):
        default_boxes([(2, 2), (1, 1)], (8, 8), default_box_shapes([0.1, 0.2], [[2]]))
    with pytest.raises(ConfigError, match="num_levels must be >= 1"):
        ssd_scales(0)


def _random_boxes(g, n, size=100.0):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(4))
def test_ssd_assign_equals_torchvision_matcher(seed):
    g = torch.Generator().manual_seed(seed)
    priors, gts = _random_boxes(g, 2000, 40.0), _random_boxes(g, 7, 40.0)
    ref = tv_utils.SSDMatcher(0.5)(box_iou(gts, priors))
    got = ssd_assign(priors, gts, 0.5, gt_labels=torch.arange(7) * 10)
    assert torch.equal(got.gt_index, ref)
    assert got.pos_mask.sum() > 7  # threshold matches beyond the forced best priors
    assert torch.equal(got.labels[got.pos_mask], ref[ref >= 0] * 10)


def test_ssd_assign_at_exactly_the_threshold():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    priors = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # IoU 1: the gt's best prior
        [0.0, 0.0, 10.0, 20.0],  # IoU exactly 0.5: positive (>=)
        [0.0, 0.0, 10.0, 20.5],  # IoU 0.4878: negative
        [50.0, 50.0, 60.0, 60.0],  # no overlap
    ])  # fmt: skip
    got = ssd_assign(priors, gts, 0.5)
    ref = tv_utils.SSDMatcher(0.5)(box_iou(gts, priors))
    assert got.gt_index.tolist() == ref.tolist() == [0, 0, NEGATIVE, NEGATIVE]
    # a gt whose best prior is below the threshold still gets it (the bipartite step)
    far = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 40.0]])
    got = ssd_assign(far, torch.tensor([[0.0, 0.0, 10.0, 100.0]]), 0.5)
    assert got.gt_index.tolist() == [NEGATIVE, 0]
    # two gts with the same best prior: the later one takes it, as torchvision's
    two = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    ref = tv_utils.SSDMatcher(0.5)(box_iou(two, priors))
    assert torch.equal(ssd_assign(priors, two, 0.5).gt_index, ref)
    empty = ssd_assign(priors, torch.zeros(0, 4))
    assert (empty.gt_index == NEGATIVE).all()


def _loop_hard_negatives(loss, pos, ratio):
    out = torch.zeros_like(pos)
    for r in range(len(loss)):  # the reference: sort each row's negatives, take the top k
        k = math.ceil(ratio * int(pos[r].sum()))  # ranks 0 .. k-1 are < ratio P
        neg = torch.nonzero(~pos[r]).squeeze(1)
        order = loss[r, neg].argsort(descending=True)[:k]
        out[r, neg[order]] = True
    return out


@pytest.mark.parametrize("ratio", [3.0, 1.0, 0.0, 2.5])
def test_hard_negative_mask_equals_a_loop(ratio):
    g = torch.Generator().manual_seed(int(ratio * 10))
    loss = torch.rand(4, 200, generator=g)
    pos = torch.rand(4, 200, generator=g) < 0.05
    pos[3] = False  # an image without positives gets no negatives
    got = hard_negative_mask(loss, pos, ratio)
    assert torch.equal(got, _loop_hard_negatives(loss, pos, ratio))
    assert (got.sum(1) == (ratio * pos.sum(1)).ceil().long()).all()
    assert not (got & pos).any()


def test_hard_negative_ratio_boundary_and_errors():
    loss = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1]])
    pos = torch.tensor([[True, False, False, False, False, False]])
    # 3 x 1 positive: exactly the 3 largest negative losses, not the 4th
    assert hard_negative_mask(loss, pos, 3.0).tolist() == [[False, True, True, True, False, False]]
    # more negatives asked for than exist: all of them, positives never
    assert hard_negative_mask(loss, pos, 10.0).tolist() == [[False] + [True] * 5]
    with pytest.raises(ConfigError, match="must be the same"):
        hard_negative_mask(loss, pos[:, :3])
    with pytest.raises(ConfigError, match="ratio must be >= 0"):
        hard_negative_mask(loss, pos, -1.0)
