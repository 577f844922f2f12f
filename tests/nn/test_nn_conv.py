import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import (
    ConvBNAct,
    DeformConv2d,
    DepthwiseSeparableConv,
    _act_inplace,
    channel_shuffle,
    conv1x1,
    dilated_conv,
    grouped_conv,
    hdc_rates,
    hdc_stack,
    transposed_conv,
)


def test_convbnact_same_padding_names_and_value():
    torch.manual_seed(0)
    m = ConvBNAct(3, 8, k=5, s=1, d=2, act="silu").eval()
    assert [n for n, _ in m.named_children()] == ["conv", "bn", "act"]
    assert m.conv.bias is None and m.conv.padding == (4, 4)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2)
    z = F.conv2d(x, m.conv.weight, padding=4, dilation=2)
    z = (z - m.bn.running_mean[:, None, None]) / torch.sqrt(m.bn.running_var[:, None, None] + 1e-5)
    torch.testing.assert_close(m(x), z * torch.sigmoid(z))
    assert ConvBNAct(3, 8, 3, s=2)(x).shape == (2, 8, 5, 5)
    no_norm = ConvBNAct(3, 8, 3, norm=None, act=None)
    assert no_norm.conv.bias is not None and isinstance(no_norm.bn, nn.Identity)


@pytest.mark.parametrize(
    "act, kw",
    [("silu", {}), ("relu", {}), ("hardswish", {}), ("leaky_relu", {"negative_slope": 0.1}),
     ("relu6", {}), ("gelu", {})],
)  # fmt: skip
def test_convbnact_inplace_act_without_grad_equals_module_and_keeps_training_grads(act, kw):
    torch.manual_seed(0)
    m = ConvBNAct(3, 6, act=act, act_kw=kw)
    x = torch.randn(2, 3, 7, 7)
    m.eval()
    reference = m.act(m.bn(m.conv(x))).detach()  # the module activation, out of place
    # the fast path is taken for every elementwise activation torch has in place (not GELU)
    assert (_act_inplace(m.act, reference.clone()) is None) == (act == "gelu")
    with torch.no_grad():
        fast = m(x)
    assert torch.equal(fast, reference)
    with torch.inference_mode():
        assert torch.equal(m(x), reference)
    # frozen layer, grad enabled: no graph through it, same values
    for p in m.parameters():
        p.requires_grad_(False)
    assert torch.equal(m(x), reference)
    # training: autograd must still work (an in-place SiLU here would fail backward)
    for p in m.parameters():
        p.requires_grad_(True)
    m.train()
    xg = x.clone().requires_grad_(True)
    m(xg).square().sum().backward()
    twin = ConvBNAct(3, 6, act=act, act_kw=kw)
    twin.load_state_dict(m.state_dict())
    xt = x.clone().requires_grad_(True)
    twin.act(twin.bn(twin.conv(xt))).square().sum().backward()
    assert torch.allclose(xg.grad, xt.grad, atol=1e-6)


def test_depthwise_separable_equals_its_two_convs():
    torch.manual_seed(0)
    m = DepthwiseSeparableConv(4, 6, k=3, s=2, norm=None, act=None, pw_act=None)
    assert m.dw.conv.groups == 4 and m.dw.conv.weight.shape == (4, 1, 3, 3)
    x = torch.randn(1, 4, 8, 8)
    ref = F.conv2d(x, m.dw.conv.weight, m.dw.conv.bias, stride=2, padding=1, groups=4)
    ref = F.conv2d(ref, m.pw.conv.weight, m.pw.conv.bias)
    torch.testing.assert_close(m(x), ref)
    assert conv1x1(4, 6, stride=2)(x).shape == (1, 6, 4, 4)


def test_grouped_conv_equals_per_group_convs_concatenated():
    torch.manual_seed(0)
    conv = grouped_conv(6, 9, k=3, groups=3)
    x = torch.randn(2, 6, 7, 7)
    w = conv.weight.chunk(3, dim=0)  # each (3, 2, 3, 3)
    ref = torch.cat([F.conv2d(xi, wi, padding=1) for xi, wi in zip(x.chunk(3, 1), w)], 1)
    torch.testing.assert_close(conv(x), ref)
    with pytest.raises(ConfigError, match="groups=4"):
        grouped_conv(6, 8, groups=4)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups [0,1,2] and [3,4,5] -> interleaved
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_dilated_conv_keeps_size_and_samples_dilated_taps():
    conv = dilated_conv(1, 1, dilation=3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # top-left tap: offset (-3, -3)
    x = torch.randn(1, 1, 10, 10)
    y = conv(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[0, 0, 3:, 3:], x[0, 0, :-3, :-3])


def _offsets_1d(rates, k=3):
    """Every offset reachable by stacking k-tap dilated convs (brute force over all taps)."""
    half = (k - 1) // 2
    taps = range(-half, half + 1)
    combos = itertools.product(taps, repeat=len(rates))
    return {sum(r * t for r, t in zip(rates, combo)) for combo in combos}


def _contiguous(offsets):
    return offsets == set(range(min(offsets), max(offsets) + 1))


@pytest.mark.parametrize("n,max_rate", [(3, 5), (3, 9), (4, 17), (6, 5), (4, 10), (5, 1)])
def test_hdc_rates_have_no_gridding(n, max_rate):
    rates = hdc_rates(n, max_rate)
    assert len(rates) == n and max(rates) == max_rate
    assert math.gcd(*rates) == 1
    assert _contiguous(_offsets_1d(rates))  # every pixel in the receptive field is sampled
    # sawtooth: the group repeats
    g = rates.index(max_rate) + 1
    assert all(rates[i] == rates[i % g] for i in range(n))


def test_hdc_rates_paper_example_and_gridding_counterexample():
    assert hdc_rates(3, 5) == [1, 2, 5]  # Wang et al.'s example group
    assert not _contiguous(_offsets_1d([2, 4, 8]))  # common factor 2 -> holes
    assert not _contiguous(_offsets_1d([1, 2, 9]))  # jump too large -> holes
    with pytest.raises(ConfigError, match="without holes"):
        hdc_rates(2, 9)


def test_hdc_stack_receptive_field_has_no_holes_in_2d():
    # Gradient of one output pixel w.r.t. the input marks every pixel that influences it.
    torch.manual_seed(0)
    stack = hdc_stack(1, 3, 5, act=None, norm=None)
    with torch.no_grad():
        for m in stack.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
    x = torch.zeros(1, 1, 41, 41, requires_grad=True)
    stack(x)[0, 0, 20, 20].backward()
    hit = (x.grad[0, 0] != 0).numpy()
    rf = 1 + 2 * (1 + 2 + 5)  # 17 x 17
    lo, hi = 20 - rf // 2, 20 + rf // 2 + 1
    assert hit[lo:hi, lo:hi].all() and hit.sum() == rf * rf
    assert np.array_equal([m.conv.dilation[0] for m in stack], [1, 2, 5])


def test_deform_conv_zero_offset_is_plain_conv():
    torch.manual_seed(0)
    m = DeformConv2d(4, 6, k=3, s=1)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, m.bias, padding=1), atol=1e-5, rtol=1e-5)

    dcn2 = DeformConv2d(4, 6, k=3, s=2, modulated=True)
    ref = F.conv2d(x, dcn2.weight, dcn2.bias, stride=2, padding=1)
    off = torch.zeros(2, 18, 5, 5)
    torch.testing.assert_close(dcn2(x, off, torch.ones(2, 9, 5, 5)), ref, atol=1e-5, rtol=1e-5)
    # learned mask starts at sigmoid(0) = 0.5 (DCNv2 init)
    half = 0.5 * F.conv2d(x, dcn2.weight, None, stride=2, padding=1) + dcn2.bias[:, None, None]
    torch.testing.assert_close(dcn2(x), half, atol=1e-5, rtol=1e-5)


def test_deform_conv_integer_offset_shifts_sampling():
    torch.manual_seed(0)
    m = DeformConv2d(3, 5, k=3, bias=False)
    x = torch.randn(1, 3, 8, 8)
    off = torch.zeros(1, 18, 8, 8)
    off[:, 1::2] = 1.0  # dx = +1 for every tap: sample one pixel to the right
    # Tap (ky, kx) at output (y, x) now reads x(y + ky, x + kx + 1): the zero-padded input
    # with its windows moved one column right (left pad 1 - 1 = 0, right pad 1 + 1 = 2).
    ref = F.conv2d(F.pad(x, (0, 2, 1, 1)), m.weight)
    torch.testing.assert_close(m(x, off), ref, atol=1e-5, rtol=1e-5)


def test_deform_conv_offsets_get_gradients():
    m = DeformConv2d(2, 2, modulated=True)
    m(torch.randn(1, 2, 6, 6)).square().sum().backward()
    assert m.offset.weight.grad.abs().sum() > 0 and m.mask.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("scale,k", [(2, None), (3, None), (2, 3), (4, 4)])
def test_transposed_conv_scales_exactly(scale, k):
    conv = transposed_conv(3, 2, scale, k)
    assert conv(torch.randn(1, 3, 5, 7)).shape == (1, 2, 5 * scale, 7 * scale)


def test_transposed_conv_is_the_adjoint_of_the_strided_conv():
    # <conv_T(y), x> == <y, conv(x)>: the defining property of a transposed convolution.
    torch.manual_seed(0)
    ct = transposed_conv(3, 2, 2, bias=False)
    x, y = torch.randn(1, 2, 10, 10), torch.randn(1, 3, 5, 5)
    cx = F.conv2d(x, ct.weight, stride=2, padding=1)  # (1, 3, 5, 5)
    torch.testing.assert_close((ct(y) * x).sum(), (y * cx).sum(), atol=1e-4, rtol=1e-5)


def test_convbnact_hooked_activation_still_runs_as_a_module():
    """Hooks on the activation (MAC counting, feature extraction) must see it called, even
    where the unhooked layer would take the in-place path."""
    m = ConvBNAct(3, 4, act="silu").eval()
    seen = []
    m.act.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    with torch.no_grad():
        m(torch.randn(1, 3, 5, 5))
    assert seen == [torch.Size([1, 4, 5, 5])]
