"""SimpleBaseline: heatmap shape and stride for backbones of stride 32 (3 deconvs) and 4
(none), and a clear error for a backbone whose stride is not a power-of-two multiple of 4."""

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.tasks import model_task


@pytest.mark.parametrize("backbone,deconvs", [("resnet18", 3), ("resnet20", 0)])
def test_heatmaps_at_stride_4(backbone, deconvs):
    m = create_model("simple_baseline", num_classes=5, backbone=backbone, deconv_channels=8)
    with torch.no_grad():
        y = m.eval()(torch.rand(2, 3, 64, 96))
    assert y.shape == (2, 5, 16, 24) and m.stride == 4
    assert sum(isinstance(x, nn.ConvTranspose2d) for x in m.modules()) == deconvs
    assert model_task("simple_baseline") == "pose"


def test_bad_options():
    with pytest.raises(ConfigError, match="num_keypoints must be >= 1"):
        create_model("simple_baseline", num_classes=0)
    with pytest.raises(ConfigError, match="out_stride=8"):
        create_model("simple_baseline", backbone="resnet20", out_stride=8)
