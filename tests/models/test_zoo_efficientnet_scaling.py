"""EfficientNet B1..B7 (compound scaling of B0) against torchvision: parameters, keys through
the converter, BatchNorm settings, stochastic-depth rates and outputs with randomised BN;
timm for the feature taps. B4..B7 (19-66M parameters) run with -m slow."""

import math

import pytest
import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.efficientnet import EFFICIENTNET_SCALING, MBConv
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights

NAMES = [f"efficientnet_b{i}" for i in range(1, 8)]
FAST = {"efficientnet_b1", "efficientnet_b2", "efficientnet_b3"}


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_torchvision_parity(name, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    info = load_weights(ours, tv.state_dict(), tv_converter=tv_converter(name))
    assert info["skipped_head"] == [] and ours.state_dict().keys() == tv.state_dict().keys()
    bn = [(m.eps, m.momentum) for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_tv = [(m.eps, m.momentum) for m in tv.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn == bn_tv
    ours_p = [m.stochastic_depth.p for m in ours.modules() if isinstance(m, MBConv)]
    tv_p = [m.stochastic_depth.p for m in tv.modules() if hasattr(m, "stochastic_depth")]
    assert ours_p == pytest.approx(tv_p, abs=1e-12)
    assert ours.classifier[0].p == tv.classifier[0].p
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = ours(x), tv(x)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(b.abs().max())))


def test_compound_scaling_of_depth_width_and_resolution():
    """Blocks per stage = ceil(B0 repeats * d); channels = B0's * w rounded to 8; input side
    = the paper's resolution; parameter counts = torchvision's published ones."""
    b0_repeats = (1, 2, 2, 3, 3, 4, 1)
    published = {"efficientnet_b1": 7_794_184, "efficientnet_b4": 19_341_616,
                 "efficientnet_b7": 66_347_960}  # fmt: skip
    for name, (w, d, res, _) in EFFICIENTNET_SCALING.items():
        with torch.device("meta"):
            m = create_model(name)
        repeats = [len(m.features[i]) for i in range(1, 8)]
        assert repeats == [math.ceil(r * d) for r in b0_repeats]
        assert m.features[7][0].out_channels == max(8, int(320 * w + 4) // 8 * 8)
        assert m.default_input_size == (3, res, res)
        if name in published:
            assert model_info(m)["params"] == published[name]


@pytest.mark.parametrize("name", NAMES)
def test_feature_taps_equal_timm(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ref = timm.create_model(name, features_only=True)
        got = create_model(name, features_only=True)
    assert got.channels() == ref.feature_info.channels()
    assert got.reductions() == ref.feature_info.reduction()


def test_features_and_bad_scaling():
    torch.manual_seed(0)
    feats = create_model("efficientnet_b1", features_only=True, out_indices=(1, 3)).eval()
    outs = feats(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 24, 16, 16), (1, 112, 4, 4)]
    with pytest.raises(ConfigError, match="width_mult"):
        create_model("efficientnet_b2", width_mult=0.0)
