"""Our segmentation models configured as segmentation_models_pytorch's (smp) equivalents:
same parameters, and with smp's weights copied in, the same outputs (smp is the oracle);
and the exact shortcuts that make ours faster checked against the textbook form."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.segmentation.deeplab import SMP_DEEPLABV3PLUS
from cvcraft.models.segmentation.unet_pp import (
    SMP_UNETPLUSPLUS,
    NestedNode,
    smp_unetplusplus_state_dict,
)
from cvcraft.models.weights import rename_keys


@pytest.fixture
def smp():
    """The peer, skipped per test when absent (the other tests here need no smp)."""
    return pytest.importorskip("segmentation_models_pytorch")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


SMP_DEEPLABV3PLUS_KEYS = [
    (r"^encoder\.", "backbone."),
    (r"^decoder\.aspp\.0\.convs\.0\.0\.", "aspp.0.convs.0.conv."),
    (r"^decoder\.aspp\.0\.convs\.0\.1\.", "aspp.0.convs.0.bn."),
    (r"^decoder\.aspp\.0\.convs\.([123])\.0\.0\.", r"aspp.0.convs.\1.dw."),
    (r"^decoder\.aspp\.0\.convs\.([123])\.0\.1\.", r"aspp.0.convs.\1.pw.conv."),
    (r"^decoder\.aspp\.0\.convs\.([123])\.1\.", r"aspp.0.convs.\1.pw.bn."),
    (r"^decoder\.aspp\.0\.convs\.4\.1\.", "aspp.0.convs.4.1.conv."),
    (r"^decoder\.aspp\.0\.convs\.4\.2\.", "aspp.0.convs.4.1.bn."),
    (r"^decoder\.aspp\.0\.project\.0\.", "aspp.0.project.0.conv."),
    (r"^decoder\.aspp\.0\.project\.1\.", "aspp.0.project.0.bn."),
    (r"^decoder\.aspp\.1\.0\.", "aspp.1.dw."),
    (r"^decoder\.aspp\.1\.1\.", "aspp.1.pw.conv."),
    (r"^decoder\.aspp\.2\.", "aspp.1.pw.bn."),
    (r"^decoder\.block1\.0\.", "low_level.conv."),
    (r"^decoder\.block1\.1\.", "low_level.bn."),
    (r"^decoder\.block2\.0\.0\.", "decoder.0.dw."),
    (r"^decoder\.block2\.0\.1\.", "decoder.0.pw.conv."),
    (r"^decoder\.block2\.1\.", "decoder.0.pw.bn."),
    (r"^segmentation_head\.0\.", "head."),
]


def test_deeplabv3plus_equals_smp_after_weight_copy(smp, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(smp.DeepLabV3Plus("resnet50", encoder_weights=None, classes=3)).eval()
    ours = create_model("deeplabv3plus_resnet50", num_classes=3, **SMP_DEEPLABV3PLUS).eval()
    assert model_info(ours)["params"] == n_params(ref)
    # smp's names -> ours by name (not by position, which would pair any two same-shaped
    # tensors registered in swapped order), through the library's rename_keys; strict load.
    ours.load_state_dict(rename_keys(ref.state_dict(), SMP_DEEPLABV3PLUS_KEYS), strict=True)
    # smp also dilates the formerly strided 3x3 conv of layer4's first block (torchvision,
    # and so ours, keep it at the previous dilation); match it to compare the rest.
    conv = ours.backbone.layer4[0].conv2
    assert ref.encoder.layer4[0].conv2.dilation == (2, 2) and conv.dilation == (1, 1)
    conv.dilation, conv.padding = (2, 2), (2, 2)
    # 256 px: the os-16 map is 16x16, so rates 24/36 take the centre-tap-only path and
    # rate 12 the oneDNN one; align_corners=True in both x4 upsamplings.
    x = torch.randn(1, 3, 256, 224)
    with torch.no_grad():
        y, r = ours(x), ref(x)
    assert y.shape == (1, 3, 256, 224)
    assert torch.allclose(y, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34"])
def test_unet_pp_equals_smp_after_weight_copy(smp, encoder, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(smp.UnetPlusPlus(encoder, encoder_weights=None, classes=4)).eval()
    ours = create_model("unet_pp", num_classes=4, encoder=encoder, **SMP_UNETPLUSPLUS).eval()
    assert model_info(ours)["params"] == n_params(ref)
    ours.load_state_dict(smp_unetplusplus_state_dict(ours, ref.state_dict()))  # strict
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        y, r = ours(x), ref(x)
    assert y.shape == (2, 4, 64, 96)
    assert torch.allclose(y, r, rtol=1e-4, atol=1e-5 * r.abs().max().item())


def _direct(node: NestedNode, skips, below):
    """The textbook node: concat [skips, nearest-2x upsampled below], then the DoubleConv."""
    up = torch.nn.functional.interpolate(below, scale_factor=2.0, mode="nearest")
    return node(torch.cat([*skips, up], dim=1))


@pytest.mark.parametrize("n_skips,norm", [(0, "batchnorm"), (1, "batchnorm"), (3, None)])
def test_polyphase_node_equals_upsample_concat_conv_with_gradients(n_skips, norm):
    torch.manual_seed(0)
    node = NestedNode(5 * n_skips + 6, 7, norm)  # norm=None: convs with a bias
    skips = [torch.randn(2, 5, 10, 14) for _ in range(n_skips)]
    below = torch.randn(2, 6, 5, 7, requires_grad=True)
    node.train()  # batch statistics: the BN sees the same pre-activation either way
    y = node.forward_up2(skips, below)
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), [below, *node.parameters()])
    y_ref = _direct(node, skips, below)
    grads_ref = torch.autograd.grad((y_ref * g).sum(), [below, *node.parameters()])
    assert torch.allclose(y, y_ref, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("size", [(64, 96), (50, 70)])
def test_unet_pp_nearest_equals_the_concat_form_at_any_size(size, monkeypatch):
    # 50x70 is no multiple of 8: where a 2x upsampling doesn't land on the skip's size the
    # model interpolates to it instead of using the phases; both must match the oracle.
    torch.manual_seed(0)
    m = create_model("unet_pp", num_classes=2, base=4, depth=3, up="nearest").eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        fast = m(x)
        monkeypatch.setattr(NestedNode, "forward_up2", _direct)
        ref = m(x)
    assert fast.shape == (1, 2, *size)
    assert torch.allclose(fast, ref, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_unet_pp_nearest_traces_without_the_polyphase_shortcut():
    torch.manual_seed(0)
    m = create_model("unet_pp", num_classes=2, base=4, depth=2, up="nearest").eval()
    with torch.no_grad():
        traced = torch.jit.trace(m, torch.randn(1, 3, 32, 32))
        graph = str(traced.inlined_graph)
        x = torch.randn(1, 3, 48, 64)
        assert "as_strided" not in graph and torch.allclose(traced(x), m(x), atol=1e-5)


def test_unet_pp_decoder_channels_set_the_last_node_of_each_level_and_are_checked():
    m = create_model("unet_pp", base=4, depth=3, decoder_channels=(24, 12, 6))
    assert [m.nodes[k][1].conv.out_channels for k in ("x2_1", "x1_2", "x0_3")] == [24, 12, 6]
    assert m.nodes["x1_1"][1].conv.out_channels == 8 and m.heads[0].in_channels == 6
    # x0_3 sees X[0][0..2] (4 + 4 + 4) and up(X[1][2]) brought to 4 by the transposed conv.
    assert m.nodes["x0_3"][0].conv.in_channels == 16 and m.ups["x0_3"].in_channels == 12
    with pytest.raises(
        ConfigError, match=r"decoder_channels needs 3 entries .* got \(24, 12, 6, 3\)"
    ):
        create_model("unet_pp", base=4, depth=3, decoder_channels=(24, 12, 6, 3))  # no final
    with pytest.raises(ConfigError, match=r"deep_supervision=False, got \(8, 8, 8\)"):
        create_model("unet_pp", base=4, depth=3, decoder_channels=(8, 8, 8), deep_supervision=True)
    with pytest.raises(ConfigError, match="up must be one of .* got 'bicubic'"):
        create_model("unet_pp", base=4, up="bicubic")
