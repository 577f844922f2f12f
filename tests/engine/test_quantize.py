"""Int8 quantization: one quantized conv against the int8 arithmetic done by hand, whole
models against fp32 within stated tolerances, QAT's int8 model against its fake-quant
simulation, and the modules really being int8."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.engine.quantize import (
    convert_qat,
    prepare_qat,
    quantize_dynamic_linear,
    quantize_static,
    quantized_modules,
)
from cvcraft.errors import ConfigError
from cvcraft.models import create_model


def _calib(n=4, b=8, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, side, side, generator=g) for _ in range(n)]


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def test_static_conv_equals_int8_arithmetic_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)).eval()
    q = quantize_static(model, _calib(side=12))
    x = _calib(1, 2, 12, seed=5)[0]
    qconv = next(m for m in q.modules() if type(m).__name__ == "Conv2d" and hasattr(m, "scale"))
    bufs = dict(q.named_buffers())  # the input quantize node's scale and zero point
    s_in = float(next(v for k, v in bufs.items() if k.endswith("input_scale_0")))
    z_in = int(next(v for k, v in bufs.items() if k.endswith("input_zero_point_0")))
    # by hand: quantize the input (uint8), dequantized int8 weights, float conv, requantize
    x_hat = (torch.clamp(torch.round(x / s_in) + z_in, 0, 255) - z_in) * s_in
    w_hat = qconv.weight().dequantize()
    y = F.conv2d(x_hat, w_hat, qconv.bias(), padding=1)
    s_out, z_out = float(qconv.scale), int(qconv.zero_point)
    expected = (torch.clamp(torch.round(y / s_out) + z_out, 0, 255) - z_out) * s_out
    got = q(x)
    # the int8 kernel requantizes with a fixed-point multiplier: at most one step apart
    assert float((got - expected).abs().max()) <= s_out * 1.001
    assert float((got - expected).abs().gt(1e-6).float().mean()) < 0.01
    # x86 observers use 7-bit activations (reduce_range) and the output grid: a few percent
    assert _rel_err(got, model(x)) < 0.05


@torch.no_grad()
def test_static_resnet_is_int8_and_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    calib = _calib()
    q = quantize_static(model, calib)
    names = quantized_modules(q)
    kinds = {type(q.get_submodule(n)).__name__ for n in names}
    assert {"ConvReLU2d", "Conv2d", "Linear"} <= kinds  # conv-BN-ReLU fused, then int8
    assert len([n for n in names if "Conv" in type(q.get_submodule(n)).__name__]) >= 19
    x = _calib(1, 16, seed=9)[0]
    # stated tolerance: 10% relative L2 on the logits of an untrained (noisy) network
    assert _rel_err(q(x), model(x)) < 0.10
    assert not quantized_modules(model)  # the float model is left as it was


@torch.no_grad()
def test_dynamic_linear_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=10, img_size=16).eval()
    q = quantize_dynamic_linear(model)
    assert quantized_modules(q) and all(
        type(q.get_submodule(n)).__name__ == "Linear" for n in quantized_modules(q)
    )
    x = torch.randn(8, 3, 16, 16)
    assert _rel_err(q(x), model(x)) < 0.02


def test_qat_trains_through_fake_quant_and_converts_to_int8():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    calib = _calib(3)
    qat = prepare_qat(model, calib[0])
    n_fq = sum(isinstance(m, torch.ao.quantization.FakeQuantizeBase) for m in qat.modules())
    assert n_fq >= 40  # weights and activations of every conv are fake-quantized
    before = qat.fc.weight.detach().clone()
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    for x in calib:  # a few training steps through fake quantization
        loss = F.cross_entropy(qat(x), torch.zeros(len(x), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(before, qat.fc.weight)  # gradients flow through the rounding
    int8 = convert_qat(qat)
    assert len(quantized_modules(int8)) >= 19
    x = _calib(1, 8, seed=3)[0]
    qat.eval().apply(torch.ao.quantization.disable_observer)
    qat.apply(torch.ao.quantization.disable_fake_quant)  # the trained float network
    with torch.no_grad():
        # stated tolerance: an untrained net's logits within 20% (relative L2) after int8
        assert _rel_err(int8(x), qat(x)) < 0.20


def test_bad_inputs():
    model = create_model("resnet20")
    with pytest.raises(ConfigError, match="at least one calibration batch"):
        quantize_static(model, [])
    with pytest.raises(ConfigError, match="backend='arm'"):
        quantize_static(model, _calib(1), backend="arm")
    with pytest.raises(ConfigError, match="has none; use mode=static"):
        quantize_dynamic_linear(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ConfigError, match="torch.fx and failed.*mode=dynamic"):
        quantize_static(create_model("lenet5"), [torch.randn(1, 1, 32, 32)])
