"""openpose_small: per-stage heatmap and PAF outputs at stride 4, refinement stages fed the
trunk features plus the previous stage's maps, every stage trained (gradients reach all)."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_default_cfg


def test_stage_outputs_and_wiring():
    torch.manual_seed(0)
    m = create_model("openpose_small", num_classes=5, num_limbs=4, width=16, stages=3)
    assert model_default_cfg("openpose_small")["bottom_up"] and m.stride == 4
    x = torch.randn(2, 3, 64, 96)
    heats, pafs = m(x)
    assert [tuple(h.shape) for h in heats] == [(2, 5, 16, 24)] * 3
    assert [tuple(f.shape) for f in pafs] == [(2, 8, 16, 24)] * 3
    # stage 2 sees trunk (16) + heatmaps (5) + fields (8) channels
    assert m.heat[1][0].conv.in_channels == 16 + 5 + 8 and m.heat[0][0].conv.in_channels == 16
    loss = sum(h.square().mean() for h in heats[:1])  # stage 1 alone: later stages untouched
    loss.backward(retain_graph=True)
    assert m.heat[2][-1].weight.grad is None and m.trunk[0].conv.weight.grad is not None
    m.zero_grad()
    sum(f.square().mean() for f in pafs[-1:]).backward()  # the last stage reaches stage 1
    assert m.paf[0][-1].weight.grad.abs().sum() > 0 and m.heat[0][-1].weight.grad.abs().sum() > 0
    m.eval()  # deployment: only the last stage's pair
    with torch.no_grad():
        heat, paf = m(x)
    assert heat.shape == (2, 5, 16, 24) and paf.shape == (2, 8, 16, 24)


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="num_keypoints, num_limbs and stages >= 1"):
        create_model("openpose_small", num_classes=17, num_limbs=0)
