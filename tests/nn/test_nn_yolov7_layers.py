"""YOLOv6/v7 layers: RepConv against ultralytics' RepConv (weights copied by name) and exact
re-parameterisation with random BN statistics; SPPCSPC against a functional torch rebuild;
ELAN / MP downsampling against an interpreter of YOLOv7's yaml rows (``from`` indices)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.elan import ELAN
from cvcraft.nn.mp_downsample import MPDownsample
from cvcraft.nn.repvgg import RepVGGBlock
from cvcraft.nn.sppcspc import SPPCSPC


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


def _cba(m: ConvBNAct, x: torch.Tensor) -> torch.Tensor:
    """Functional conv -> eval BN -> activation with the module's own tensors."""
    y = F.conv2d(x, m.conv.weight, None, m.conv.stride, m.conv.padding)
    bn = m.bn
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return m.act(y)


@pytest.mark.parametrize(
    "c_in,c_out,stride,identity",
    [(8, 16, 1, False), (8, 8, 1, True), (8, 8, 2, True), (6, 12, 2, False)],
)
def test_repconv_equals_ultralytics_and_fuses_exactly(c_in, c_out, stride, identity):
    conv_mod = pytest.importorskip("ultralytics.nn.modules.conv")
    torch.manual_seed(0)
    ref = conv_mod.RepConv(c_in, c_out, 3, stride, bn=identity and c_in == c_out and stride == 1)
    ours = RepVGGBlock(c_in, c_out, stride, act="silu", identity=identity)
    _randomise_bn(ref)
    names = {"conv1": "conv3x3", "conv2": "conv1x1", "bn": "identity"}  # converter by name
    state = {names[k.split(".")[0]] + k[len(k.split(".")[0]):]: v
             for k, v in ref.state_dict().items()}  # fmt: skip
    ours.load_state_dict(state)
    x = torch.randn(2, c_in, 10, 12)
    for mode in (True, False):  # train (batch statistics) and eval (running statistics)
        ref.train(mode), ours.train(mode)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    ours.eval()
    before = ours(x)
    ours.reparameterize()
    assert ours.fused is not None and ours.conv1x1 is None
    torch.testing.assert_close(ours(x), before, rtol=1e-5, atol=1e-5)


def test_repvgg_block_keeps_relu_default_and_validates_groups():
    assert isinstance(RepVGGBlock(4, 4).act, nn.ReLU)
    assert RepVGGBlock(4, 4, identity=False).identity is None
    with pytest.raises(ConfigError, match="groups"):
        RepVGGBlock(6, 8, groups=4)


def test_sppcspc_equals_functional_rebuild():
    torch.manual_seed(0)
    m = SPPCSPC(16, 12).eval()
    _randomise_bn(m)
    x = torch.randn(2, 16, 13, 11)
    x1 = _cba(m.cv4, _cba(m.cv3, _cba(m.cv1, x)))
    pool = [x1] + [F.max_pool2d(x1, k, 1, k // 2) for k in (5, 9, 13)]
    y1 = _cba(m.cv6, _cba(m.cv5, torch.cat(pool, 1)))
    expected = _cba(m.cv7, torch.cat([y1, _cba(m.cv2, x)], 1))
    torch.testing.assert_close(m(x), expected)
    assert m.cv1.conv.out_channels == 12  # hidden = int(2 * out * 0.5)
    with pytest.raises(ConfigError, match="odd"):
        SPPCSPC(8, 8, kernels=(5, 8))


def _run_rows(rows, x):
    """Interpret YOLO-yaml rows [(from, fn)]: ``from`` -1 is the previous output, negative
    indices count back, a list concatenates (YOLOv7's Concat)."""
    outs = [x]
    for frm, fn in rows:
        if isinstance(frm, list):
            y = torch.cat([outs[f] if f < 0 else outs[f + 1] for f in frm], 1)
        else:
            y = fn(outs[frm])
            outs.append(y)
            continue
        outs.append(fn(y))
    return outs[-1]


@pytest.mark.parametrize("step", [2, 1])
def test_elan_equals_yolov7_yaml_rows(step):
    torch.manual_seed(0)
    m = ELAN(16, 24, hidden=8, branch=6 if step == 1 else 8, n=4, step=step).eval()
    _randomise_bn(m)
    s = m.stacks[0]
    x = torch.randn(2, 16, 9, 9)
    # yolov7.yaml: Conv 1x1 (-1), Conv 1x1 (-2), four Conv 3x3 (-1), Concat, Conv 1x1;
    # backbone concat [-1, -3, -5, -6], neck ELAN-W [-1, -2, -3, -4, -5, -6]
    cat = [-1, -3, -5, -6] if step == 2 else [-1, -2, -3, -4, -5, -6]
    rows = [(-1, s.cv1), (-2, s.cv2)] + [(-1, c) for c in s.m] + [(cat, s.cv_out)]
    torch.testing.assert_close(m(x), _run_rows(rows, x))


def test_e_elan_sums_the_stacks_and_validates():
    torch.manual_seed(0)
    m = ELAN(8, 8, 4, 4, cardinality=2).eval()
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(m(x), m.stacks[0](x) + m.stacks[1](x))
    with pytest.raises(ConfigError, match="step"):
        ELAN(8, 8, 4, 4, n=3, step=2)
    with pytest.raises(ConfigError, match="cardinality"):
        ELAN(8, 8, 4, 4, cardinality=0)


def test_mp_downsample_equals_yolov7_yaml_rows():
    torch.manual_seed(0)
    m = MPDownsample(8, 12).eval()
    _randomise_bn(m)
    x = torch.randn(2, 8, 10, 14)
    # yolov7.yaml: MP, Conv 1x1 (-1), Conv 1x1 (-3), Conv 3x3 s2 (-1), Concat [-1, -3]
    rows = [(-1, lambda t: F.max_pool2d(t, 2, 2)), (-1, m.cv1), (-3, m.cv2), (-1, m.cv3),
            ([-1, -3], lambda t: t)]  # fmt: skip
    out = m(x)
    assert out.shape == (2, 12, 5, 7)
    torch.testing.assert_close(out, _run_rows(rows, x))
    with pytest.raises(ConfigError, match="even H, W"):
        m(torch.randn(1, 8, 9, 10))
    with pytest.raises(ConfigError, match="even"):
        MPDownsample(8, 7)
