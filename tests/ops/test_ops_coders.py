"""Box coders: DeltaCoder == torchvision BoxCoder both ways; YOLO grid coder round trips."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from cvcraft.errors import ConfigError
from cvcraft.ops.coders import DeltaCoder, YoloGridCoder


def _boxes(n: int, seed: int, scale: float = 200.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale / 2 + 2
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_delta_coder_matches_torchvision(weights):
    gt, priors = _boxes(50, 0), _boxes(50, 1)
    ours, ref = DeltaCoder(weights), BoxCoder(weights)
    assert torch.allclose(ours.encode(gt, priors), ref.encode_single(gt, priors), atol=1e-5)
    deltas = torch.randn(50, 4, generator=torch.Generator().manual_seed(2)) * 3
    assert torch.allclose(ours.decode(deltas, priors), ref.decode_single(deltas, priors), atol=1e-4)
    # class-specific regression: (N, 4 * C) decoded against one prior per row
    deltas3 = torch.randn(50, 12, generator=torch.Generator().manual_seed(3))
    out = ours.decode(deltas3, priors)
    assert out.shape == (50, 12)
    assert torch.allclose(out, ref.decode_single(deltas3, priors), atol=1e-4)


def test_delta_coder_clamps_log_size():
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    out = DeltaCoder(clamp=math.log(1000 / 16)).decode(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), priors)
    assert torch.allclose(out[0, 2] - out[0, 0], torch.tensor(10 * 1000 / 16))


def test_delta_coder_round_trip_and_batch_dims():
    gt, priors = _boxes(64, 4), _boxes(64, 5)
    c = DeltaCoder()
    assert torch.allclose(c.decode(c.encode(gt, priors), priors), gt, atol=1e-4)
    batched = c.encode(gt.view(2, 32, 4), priors.view(2, 32, 4))
    assert torch.allclose(c.decode(batched, priors.view(2, 32, 4)).view(64, 4), gt, atol=1e-4)
    with pytest.raises(
        ConfigError, match=r"weights needs 4 values \(wx, wy, ww, wh\), got \(1\.0, 1\.0\)"
    ):
        DeltaCoder(weights=(1.0, 1.0))


def test_yolo_grid_decode_hand_computed():
    coder = YoloGridCoder([[10.0, 20.0], [30.0, 40.0]], stride=8)
    raw = torch.zeros(1, 2, 3, 4, 4)
    raw[0, 1, 2, 3] = torch.tensor([0.0, 0.0, math.log(2.0), 0.0])
    box = coder.decode(raw)[0, 1, 2, 3]
    # centre ((0.5 + 3) * 8, (0.5 + 2) * 8) = (28, 20), size (60, 40)
    assert torch.allclose(box, torch.tensor([-2.0, 0.0, 58.0, 40.0]))


def test_yolo_grid_round_trip():
    anchors = torch.tensor([[10.0, 13.0], [33.0, 23.0], [62.0, 45.0]])
    stride = 16.0
    coder = YoloGridCoder(anchors, stride)
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(20, 2, generator=g) * 160
    wh = torch.rand(20, 2, generator=g) * 100 + 4
    gt = torch.cat([centres - wh / 2, centres + wh / 2], 1).double()
    a_idx = torch.randint(0, 3, (20,), generator=g)
    t = coder.encode(gt, a_idx)
    cells = coder.cells(gt)
    raw = torch.zeros(1, 3, 10, 10, 4, dtype=torch.float64)
    raw[0, a_idx, cells[:, 1], cells[:, 0]] = t
    dec = coder.decode(raw)[0, a_idx, cells[:, 1], cells[:, 0]]
    assert torch.allclose(dec, gt, atol=1e-5)
    # sigmoid(tx) is the in-cell offset: tx = logit(frac(cx / stride))
    frac = (centres[:, 0].double() / stride) % 1
    assert torch.allclose(t[:, 0], torch.logit(frac), atol=1e-6)
    assert torch.allclose(t[:, 2], torch.log(wh[:, 0].double() / anchors[a_idx, 0]), atol=1e-6)


def test_yolo_grid_decode_rejects_wrong_shape():
    with pytest.raises(
        ConfigError, match=r"decode: expected \(B, 1, H, W, 4\), got \(1, 2, 4, 4, 4\)"
    ):
        YoloGridCoder([[10.0, 10.0]], 8).decode(torch.zeros(1, 2, 4, 4, 4))
