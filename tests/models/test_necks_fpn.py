"""The shared FPN neck against torchvision's FeaturePyramidNetwork with the same weights."""

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.faster_rcnn import from_torchvision_state_dict
from cvcraft.models.necks import FPN


@pytest.mark.parametrize("extra_pool", [True, False])
def test_fpn_equals_torchvision_on_odd_sizes(extra_pool):
    torch.manual_seed(0)
    chans = [8, 16, 32, 64]
    ref = FeaturePyramidNetwork(chans, 24, LastLevelMaxPool() if extra_pool else None).eval()
    ours = FPN(chans, 24, extra_pool=extra_pool).eval()
    sd = {f"backbone.fpn.{k}": v for k, v in ref.state_dict().items()}
    ours.load_state_dict(
        {k.removeprefix("backbone.fpn."): v for k, v in from_torchvision_state_dict(sd).items()}
    )
    sizes = [(33, 47), (17, 24), (9, 12), (5, 6)]  # odd: upsampling goes to the lateral's size
    feats = [torch.randn(2, c, h, w) for c, (h, w) in zip(chans, sizes)]
    with torch.no_grad():
        got = ours(feats)
        want = list(ref({str(i): f for i, f in enumerate(feats)}).values())
    assert len(got) == len(want) == 4 + extra_pool
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_fpn_on_features_only_backbone_and_errors():
    torch.manual_seed(0)
    trunk = create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    fpn = FPN(trunk.channels(), 32)
    levels = fpn(trunk(torch.randn(1, 3, 64, 64)))
    assert [tuple(p.shape[-2:]) for p in levels] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    with pytest.raises(ConfigError, match="built for 4 levels got 3"):
        fpn(levels[:3])
    with pytest.raises(ConfigError, match="FPN needs"):
        FPN([], 32)
