"""CmBN against torch BatchNorm fed the whole accumulation window at once."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.nn.cmbn import CmBN
from cvcraft.nn.norm import get_norm


def test_kth_minibatch_uses_the_pooled_window_statistics():
    torch.manual_seed(0)
    m = CmBN(5, window=3)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-1, 1)
    xs = [torch.randn(2, 5, 4, 6) * 3 + 1 for _ in range(3)]
    x3 = xs[2].clone().requires_grad_(True)
    out1 = m(xs[0])
    m(xs[1])
    out3 = m(x3)
    ref1 = F.batch_norm(xs[0], None, None, m.weight, m.bias, True, 0.0, m.eps)
    assert torch.allclose(out1, ref1, atol=1e-5)
    x3_ref = xs[2].clone().requires_grad_(True)
    full = F.batch_norm(torch.cat([xs[0], xs[1], x3_ref]), None, None, m.weight, m.bias,
                        True, 0.0, m.eps)[4:]  # fmt: skip
    assert torch.allclose(out3, full, atol=1e-5)
    g = torch.randn_like(out3)
    (out3 * g).sum().backward()
    (full * g).sum().backward()
    assert torch.allclose(x3.grad, x3_ref.grad, atol=1e-5)  # the current batch's gradient


def test_running_stats_once_per_window_as_batchnorm_on_the_window():
    torch.manual_seed(1)
    m, bn = CmBN(4, window=2, momentum=0.2), torch.nn.BatchNorm2d(4, momentum=0.2)
    a, b = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5) + 2
    m(a)
    assert torch.equal(m.running_mean, torch.zeros(4))  # not before the window closes
    m(b)
    bn(torch.cat([a, b]))
    assert torch.allclose(m.running_mean, bn.running_mean, atol=1e-5)
    assert torch.allclose(m.running_var, bn.running_var, atol=1e-5)
    m.eval()
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(m(x), bn(x), atol=1e-6)


def test_window_one_is_batchnorm_and_registered_by_name():
    torch.manual_seed(2)
    m = get_norm("cmbn", 3, window=1)
    bn = torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 6, 6)
    assert torch.allclose(m(x), bn(x), atol=1e-5)
    assert torch.allclose(m.running_var, bn.running_var, atol=1e-6)


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="window"):
        CmBN(3, window=0)
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        CmBN(3)(torch.zeros(2, 4, 3, 3))
