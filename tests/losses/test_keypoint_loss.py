"""Keypoint heatmap MSE against torch's mse_loss on the weighted maps."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import DataError
from cvcraft.losses import build_loss
from cvcraft.losses.keypoints import keypoint_mse


def test_matches_torch_mse_of_weighted_maps():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 5, 6, 7, generator=g), torch.rand(2, 5, 6, 7, generator=g)
    weight = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 1]])
    w = weight[..., None, None]
    want = 0.5 * F.mse_loss(pred * w, target * w)
    assert keypoint_mse(pred, target, weight).item() == pytest.approx(want.item(), rel=1e-6)
    assert build_loss("keypoint_mse")(pred, target, weight).item() == pytest.approx(want.item())
    # an unlabelled keypoint gets no gradient
    p = pred.clone().requires_grad_(True)
    keypoint_mse(p, target, weight).backward()
    assert p.grad[0, 1].abs().max() == 0 and p.grad[0, 0].abs().max() > 0


def test_bad_shapes():
    with pytest.raises(DataError, match="weight"):
        keypoint_mse(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.zeros(1, 3))


def test_multi_stage_mse_sums_torch_mse_over_stages():
    from cvcraft.losses.keypoints import multi_stage_mse

    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 4, 5, 6, generator=g)
    stages = [torch.rand(2, 4, 5, 6, generator=g) for _ in range(3)]
    want = sum(F.mse_loss(s, target) for s in stages)
    assert multi_stage_mse(stages, target).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(DataError, match=r"shaped like the target \(2, 4, 5, 6\)"):
        multi_stage_mse([stages[0][:, :3]], target)
    with pytest.raises(DataError, match="needs >= 1 stage"):
        multi_stage_mse([], target)
