"""RoI ops: wrappers, FPN level == torchvision LevelMapper, multi-scale == MultiScaleRoIAlign."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torchvision.ops.poolers import LevelMapper, MultiScaleRoIAlign

from cvcraft.errors import ConfigError
from cvcraft.ops.roi import fpn_level, multiscale_roi_align, roi_align, roi_pool, to_rois


def _boxes(n: int, seed: int, size: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size * 0.7
    wh = torch.rand(n, 2, generator=g).pow(2) * (size - xy) + 1  # many small, a few large
    return torch.cat([xy, (xy + wh).clamp(max=size)], 1)


def test_to_rois_list_and_tensor():
    a, b = _boxes(3, 0, 100), _boxes(2, 1, 100)
    rois = to_rois([a, b])
    assert rois.shape == (5, 5)
    assert rois[:, 0].tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(rois[:, 1:], torch.cat([a, b]))
    assert to_rois(rois) is rois
    with pytest.raises(
        ConfigError, match=r"must be \(K, 5\) .* got \(3, 4\); pass a list of per-image"
    ):
        to_rois(torch.zeros(3, 4))


def test_roi_align_and_pool_wrap_torchvision():
    feats = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    boxes = [_boxes(3, 2, 60), _boxes(4, 3, 60)]
    rois = to_rois(boxes)
    ref = torchvision.ops.roi_align(feats, rois, (5, 5), 0.25, 2, True)
    assert torch.equal(roi_align(feats, boxes, 5, 0.25, 2, aligned=True), ref)
    assert torch.equal(roi_align(feats, rois, (5, 5), 0.25, 2, aligned=True), ref)
    ref_pool = torchvision.ops.roi_pool(feats, rois, (3, 4), 0.25)
    assert torch.equal(roi_pool(feats, boxes, (3, 4), 0.25), ref_pool)


def test_fpn_level_matches_torchvision_level_mapper():
    boxes = torch.cat([_boxes(200, 4, 800), torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112]])])
    ours = fpn_level(boxes, 2, 5)
    ref = LevelMapper(2, 5)([boxes])
    assert torch.equal(ours - 2, ref)
    assert ours[-2] == 4 and ours[-1] == 3  # the canonical 224 box -> level k0
    assert set(ours.tolist()) == {2, 3, 4, 5}


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_multiscale_roi_align_matches_torchvision(sampling_ratio):
    g = torch.Generator().manual_seed(1)
    size = 640
    strides = (4, 8, 16, 32)
    feats = [torch.randn(2, 3, size // s, size // s, generator=g) for s in strides]
    # sides log-uniform in [16, 600] px so every pyramid level gets boxes
    wh = torch.exp(torch.empty(55, 2).uniform_(2.8, 6.4, generator=g))
    xy = torch.rand(55, 2, generator=g) * (size - wh)
    big = torch.tensor([[0.0, 0, 600, 500], [20, 30, 630, 620]])  # level 5 for sure
    both = torch.cat([torch.cat([xy, xy + wh], 1), big])
    boxes = [both[:30], both[30:]]
    names = [f"p{i}" for i in range(len(feats))]
    pooler = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=sampling_ratio)
    ref = pooler(OrderedDict(zip(names, feats)), boxes, [(size, size), (size, size)])
    ours = multiscale_roi_align(feats, boxes, 7, sampling_ratio, strides)
    assert ours.shape == (57, 3, 7, 7)
    assert torch.allclose(ours, ref, atol=1e-6)
    lv = fpn_level(torch.cat(boxes), 2, 5)
    assert set(lv.tolist()) == {2, 3, 4, 5}  # the comparison exercised several levels


def test_multiscale_roi_align_single_level_and_errors():
    feats = [torch.randn(1, 2, 8, 8)]
    boxes = [_boxes(4, 7, 64)]
    ref = torchvision.ops.roi_align(feats[0], to_rois(boxes), (3, 3), 1 / 8, 2)
    assert torch.equal(multiscale_roi_align(feats, boxes, 3, 2, (8,)), ref)
    with pytest.raises(ConfigError, match=r"strides \(8, 32\) must be consecutive powers of two"):
        multiscale_roi_align(feats * 2, boxes, 3, 2, (8, 32))
    with pytest.raises(
        ConfigError, match="1 feature maps but 2 strides; give one stride per level"
    ):
        multiscale_roi_align(feats, boxes, 3, 2, (8, 16))
