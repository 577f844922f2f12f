"""Theoretical receptive field and jump per layer (cvcraft.models.profile) vs the analytic
values of ResNet-50 and VGG-16 at each stage (the recurrence r += d (k-1) j, j *= s done by
hand along the main path, cross-checked with cvcraft.reference.formulas.receptive_field),
vs the exact support of input gradients on small nets with branches, and the effective
receptive field vs a hand-computed gradient map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.profile import (
    effective_receptive_field,
    format_receptive_fields,
    profile,
    receptive_fields,
    stage_receptive_fields,
)
from cvcraft.reference.formulas import receptive_field
from cvcraft.viz.receptive_field import plot_effective_receptive_field


def _meta(name):
    with torch.device("meta"):
        return create_model(name)


def test_resnet50_stages_equal_analytic():
    # torchvision's ResNet-50 (stride in the 3x3): stem conv 7/2, maxpool 3/2, then per
    # bottleneck 1x1, 3x3 (stride 2 in the first block of layers 2-4), 1x1.
    path = [(7, 2), (3, 2)]
    expect = {"relu": (7, 2)}
    for i, blocks in enumerate([3, 4, 6, 3]):
        for b in range(blocks):
            path += [(1, 1), (3, 2 if (b == 0 and i > 0) else 1), (1, 1)]
        expect[f"layer{i + 1}"] = receptive_field(path)
    # the published values: 35, 91, 267, 427 at strides 4, 8, 16, 32
    assert [expect[f"layer{i}"] for i in range(1, 5)] == [(35, 4), (91, 8), (267, 16), (427, 32)]
    rows = stage_receptive_fields(_meta("resnet50"))
    assert [r["name"] for r in rows] == ["relu", "layer1", "layer2", "layer3", "layer4"]
    for r in rows:
        assert r["rf"] == (expect[r["name"]][0],) * 2, r["name"]
        assert r["jump"] == (expect[r["name"]][1],) * 2, r["name"]


def test_vgg16_stages_equal_analytic():
    convs = [2, 2, 3, 3, 3]
    path, expect = [], []
    for n in convs:
        path += [(3, 1)] * n
        expect.append(receptive_field(path))  # the ReLU before each pool
        path.append((2, 2))
    expect.append(receptive_field(path))  # after pool5
    assert [e[0] for e in expect] == [5, 14, 40, 92, 196, 212]
    rows = stage_receptive_fields(_meta("vgg16"))
    assert [(r["rf"][0], r["jump"][0]) for r in rows] == expect
    # every layer, e.g. the first max-pool: 6 px at stride 2
    table = {r["name"]: r for r in receptive_fields(_meta("vgg16"))}
    assert table["features.4"]["rf"] == (6, 6) and table["features.4"]["jump"] == (2, 2)
    rows = profile(_meta("vgg16"), latency=False, rf=True)["receptive_field"]
    assert rows[-1]["name"] == "features" and rows[-1]["rf"] == (212, 212)  # the trunk
    text = format_receptive_fields(rows)
    assert "features.30" in text and " 212 " in text


class _Branchy(nn.Module):
    """conv 3/1 -> (avgpool 3/2 | dilated conv 3/2 d=2) added -> conv 5x3 /1 -> conv 1/2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.pool = nn.AvgPool2d(3, 2, padding=1)
        self.dil = nn.Conv2d(2, 2, 3, stride=2, padding=2, dilation=2, bias=False)
        self.b = nn.Conv2d(2, 2, (5, 3), padding=(2, 1), bias=False)
        self.c = nn.Conv2d(2, 1, 1, stride=2, bias=False)

    def forward(self, x):
        y = self.a(x)
        return self.c(self.b(self.pool(y) + self.dil(y)))


def _support(model, size, out_index):
    """Rows/cols of the input that the chosen output pixel's gradient touches (exact:
    positive weights, positive input, no cancellation)."""
    for p in model.parameters():
        nn.init.uniform_(p, 0.5, 1.0)
    x = torch.ones(1, 1, *size, dtype=torch.float64, requires_grad=True)
    y = model.double()(x)
    y[0, 0][out_index].backward()
    nz = torch.nonzero(x.grad[0, 0])
    return (int(nz[:, 0].min()), int(nz[:, 0].max())), (int(nz[:, 1].min()), int(nz[:, 1].max()))


def test_rf_equals_gradient_support_with_branches():
    model = _Branchy()
    rows = receptive_fields(model, (1, 64, 64))
    last = rows[-1]
    assert last["name"] == "c"
    (r0, r1), (c0, c1) = _support(_Branchy(), (64, 64), (8, 8))  # an interior output
    assert (r1 - r0 + 1, c1 - c0 + 1) == last["rf"]
    # the field is centred at start + i * jump
    cy = last["start"][0] + 8 * last["jump"][0]
    cx = last["start"][1] + 8 * last["jump"][1]
    assert (r0 + r1) / 2 == cy and (c0 + c1) / 2 == cx
    assert last["jump"] == (4, 4)
    # by hand: a 3 -> dilated 3/2 (d=2) wins over avgpool: 3 + 4 = 7, j 2; (5x3) -> 7 + 8 = 15
    # rows, 7 + 4 = 11 cols; the 1x1/2 adds nothing.
    assert last["rf"] == (15, 11)


def test_effective_rf_of_a_linear_conv_is_its_kernel():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 4.0, 1.0], [-1.0, 0.0, 2.0]])
    with torch.no_grad():
        conv.weight[0, 0] = w
    erf = effective_receptive_field(conv, (1, 9, 9), samples=2)
    expect = torch.zeros(9, 9)
    expect[3:6, 3:6] = w.abs() / 4.0  # d y[4,4] / d x[4+i-1, 4+j-1] = w[i, j]
    torch.testing.assert_close(erf, expect)
    # a deeper net: the effective field lies inside the theoretical one
    model = _Branchy()
    erf = effective_receptive_field(model, (1, 64, 64), layer="b", samples=2)
    row = [r for r in receptive_fields(model, (1, 64, 64)) if r["name"] == "b"][-1]
    nz = torch.nonzero(erf)
    assert int(nz[:, 0].max() - nz[:, 0].min() + 1) <= row["rf"][0]
    img = plot_effective_receptive_field(erf.numpy(), rf=row["rf"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.std() > 10  # something was drawn


def test_errors():
    with pytest.raises(ConfigError, match="C, H, W"):
        receptive_fields(nn.Conv2d(1, 1, 3), (16, 16))
    with pytest.raises(ConfigError, match="not a module"):
        effective_receptive_field(nn.Conv2d(1, 1, 3), (1, 8, 8), layer="nope")
    with pytest.raises(ConfigError, match="\\(H, W\\)"):
        plot_effective_receptive_field(np.zeros(5))
