"""Backbone features (``feature_info`` / ``forward_intermediates`` / ``features_only``).

Oracles: torchvision's ``create_feature_extractor`` on the torchvision twin carrying the same
weights (loaded through the production converter, BN statistics randomised) for the values;
timm's ``features_only`` for the channel and reduction lists; hand-composed stages for the
backbones without a torchvision twin.
"""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.models import FeatureListNet, create_model
from cvcraft.models.classification.swin import SwinTransformer
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.classification.vit import VisionTransformer
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights

TINY_VGG = [8, "M", 16, "M", 16, 16, "M", 32, "M", 32, "M"]


def _pair(kind: str, randomize_bn):
    """(ours, torchvision twin, {tap index: torchvision node}) with one set of random weights
    (BN statistics randomised), copied into ours through the registered converter."""
    if kind == "vgg_tiny_bn":
        tv = torchvision.models.VGG(
            torchvision.models.vgg.make_layers(TINY_VGG, batch_norm=True), num_classes=3
        )
        ours = VGG(TINY_VGG, num_classes=3, batch_norm=True)
        name = "vgg11_bn"
    elif kind == "swin_tiny_cfg":
        tv = torchvision.models.SwinTransformer([4, 4], 16, [2, 2], [2, 4], [4, 4], num_classes=3)
        ours = SwinTransformer(3, 3, 4, 16, (2, 2), (2, 4), 4)
        name = "swin_t"
    elif kind == "vit_tiny_cfg":
        tv = torchvision.models.VisionTransformer(32, 8, 3, 2, 16, 32, num_classes=3)
        ours = VisionTransformer(32, 8, 3, 3, embed_dim=16, depth=3, num_heads=2, mlp_ratio=2)
        name = "vit_b_16"
    else:
        tv = getattr(torchvision.models, kind)(weights=None)
        ours = create_model(kind)
        name = kind
    randomize_bn(tv)
    load_weights(ours, tv.state_dict(), tv_converter=tv_converter(name))
    nodes = {
        "swin_tiny_cfg": {0: "features.1", 1: "features.3"},
        "vit_tiny_cfg": {i: f"encoder.layers.encoder_layer_{i}" for i in range(3)},
    }.get(kind, {i: f["module"] for i, f in enumerate(ours.feature_info)})
    return ours, tv, nodes


@pytest.mark.parametrize(
    "kind",
    ["resnet18", "mobilenet_v2", "efficientnet_b0", "densenet121", "vgg_tiny_bn",
     "swin_tiny_cfg", "vit_tiny_cfg"],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:VGG. classifier weights")  # tiny VGG: fc6 input differs
def test_feature_maps_equal_torchvision_feature_extractor(kind, randomize_bn):
    torch.manual_seed(0)
    ours, tv, nodes = _pair(kind, randomize_bn)
    feats = FeatureListNet(ours.eval(), list(nodes)).eval()
    extractor = create_feature_extractor(
        tv.eval(), return_nodes={n: str(i) for i, n in nodes.items()}
    )
    x = torch.randn(2, 3, 64, 64) if "vit" not in kind else torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = feats(x)
        ref = extractor(x)
    assert len(got) == len(nodes)
    for j, (i, info) in enumerate(zip(nodes, feats.feature_info)):
        r = ref[str(i)]
        if kind == "swin_tiny_cfg":
            r = r.permute(0, 3, 1, 2)  # torchvision's Swin stages are channels-last
        elif kind == "vit_tiny_cfg":
            r = r[:, 1:].transpose(1, 2).unflatten(2, (4, 4))  # patch tokens as a 4x4 map
        assert got[j].shape == (2, info["num_chs"], x.shape[2] // info["reduction"],
                                x.shape[3] // info["reduction"])  # fmt: skip
        torch.testing.assert_close(got[j], r, rtol=1e-4, atol=1e-5 * max(1.0, r.abs().max()))


TIMM_NAMES = {
    "resnet50": "resnet50",
    "resnet18": "resnet18",
    "mobilenet_v2": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
    "densenet121": "densenet121",
    "vgg16": "vgg16",
    "vgg16_bn": "vgg16_bn",
    "repvgg_a0": "repvgg_a0",
    "darknet53": "darknet53",
    "cspdarknet53": "cspdarknet53",
    "swin_tiny_patch4_window7_224": "swin_tiny_patch4_window7_224",
}


@pytest.mark.parametrize("ours,theirs", list(TIMM_NAMES.items()))
def test_channels_and_reductions_equal_timm_features_only(ours, theirs):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ref = timm.create_model(theirs, features_only=True, pretrained=False)
        got = create_model(ours, features_only=True)
    assert got.channels() == ref.feature_info.channels()
    assert got.reductions() == ref.feature_info.reduction()


@pytest.mark.parametrize("name", ["repvgg_a0", "darknet53", "cspdarknet53", "resnet20"])
def test_maps_equal_hand_composed_stages(name, randomize_bn):
    torch.manual_seed(0)
    m = randomize_bn(
        create_model(name, width_mult=0.25) if "darknet" in name else create_model(name)
    )
    m.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = m.forward_intermediates(x)
        ref, y = {}, x
        for stage_name, module in m.feature_stages():
            y = m.get_submodule(stage_name)(y)
            assert m.get_submodule(stage_name) is module
            ref[stage_name] = y
        assert torch.equal(m.forward_features(x), got[-1])
    for g, info in zip(got, m.feature_info):
        assert torch.equal(g, ref[info["module"]])
        assert g.shape[1:] == (info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])


def test_features_only_prunes_unused_layers_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = create_model("resnet18", features_only=True, out_indices=(1, 2))
    assert isinstance(net, FeatureListNet)
    names = {n.split(".")[1] for n, _ in net.named_parameters()}
    assert names == {"conv1", "bn1", "layer1", "layer2"}  # layer3/4 and fc are gone
    assert [f["module"] for f in net.feature_info] == ["layer1", "layer2"]
    outs = net(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 16, 16), (2, 128, 8, 8)]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_negative_out_indices_count_from_the_deepest_tap():
    with torch.device("meta"):
        net = create_model("mobilenet_v2", features_only=True, out_indices=(-2, -1))
    assert net.channels() == [96, 320] and net.reductions() == [16, 32]


def test_features_only_keeps_the_weights_it_was_given(tmp_path):
    torch.manual_seed(0)
    full = create_model("resnet18").eval()
    path = tmp_path / "r18.pt"
    torch.save({"model": full.state_dict()}, path)
    feats = create_model("resnet18", weights=path, features_only=True, out_indices=(4,)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(feats(x)[0], full.forward_features(x))


def test_bad_feature_requests_raise_config_errors():
    with pytest.raises(ConfigError, match=r"out_indices \(7,\).*5 feature taps"):
        create_model("resnet18", features_only=True, out_indices=(7,))
    with pytest.raises(ConfigError, match="repeats"):
        create_model("resnet18", features_only=True, out_indices=(1, -4))
    with pytest.raises(ConfigError, match="needs features_only=True"):
        create_model("resnet18", out_indices=(1, 2))
    with pytest.raises(ConfigError, match="LeNet5 has no feature_info"):
        create_model("lenet5", features_only=True)


def test_dilated_resnet_taps_equal_torchvision_intermediate_layer_getter(randomize_bn):
    from torchvision.models._utils import IntermediateLayerGetter

    from cvcraft.models.segmentation.encoders import resnet_backbone

    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]))
    ours = resnet_backbone("resnet50", output_stride=8)
    with pytest.warns(UserWarning, match="fc.bias', 'fc.weight'"):  # the trunk has no fc
        load_weights(ours, tv.state_dict(), tv_converter=tv_converter("resnet50"))
    taps = [f["module"] for f in ours.feature_info]
    getter = IntermediateLayerGetter(tv, {t: t for t in taps}).eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        got, ref = ours.eval().forward_intermediates(x), getter(x)
    assert [f["reduction"] for f in ours.feature_info] == [2, 4, 8, 8, 8]
    for g, t, info in zip(got, taps, ours.feature_info):
        assert g.shape[-2:] == (48 // info["reduction"], 64 // info["reduction"])
        torch.testing.assert_close(g, ref[t], rtol=1e-4, atol=1e-5 * max(1.0, ref[t].abs().max()))
