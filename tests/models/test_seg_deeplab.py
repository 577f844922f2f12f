import pytest
import torch
import torchvision
from torchvision.models.segmentation import deeplabv3_resnet50

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.registry import tv_converter
from cvcraft.models.segmentation.deeplab import (
    AtrousConv2d,
    atrous,
    from_torchvision_state_dict,
    make_aspp,
)
from cvcraft.models.segmentation.encoders import resnet_backbone


def test_deeplabv3_resnet50_equals_torchvision_through_the_registered_converter(randomize_bn):
    """torchvision's weights (BN statistics randomised) loaded as users load them:
    ``create_model(weights=state_dict)`` renames through the registered converter."""
    torch.manual_seed(0)
    ref = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    randomize_bn(ref)
    ours = create_model("deeplabv3_resnet50", num_classes=5, aux=True, weights=ref.state_dict())
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    assert tv_converter("deeplabv3_resnet50") is from_torchvision_state_dict
    assert set(from_torchvision_state_dict(ref_sd)) == set(our_sd)  # every key renamed
    x = torch.randn(2, 3, 72, 88)
    ref.eval(), ours.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x)["out"], atol=1e-5)
    ref.train(), ours.train()
    torch.manual_seed(1)
    main, (aux,) = ours(x)
    torch.manual_seed(1)
    r = ref(x)
    assert torch.allclose(main, r["out"], atol=1e-5) and torch.allclose(aux, r["aux"], atol=1e-5)


@pytest.mark.parametrize("os_,flags", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilated_backbone_equals_torchvision_replace_stride_with_dilation(os_, flags, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.resnet50(replace_stride_with_dilation=flags)).eval()
    ours = resnet_backbone("resnet50", output_stride=os_).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = ours.forward_intermediates(x)
        r = ref.layer4(
            ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x)))))))
        )
    assert feats[-1].shape[-1] == 64 // os_
    assert torch.allclose(feats[-1], r, atol=1e-5)


def test_basicblock_backbone_dilates_and_bad_stride_raises():
    net = resnet_backbone("resnet18", output_stride=8)
    assert net.layer4[1].conv2.dilation == (4, 4) and net.layer4[0].conv1.stride == (1, 1)
    with torch.no_grad():
        assert net.eval().forward_intermediates(torch.randn(1, 3, 64, 64))[-1].shape == (
            1,
            512,
            8,
            8,
        )
    assert [f["reduction"] for f in net.feature_info] == [2, 4, 8, 8, 8]
    with pytest.raises(ConfigError, match=r"output_stride must be one of \(8, 16, 32\), got 4"):
        resnet_backbone("resnet18", output_stride=4)


def test_separable_aspp_weights_match_the_factorisation_count():
    dense, sep = make_aspp(64, 32, (1, 2, 3)), make_aspp(64, 32, (1, 2, 3), separable=True)
    n_dense, n_sep = (sum(p.numel() for p in m.convs[1:4].parameters()) for m in (dense, sep))
    assert n_dense == 3 * (64 * 32 * 9 + 2 * 32)  # 3x3 conv + BN per branch
    assert n_sep == 3 * (64 * 9 + 2 * 64 + 64 * 32 + 2 * 32)  # dw 3x3 + BN, pw 1x1 + BN


def test_deeplabv3plus_uses_low_level_features_and_rates_follow_output_stride():
    m = create_model("deeplabv3plus_resnet18", num_classes=2, aspp_channels=16).eval()
    assert [b.conv.dilation[0] for b in m.aspp.convs[1:4]] == [6, 12, 18]  # os 16
    m8 = create_model("deeplabv3_resnet18", num_classes=2, aspp_channels=16, output_stride=8)
    assert [b.conv.dilation[0] for b in m8.classifier[0].convs[1:4]] == [12, 24, 36]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # the decoder sees layer1: perturbing its output changes the logits
        y0 = m(x)
        m.low_level.conv.weight.mul_(2)
        assert not torch.allclose(m(x), y0)


def test_separable_bn_false_drops_only_the_depthwise_bn():
    paper = create_model("deeplabv3plus_resnet18", separable=True)
    light = create_model("deeplabv3plus_resnet18", separable=True, separable_bn=False)
    n = [sum(p.numel() for p in m.parameters()) for m in (paper, light)]
    # Each separable conv loses its depthwise half's BN (weight + bias per input channel):
    # three ASPP branches on 512 channels, decoder convs on 256 + 48 and on 256.
    assert n[0] - n[1] == 2 * (3 * 512 + 304 + 256)
    assert isinstance(light.aspp.convs[1].dw, AtrousConv2d) and light.aspp.convs[1].dw.groups == 512


@pytest.mark.parametrize(
    "in_ch,out_ch,groups,rate,size,bias",
    [
        (16, 8, 1, 12, (32, 32), False),  # every tap partly valid: per-tap path (fraction .56)
        (16, 8, 1, 24, (32, 20), True),  # rows partly, columns centre only
        (16, 8, 1, 36, (32, 32), False),  # centre only: a 1x1 conv
        (16, 8, 1, 2, (32, 32), False),  # most taps valid: the plain conv
        (12, 12, 12, 36, (16, 16), True),  # depthwise, centre only: a per-channel scale
        (12, 12, 12, 6, (16, 16), False),  # depthwise, partly valid: the plain conv
        (16, 8, 4, 20, (24, 24), True),  # grouped conv, per-tap path
    ],
)
def test_atrous_conv_equals_the_dense_dilated_conv_with_gradients(
    in_ch, out_ch, groups, rate, size, bias
):
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(in_ch, out_ch, 3, padding=rate, dilation=rate, groups=groups, bias=bias)
    ours = atrous(ref)  # shares the parameters
    assert isinstance(ours, AtrousConv2d) and ours.weight is ref.weight
    x = torch.randn(2, in_ch, *size, requires_grad=True)
    y, y_ref = ours(x), ref(x)
    g = torch.randn_like(y_ref)
    grads = torch.autograd.grad((y * g).sum(), [x, *ref.parameters()])
    grads_ref = torch.autograd.grad((y_ref * g).sum(), [x, *ref.parameters()])
    assert torch.allclose(y, y_ref, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-4)


def test_atrous_conv_not_same_padded_or_strided_is_the_plain_conv():
    torch.manual_seed(0)
    for kw in (dict(padding=1, dilation=4), dict(padding=24, dilation=24, stride=2)):
        ref = torch.nn.Conv2d(4, 4, 3, **kw)
        x = torch.randn(1, 4, 30, 30)
        assert torch.equal(atrous(ref)(x), ref(x))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_atrous_conv_traces_as_the_plain_conv_so_the_graph_holds_at_other_sizes():
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(8, 4, 3, padding=24, dilation=24)
    traced = torch.jit.trace(atrous(ref), torch.randn(1, 8, 16, 16))  # centre-only size
    x = torch.randn(1, 8, 64, 64)  # every tap valid somewhere
    with torch.no_grad():
        assert torch.allclose(traced(x), ref(x), atol=1e-5)
