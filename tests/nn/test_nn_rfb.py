"""RFB: values against a functional rebuild with torch ops, receptive fields against the
paper's branch design (3, 9, 15 px) measured by back-propagating one output pixel."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.nn.rfb import RFB


def _cba(m, x, act=True):
    """ConvBNAct in eval with torch ops."""
    c, bn = m.conv, m.bn
    y = F.conv2d(x, c.weight, None, c.stride, c.padding, c.dilation)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.relu(y) if act else y


def _randomise_bn(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_rfb_equals_functional_rebuild(stride):
    torch.manual_seed(0)
    m = RFB(16, 32, stride=stride).eval()
    _randomise_bn(m)
    x = torch.randn(2, 16, 20, 20)
    outs = []
    for br in m.branches:
        y = x
        for i, layer in enumerate(br):
            y = _cba(layer, y, act=i < len(br) - 1)
        outs.append(y)
    fused = _cba(m.fuse, torch.cat(outs, 1), act=False)
    ref = F.relu(0.1 * fused + _cba(m.shortcut, x, act=False))
    with torch.no_grad():
        assert torch.allclose(m(x), ref, atol=1e-5)
    assert m(x).shape == (2, 32, 20 // stride, 20 // stride)


@pytest.mark.parametrize("branch,field", [(0, 3), (1, 9), (2, 15)])
def test_branch_receptive_fields(branch, field):
    torch.manual_seed(1)
    m = RFB(8, 16).eval()
    x = torch.randn(1, 8, 31, 31, requires_grad=True)
    m.branches[branch](x)[0, :, 15, 15].sum().backward()
    nz = (x.grad[0].abs().amax(0) > 0).nonzero()
    extent = nz.max(0).values - nz.min(0).values + 1
    assert extent.tolist() == [field, field]


def test_bad_stride_raises():
    with pytest.raises(ConfigError, match="stride"):
        RFB(8, 8, stride=3)
