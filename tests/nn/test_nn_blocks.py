import importlib

import pytest
import torch
from torch import nn

import cvcraft.nn as cnn
from cvcraft.nn.blocks import CSPBlock, CSPBottleneck, DenseBlock, InceptionBlock


def _randomize_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_()
                m.bias.normal_()


def _grads_reach_every_parameter(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reached {missing}"


def test_resnet_blocks_are_reexported_not_duplicated():
    resnet = importlib.import_module("cvcraft.models.classification.resnet")
    assert cnn.BasicBlock is resnet.BasicBlock and cnn.Bottleneck is resnet.Bottleneck
    from cvcraft.nn.blocks import BasicBlock

    assert BasicBlock is resnet.BasicBlock
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchBlock'"):
        cnn.NoSuchBlock  # noqa: B018


def test_dense_block_shapes_and_growth():
    block = DenseBlock(3, 8, growth_rate=4, bn_size=4)
    y = block(torch.randn(2, 8, 6, 6))
    assert y.shape == (2, 8 + 3 * 4, 6, 6) and block.out_channels == 20
    layer = block["denselayer2"]
    assert layer.conv1.in_channels == 12 and layer.conv1.out_channels == 16  # bottleneck 4k
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x)[:, :8], x)  # the input passes through unchanged


def test_dense_block_equals_torchvision_dense_block():
    tv = importlib.import_module("torchvision.models.densenet")
    torch.manual_seed(0)
    ref = tv._DenseBlock(num_layers=3, num_input_features=8, bn_size=4, growth_rate=4, drop_rate=0)
    _randomize_bn(ref)
    ours = DenseBlock(3, 8, 4, 4)
    ours.load_state_dict(ref.state_dict(), strict=True)  # same names and shapes
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))
    # a DenseLayer also takes the list of earlier maps
    feats = [x, torch.randn(2, 4, 7, 7)]
    torch.testing.assert_close(ours["denselayer2"](feats), ref.denselayer2(feats))


def test_inception_block_equals_torchvision_inception():
    gl = importlib.import_module("torchvision.models.googlenet")
    torch.manual_seed(0)
    ref = gl.Inception(16, 4, 6, 8, 2, 3, 5)
    _randomize_bn(ref)
    ours = InceptionBlock(16, 4, 6, 8, 2, 3, 5, k5=3, norm_kw={"eps": 1e-3})
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))
    assert ours.out_channels == 4 + 8 + 3 + 5


def test_inception_paper_variant_has_5x5_and_shapes():
    m = InceptionBlock(192, 64, 96, 128, 16, 32, 32)  # inception (3a)
    assert m.branch3[1].conv.kernel_size == (5, 5)
    assert m(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)
    no_bn = InceptionBlock(8, 2, 2, 2, 2, 2, 2, norm=None)
    assert no_bn.branch1.conv.bias is not None


def test_csp_block_shapes_and_formula():
    torch.manual_seed(0)
    m = CSPBlock(16, 32, n=2, e=0.5).eval()
    x = torch.randn(2, 16, 8, 8)
    y = m(x)
    assert y.shape == (2, 32, 8, 8) and m.cv1.conv.out_channels == 16 and len(m.m) == 2
    ref = m.cv3(torch.cat([m.m(m.cv1(x)), m.cv2(x)], 1))
    torch.testing.assert_close(y, ref)
    b = CSPBottleneck(8, 8).eval()
    z = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(b(z), z + b.cv2(b.cv1(z)))
    assert not CSPBottleneck(8, 4).add


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda: DenseBlock(2, 6, 4), torch.randn(2, 6, 5, 5)),
        (lambda: InceptionBlock(6, 2, 3, 4, 2, 3, 2), torch.randn(2, 6, 5, 5)),
        (lambda: CSPBlock(6, 8, n=2), torch.randn(2, 6, 5, 5)),
    ],
)
def test_gradient_reaches_every_parameter(make, x):
    torch.manual_seed(0)
    _grads_reach_every_parameter(make(), x)
