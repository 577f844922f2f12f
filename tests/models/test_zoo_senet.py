"""SE-ResNet-50 / SE-ResNeXt-50 against timm (same layout): parameter counts, strict
state_dict and outputs with randomised BatchNorm; the SE gate by hand; timm feature taps."""

import pytest
import torch

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.senet import SEBottleneck

timm = pytest.importorskip("timm")


@pytest.mark.parametrize(
    "name", ["seresnet50", pytest.param("seresnext50_32x4d", marks=pytest.mark.slow)]
)
def test_timm_parity(name, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model(name, pretrained=False)).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if name == "seresnet50":
        assert model_info(ours)["params"] == 28_088_024  # the paper: 28.1M


def test_se_gate_reweights_the_branch_before_the_sum(randomize_bn):
    torch.manual_seed(0)
    blk = randomize_bn(SEBottleneck(64, 16)).eval()  # 64 -> 64 channels, identity shortcut
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        h = torch.relu(blk.bn1(blk.conv1(x)))
        h = torch.relu(blk.bn2(blk.conv2(h)))
        h = blk.bn3(blk.conv3(h))
        s = torch.sigmoid(blk.se.fc2(torch.relu(blk.se.fc1(h.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(blk(x), torch.relu(x + h * s))
    assert blk.se.fc1.out_channels == 4  # 64 / 16


def test_feature_taps_equal_timm():
    with torch.device("meta"):
        ref = timm.create_model("seresnet50", features_only=True)
        got = create_model("seresnet50", features_only=True)
    assert got.channels() == ref.feature_info.channels()
    assert got.reductions() == ref.feature_info.reduction()
