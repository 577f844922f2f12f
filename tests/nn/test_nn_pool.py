import importlib

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.nn.pool import (
    ASPP,
    SPP,
    SPPF,
    AdaptivePool2d,
    GlobalPool2d,
    SimSPPF,
    SpatialPyramidPool,
)


def test_global_pool_modes():
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(GlobalPool2d("avg")(x), x.mean((2, 3)))
    torch.testing.assert_close(GlobalPool2d("max")(x), x.amax((2, 3)))
    torch.testing.assert_close(GlobalPool2d("avgmax")(x), 0.5 * (x.mean((2, 3)) + x.amax((2, 3))))
    cat = GlobalPool2d("catavgmax", flatten=False)(x)
    assert cat.shape == (2, 6, 1, 1)
    with pytest.raises(ConfigError, match="pool mode"):
        GlobalPool2d("min")


def test_adaptive_pool_averages_blocks():
    x = torch.randn(2, 3, 6, 8)
    ref = x.view(2, 3, 3, 2, 4, 2).mean((3, 5))  # 3x4 grid of 2x2 blocks
    torch.testing.assert_close(AdaptivePool2d((3, 4), "avg")(x), ref)
    ref_max = x.view(2, 3, 3, 2, 4, 2).amax((3, 5))
    torch.testing.assert_close(AdaptivePool2d((3, 4), "max")(x), ref_max)


def test_spatial_pyramid_pool_fixed_length():
    x = torch.randn(2, 3, 8, 8)
    out = SpatialPyramidPool((1, 2, 4))(x)
    assert out.shape == (2, 3 * 21)
    torch.testing.assert_close(out[:, :3], x.amax((2, 3)))
    torch.testing.assert_close(out[:, 3:15], x.view(2, 3, 2, 4, 2, 4).amax((3, 5)).flatten(1))
    assert SpatialPyramidPool()(torch.randn(1, 3, 13, 9)).shape == (1, 63)


def test_sppf_equals_spp_5_9_13_with_same_weights():
    torch.manual_seed(0)
    spp, sppf = SPP(8, 6, (5, 9, 13)).eval(), SPPF(8, 6, 5).eval()
    for m in spp.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    sppf.load_state_dict(spp.state_dict())
    x = torch.randn(2, 8, 16, 16)
    torch.testing.assert_close(sppf(x), spp(x))
    # and the SPP branch is the stated formula: stride-1 max-pools, padded with -inf
    y = spp.cv1(x)
    pools = [F.max_pool2d(y, k, 1, k // 2) for k in (5, 9, 13)]
    torch.testing.assert_close(spp(x), spp.cv2(torch.cat([y, *pools], 1)))


def test_simsppf_uses_relu():
    m = SimSPPF(8, 4)
    assert isinstance(m.cv1.act, torch.nn.ReLU) and isinstance(m.cv2.act, torch.nn.ReLU)
    assert m(torch.randn(1, 8, 7, 7)).shape == (1, 4, 7, 7)


def test_aspp_equals_torchvision_aspp_with_mapped_weights(randomize_bn):
    """torchvision's ASPP weights renamed by the production DeepLabV3 converter (the ASPP
    sits at ``classifier.0`` in torchvision's model), not copied by position."""
    from cvcraft.models.segmentation.deeplab import from_torchvision_state_dict

    tv_aspp = importlib.import_module("torchvision.models.segmentation.deeplabv3").ASPP
    torch.manual_seed(0)
    ref = randomize_bn(tv_aspp(16, [2, 4, 6], out_channels=8)).eval()
    ours = ASPP(16, 8, rates=(2, 4, 6)).eval()
    renamed = from_torchvision_state_dict(
        {f"classifier.0.{k}": v for k, v in ref.state_dict().items()}
    )
    ours.load_state_dict({k.removeprefix("classifier.0."): v for k, v in renamed.items()})
    x = torch.randn(2, 16, 9, 11)
    torch.testing.assert_close(ours(x), ref(x))
    assert [b.conv.dilation[0] for b in list(ours.convs)[1:4]] == [2, 4, 6]
