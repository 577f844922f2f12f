"""MobileNetV3 small/large against torchvision (parameters, keys through the converter,
outputs with randomised BatchNorm) and timm (feature channels/reductions)."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.mobilenetv3 import MobileNetV3Block
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("width_mult", [1.0, 0.75])
def test_torchvision_parity(name, width_mult, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, name)(weights=None, width_mult=width_mult))
    tv.eval()
    ours = create_model(name, width_mult=width_mult).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    info = load_weights(ours, tv.state_dict(), tv_converter=tv_converter(name))
    assert info["skipped_head"] == [] and ours.state_dict().keys() == tv.state_dict().keys()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), tv(x)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_param_counts_match_the_paper_table():
    with torch.device("meta"):
        large, small = create_model("mobilenet_v3_large"), create_model("mobilenet_v3_small")
    assert model_info(large)["params"] == 5_483_032  # paper: 5.4M
    assert model_info(small)["params"] == 2_542_856  # paper: 2.5M


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_features_equal_torchvision_nodes_and_timm_channels(name, randomize_bn):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    feats = create_model(name, weights=tv.state_dict(), features_only=True).eval()
    with torch.device("meta"):
        ref = timm.create_model(name.replace("_v3_", "v3_") + "_100", features_only=True)
    assert feats.channels() == ref.feature_info.channels()
    assert feats.reductions() == ref.feature_info.reduction() == [2, 4, 8, 16, 32]
    nodes = [f["module"] for f in feats.feature_info]
    extractor = create_feature_extractor(tv, return_nodes={n: n for n in nodes})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = feats(x), extractor(x)
    for g, n, r in zip(got, nodes, feats.reductions()):
        assert g.shape[2:] == (64 // r, 64 // r)
        torch.testing.assert_close(g, want[n], rtol=1e-5, atol=1e-5)


def test_block_uses_hardswish_and_hardsigmoid_se():
    torch.manual_seed(0)
    blk = MobileNetV3Block(16, 5, 48, 16, True, "HS", 1).eval()
    x = torch.randn(2, 16, 8, 8)
    expand, dw, se, proj = blk.block
    with torch.no_grad():  # hand-composed: the formulas, not the modules' own forward
        h = expand[0](x)
        h = expand[1](h)
        h = h * torch.clamp(h + 3, 0, 6) / 6  # h-swish
        h = dw[1](dw[0](h))
        h = h * torch.clamp(h + 3, 0, 6) / 6
        s = se.fc2(torch.relu(se.fc1(h.mean((2, 3), keepdim=True))))
        h = h * torch.clamp(s + 3, 0, 6) / 6  # hard-sigmoid gate
        want = x + proj(h)
        torch.testing.assert_close(blk(x), want)
    assert se.fc1.out_channels == 16  # round_channels(48 // 4) = 16


def test_shapes_grads_in_chans_and_headless():
    torch.manual_seed(0)
    m = create_model("mobilenet_v3_small", num_classes=5, in_chans=1)
    assert m.features[0][0].weight.shape == (16, 1, 3, 3)
    m.train()
    m(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    m.reset_classifier(0)
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 1024)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 576, 2, 2)


def test_bad_options_raise():
    with pytest.raises(ConfigError, match="width_mult"):
        create_model("mobilenet_v3_large", width_mult=0)
    with pytest.raises(ConfigError, match="stride"):
        MobileNetV3Block(16, 3, 16, 16, False, "RE", 3)
    with pytest.raises(ConfigError, match="act"):
        MobileNetV3Block(16, 3, 16, 16, False, "gelu", 1)
