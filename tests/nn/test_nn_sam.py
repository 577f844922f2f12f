"""Spatial attention (CBAM's SAM, YOLOv4's point-wise SAM) against explicit torch ops."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.nn.sam import SpatialAttention


def test_modified_sam_is_pointwise_sigmoid_gate():
    torch.manual_seed(0)
    m = SpatialAttention(6).eval()
    bn = m.gate.bn
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 6, 5, 7)
    z = F.conv2d(x, m.gate.conv.weight)
    z = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    with torch.no_grad():
        assert torch.allclose(m(x), x * torch.sigmoid(z), atol=1e-6)


def test_original_sam_pools_channels_and_shares_one_gate():
    torch.manual_seed(1)
    m = SpatialAttention(4, modified=False).eval()
    x = torch.randn(2, 4, 9, 9)
    desc = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1)
    gate = torch.sigmoid(F.conv2d(desc, m.gate.conv.weight, m.gate.conv.bias, padding=3))
    with torch.no_grad():
        assert torch.allclose(m(x), x * gate, atol=1e-6)


def test_even_kernel_raises():
    with pytest.raises(ConfigError, match="odd"):
        SpatialAttention(4, k=2)
