import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.nn.blocks import CSPBlock, DenseBlock
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.fuse import fuse_conv_bn, fuse_model
from cvcraft.nn.pool import SPPF


def _randomize_bn(model: nn.Module) -> nn.Module:
    # Fresh BN layers are the identity; random statistics make the fold non-trivial.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.5)
    return model


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("groups,bias", [(1, False), (2, True), (4, False)])
def test_fuse_conv_bn_matches_torch_fusion(groups, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups, bias=bias).eval()
    bn = _randomize_bn(nn.Sequential(nn.BatchNorm2d(12))).eval()[0]
    ours = fuse_conv_bn(conv, bn)
    ref = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)  # oracle
    torch.testing.assert_close(ours.weight, ref.weight)
    torch.testing.assert_close(ours.bias, ref.bias)
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(ours(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_fuse_conv_bn_rejects_bn_without_running_stats():
    with pytest.raises(ConfigError, match="running statistics"):
        fuse_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ConfigError, match="output channels"):
        fuse_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))


@pytest.mark.parametrize("name,size", [("resnet20", 32), ("resnet18", 64)])
def test_fused_resnet_equals_unfused(name, size):
    torch.manual_seed(0)
    model = _randomize_bn(create_model(name, num_classes=10)).eval()
    x = torch.randn(2, 3, size, size)
    fused = fuse_model(model)
    assert _count_bn(fused) == 0 and _count_bn(model) > 0  # original left untouched
    assert type(fused) is type(model) and hasattr(fused, "forward_features")
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max().item() <= 1e-4


def test_fx_path_fuses_by_dataflow_not_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)  # odd names
            self.c, self.d = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            self.unit = ConvBNAct(4, 4)

        def forward(self, x):
            y = self.c(self.b(self.a(x)).relu())
            return self.unit(self.d(y) + y)  # c's output also feeds the sum: must not fuse

    torch.manual_seed(0)
    net = _randomize_bn(Net()).eval()
    fused = fuse_model(net)
    assert isinstance(fused.b, nn.Identity) and isinstance(fused.unit.bn, nn.Identity)
    assert isinstance(fused.d, nn.BatchNorm2d)  # left alone: c has a second consumer
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)


class _Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx, forcing the structural fallback."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.unit = ConvBNAct(4, 4, act="silu")

    def forward(self, x):
        x = self.stem(x)
        if x.sum() > 0:  # fx cannot trace a branch on a tensor value
            x = x * 2
        return self.unit(self.bn1(self.conv1(x)))


def test_structural_fallback_when_fx_cannot_trace():
    torch.manual_seed(0)
    net = _randomize_bn(_Untraceable()).eval()
    with pytest.raises(torch.fx.proxy.TraceError, match="cannot be used as inputs to control flow"):
        torch.fx.symbolic_trace(net)
    x = torch.randn(2, 3, 8, 8)
    fused = fuse_model(net, example_input=x)
    assert _count_bn(fused) == 0
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)


def test_example_input_catches_a_wrong_fallback_fusion():
    class PreAct(nn.Module):  # bn1 runs *before* conv1: the naming convention lies
        def __init__(self):
            super().__init__()
            self.bn1, self.conv1 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            if x.sum() > 0:
                x = -x
            return self.conv1(self.bn1(x))

    torch.manual_seed(0)
    net = _randomize_bn(PreAct()).eval()
    with pytest.raises(ConfigError, match="differs from the original"):
        fuse_model(net, example_input=torch.randn(2, 4, 6, 6))


def test_preactivation_dense_block_fuses_only_conv_then_bn():
    # DenseNet runs norm1 -> conv1 -> norm2 -> conv2: only (conv1, norm2) is a conv->BN pair.
    torch.manual_seed(0)
    block = _randomize_bn(DenseBlock(2, 6, growth_rate=4)).eval()
    fused = fuse_model(block)
    assert _count_bn(fused) == 2  # the two norm1 layers (before a conv) stay
    assert all(isinstance(layer.norm2, nn.Identity) for layer in fused.values())
    x = torch.randn(2, 6, 7, 7)
    torch.testing.assert_close(fused(x), block(x), atol=1e-5, rtol=1e-5)


def test_fuse_yolo_style_blocks():
    torch.manual_seed(0)
    net = _randomize_bn(nn.Sequential(CSPBlock(8, 16, n=2), SPPF(16, 8))).eval()
    fused = fuse_model(net)
    assert _count_bn(fused) == 0
    x = torch.randn(1, 8, 12, 12)
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)
