"""ConvNeXt against torchvision: parameters, keys through the converter, stochastic-depth
schedule and outputs -- with layer scales and LayerNorm affines randomised, since at their
init (1e-6, identity) a wrong block would barely move the output. timm for feature taps."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.convnext import ConvNeXtBlock
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights


def _randomize(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale") or p.dim() == 1:  # scales, biases, LN affines
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
    return model


@pytest.mark.parametrize(
    "name", ["convnext_tiny", pytest.param("convnext_small", marks=pytest.mark.slow)]
)
def test_torchvision_parity(name):
    torch.manual_seed(0)
    tv = _randomize(getattr(torchvision.models, name)(weights=None)).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    info = load_weights(ours, tv.state_dict(), tv_converter=tv_converter(name))
    assert info["skipped_head"] == [] and ours.state_dict().keys() == tv.state_dict().keys()
    ours_p = [m.stochastic_depth.p for m in ours.modules() if isinstance(m, ConvNeXtBlock)]
    tv_p = [m.stochastic_depth.p for m in tv.modules() if hasattr(m, "stochastic_depth")]
    assert ours_p == pytest.approx(tv_p, abs=1e-12) and ours_p[-1] == pytest.approx(
        0.1 if name == "convnext_tiny" else 0.4
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), tv(x)
        branch = ours.features[1][0].layer_scale * ours.features[1][0].block(ours.features[0](x))
    assert branch.abs().mean() > 0.1  # the residual branches matter in this comparison
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(b.abs().max())))


def test_param_count_and_features_equal_torchvision_nodes_and_timm():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tv = _randomize(torchvision.models.convnext_tiny(weights=None)).eval()
    feats = create_model("convnext_tiny", weights=tv.state_dict(), features_only=True).eval()
    assert model_info(tv)["params"] == 28_589_128  # the paper: 28M
    with torch.device("meta"):
        ref = timm.create_model("convnext_tiny", features_only=True)
    assert feats.channels() == ref.feature_info.channels() == [96, 192, 384, 768]
    assert feats.reductions() == ref.feature_info.reduction() == [4, 8, 16, 32]
    nodes = [f["module"] for f in feats.feature_info]
    extractor = create_feature_extractor(tv, return_nodes={n: n for n in nodes})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = feats(x), extractor(x)
    for g, n in zip(got, nodes):
        torch.testing.assert_close(g, want[n], rtol=1e-4, atol=1e-4)


def test_block_formula_by_hand():
    torch.manual_seed(0)
    blk = _randomize(ConvNeXtBlock(8)).eval()
    x = torch.randn(2, 8, 6, 6)
    dw, _, ln, fc1, _, fc2, _ = blk.block
    with torch.no_grad():
        h = nn.functional.conv2d(x, dw.weight, dw.bias, padding=3, groups=8).permute(0, 2, 3, 1)
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        h = (h - mu) / torch.sqrt(var + 1e-6) * ln.weight + ln.bias
        h = fc1(h)
        h = 0.5 * h * (1 + torch.erf(h / 2**0.5))  # exact GELU
        h = fc2(h).permute(0, 3, 1, 2)
        torch.testing.assert_close(blk(x), x + blk.layer_scale * h, rtol=1e-5, atol=1e-5)


def test_cifar_variant_shapes_grads_and_errors():
    torch.manual_seed(0)
    m = create_model("convnext_tiny_cifar", num_classes=10, in_chans=1, drop_path_rate=0.0)
    assert m.default_input_size == (1, 32, 32)
    assert m.forward_features(torch.randn(1, 1, 32, 32)).shape == (1, 768, 2, 2)
    m(torch.randn(2, 1, 32, 32)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 768)
    with pytest.raises(ConfigError, match="stem_stride"):
        create_model("convnext_tiny", stem_stride=3)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_model("convnext_tiny", drop_path_rate=1.0)
