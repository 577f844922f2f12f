"""Pre-activation ResNet-18/34 against timm's ``resnetv2_18/34`` (keys mapped by
``from_timm_state_dict``): parameter counts and outputs with randomised BatchNorm; the
identity shortcut; feature taps; the CIFAR variant."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.preact_resnet import PreActBasicBlock, from_timm_state_dict

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet34"])
def test_timm_parity(name, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model(name.replace("preact_resnet", "resnetv2_"))).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(from_timm_state_dict(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(b.abs().max())))


def test_block_is_preactivated_with_an_identity_shortcut(randomize_bn):
    torch.manual_seed(0)
    blk = randomize_bn(PreActBasicBlock(16, 16)).eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        f = blk.conv2(torch.relu(blk.norm2(blk.conv1(torch.relu(blk.norm1(x))))))
        torch.testing.assert_close(blk(x), x + f)  # nothing after the addition
    down = randomize_bn(PreActBasicBlock(16, 32, stride=2)).eval()
    with torch.no_grad():  # the projection reads the pre-activated input
        pre = torch.relu(down.norm1(x))
        want = down.downsample(pre) + down.conv2(torch.relu(down.norm2(down.conv1(pre))))
        torch.testing.assert_close(down(x), want)


def test_feature_taps_cifar_variant_and_errors():
    with torch.device("meta"):
        ref = timm.create_model("resnetv2_18", features_only=True)
        got = create_model("preact_resnet18", features_only=True)
    assert got.channels() == ref.feature_info.channels()
    assert got.reductions() == ref.feature_info.reduction()
    torch.manual_seed(0)
    m = create_model("preact_resnet18_cifar")
    feats = m.forward_intermediates(torch.randn(2, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 32, 16, 8, 4]
    m(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ConfigError, match="stem"):
        create_model("preact_resnet18", stem="tiny")
