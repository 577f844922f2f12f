"""DeepLabV3 / DeepLabV3+ / U-Net on MobileNet encoders.

Oracles: torchvision's ``mobilenet_v3_large(dilated=True)`` (the dilated encoder) and
``deeplabv3_mobilenet_v3_large`` (through the registered converter); smp's ``Unet`` and
``DeepLabV3Plus`` on timm's MobileNetV3 (``tu-mobilenetv3_large_100``), same layers in the
same order, weights copied after a shape check (timm's BN eps is 1e-5, ours 1e-3: matched)."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.segmentation.deeplab import SMP_DEEPLABV3PLUS
from cvcraft.models.segmentation.encoders import mobilenet_backbone, resnet_backbone


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_encoder_equals_torchvision_dilated_mobilenet_v3(output_stride, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.mobilenet_v3_large(weights=None, dilated=True)).eval()
    enc = mobilenet_backbone("mobilenet_v3_large", output_stride=output_stride).eval()
    enc.load_state_dict({k: v for k, v in tv.state_dict().items() if k.startswith("features")})
    assert [f["reduction"] for f in enc.feature_info] == [
        2,
        4,
        8,
        min(16, output_stride),
        output_stride,
    ]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = enc.forward_intermediates(x)
        if output_stride == 16:  # torchvision's dilated=True is exactly os 16
            nodes = [f["module"] for f in enc.feature_info]
            want = create_feature_extractor(tv, {n: n for n in nodes})(x)
            for g, n in zip(got, nodes):
                torch.testing.assert_close(g, want[n])
    for g, f in zip(got, enc.feature_info):
        assert g.shape[1:] == (f["num_chs"], 64 // f["reduction"], 64 // f["reduction"])
    # classifier and unused layers are gone: every parameter is on the forward path
    assert not any(n.startswith("classifier") for n, _ in enc.named_parameters())


def test_deeplabv3_mobilenet_v3_large_equals_torchvision(randomize_bn):
    torch.manual_seed(0)
    tv = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None
    )
    tv = randomize_bn(tv).eval()
    ours = create_model("deeplabv3_mobilenet_v3_large", weights=tv.state_dict()).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        a, b = ours(x), tv(x)["out"]
    assert a.shape == (1, 21, 96, 80) and b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _copy_from_smp(ours, ref):
    for m in ours.backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5  # timm's MobileNetV3 BN
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert [v.shape for v in ref_sd.values()] == [v.shape for v in our_sd.values()]
    ours.load_state_dict(dict(zip(our_sd, ref_sd.values())))


def test_unet_mobilenet_v3_equals_smp_unet(randomize_bn):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    ref = randomize_bn(smp.Unet("tu-mobilenetv3_large_100", encoder_weights=None, classes=3))
    ours = create_model("unet_mobilenet_v3_large", num_classes=3, head_kernel=3)
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    _copy_from_smp(ours, ref)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = ours.eval()(x), ref.eval()(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_deeplabv3plus_mobilenet_v3_equals_smp(randomize_bn):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    ref = smp.DeepLabV3Plus("tu-mobilenetv3_large_100", encoder_weights=None, classes=3)
    ref = randomize_bn(ref).eval()
    ours = create_model("deeplabv3plus_mobilenet_v3_large", num_classes=3, **SMP_DEEPLABV3PLUS)
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    _copy_from_smp(ours, ref)
    # timm keeps the formerly strided block at the previous dilation (ResNet's rule);
    # torchvision's, which we follow, dilates it too. Match it to compare the rest.
    dw = ours.backbone.features[13].block[1][0]
    assert dw.dilation == (2, 2) and ref.encoder.model.blocks[5][0].conv_dw.dilation == (1, 1)
    dw.dilation, dw.padding = (1, 1), (2, 2)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        a, b = ours.eval()(x), ref(x)
    assert a.shape == (1, 3, 128, 96)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize(
    "name", ["deeplabv3plus_mobilenet_v2", "unet_mobilenet_v2", "deeplabv3plus_mobilenet_v3_large"]
)
def test_shapes_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=4).train()
    y = m(torch.randn(2, 3, 64, 48))
    y = y[0] if isinstance(y, tuple) else y
    assert y.shape == (2, 4, 64, 48)
    y.square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_resnet_backbone_hands_mobilenets_over_and_bad_names_raise():
    with torch.device("meta"):
        enc = resnet_backbone("mobilenetv2_100", output_stride=8)
    assert [f["num_chs"] for f in enc.feature_info] == [16, 24, 32, 96, 320]
    assert [f["reduction"] for f in enc.feature_info] == [2, 4, 8, 8, 8]
    with pytest.raises(ConfigError, match="not a MobileNet"):
        mobilenet_backbone("resnet18")
    with pytest.raises(ConfigError, match="output_stride"):
        mobilenet_backbone("mobilenet_v2", output_stride=4)
