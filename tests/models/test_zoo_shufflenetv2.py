"""ShuffleNetV2 against torchvision: parameters, keys through the converter, outputs with
randomised BatchNorm, feature maps at torchvision's nodes; the unit's split/concat/shuffle
by hand."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.shufflenetv2 import ShuffleUnit
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights

NAMES = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_parity(name, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    info = load_weights(ours, tv.state_dict(), tv_converter=tv_converter(name))
    assert info["skipped_head"] == [] and ours.state_dict().keys() == tv.state_dict().keys()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), tv(x)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if name == "shufflenet_v2_x1_0":
        assert model_info(ours)["params"] == 2_278_604  # the paper: 2.3M


def test_feature_maps_equal_torchvision_nodes(randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.shufflenet_v2_x1_0(weights=None)).eval()
    feats = create_model("shufflenet_v2_x1_0", weights=tv.state_dict(), features_only=True)
    feats.eval()
    assert feats.channels() == [24, 24, 116, 232, 1024]
    assert feats.reductions() == [2, 4, 8, 16, 32]
    nodes = [f["module"] for f in feats.feature_info]
    extractor = create_feature_extractor(tv, return_nodes={n: n for n in nodes})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = feats(x), extractor(x)
    for g, n, r in zip(got, nodes, feats.reductions()):
        assert g.shape[2:] == (64 // r, 64 // r)
        torch.testing.assert_close(g, want[n])


def test_unit_split_concat_shuffle_by_hand(randomize_bn):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    unit = randomize_bn(ShuffleUnit(8, 8, 1)).eval()
    with torch.no_grad():
        y = unit(x)
        right = unit.branch2(x[:, 4:])
    # a 2-group shuffle of [left | right] interleaves: out[2i] = left[i], out[2i+1] = right[i]
    torch.testing.assert_close(y[:, 0::2], x[:, :4])
    torch.testing.assert_close(y[:, 1::2], right)
    down = randomize_bn(ShuffleUnit(8, 16, 2)).eval()
    with torch.no_grad():
        y = down(x)
        torch.testing.assert_close(y[:, 0::2], down.branch1(x))
        torch.testing.assert_close(y[:, 1::2], down.branch2(x))
    assert y.shape == (2, 16, 3, 3)


def test_shapes_grads_in_chans_and_errors():
    torch.manual_seed(0)
    m = create_model("shufflenet_v2_x0_5", num_classes=3, in_chans=1)
    m(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 1024)
    with pytest.raises(ConfigError, match="stride"):
        ShuffleUnit(8, 8, 3)
    with pytest.raises(ConfigError, match="even"):
        ShuffleUnit(8, 12, 1)
    with pytest.raises(ConfigError, match="widths"):
        create_model("shufflenet_v2_x1_0", repeats=(4, 8))
