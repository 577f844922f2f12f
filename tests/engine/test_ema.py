import math

import pytest
import torch
from torch import nn

from cvcraft.engine.ema import ModelEMA


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_hand_computed_three_updates_no_warmup():
    m = _model()
    ema = ModelEMA(m, decay=0.5, warmup_tau=None)
    w0 = m[0].weight.detach().clone()
    expect = w0.clone()
    for k in range(1, 4):
        with torch.no_grad():
            m[0].weight.fill_(float(k))
            m[1].num_batches_tracked.fill_(10 * k)
        ema.update(m)
        expect = 0.5 * expect + 0.5 * float(k)
    # by hand: ((w0/2 + 1/2)/2 + 2/2)/2 + 3/2 = w0/8 + 1/8 + 2/4 + 3/2
    torch.testing.assert_close(expect, w0 / 8 + 0.125 + 0.5 + 1.5)
    torch.testing.assert_close(ema.module[0].weight, expect)
    assert ema.module[1].num_batches_tracked.item() == 30  # int buffers copied
    assert not ema.module.training and not ema.module[0].weight.requires_grad


def test_warmup_decay_formula_and_buffers():
    m = _model()
    ema = ModelEMA(m, decay=0.9, warmup_tau=3.0)
    b0 = m[0].bias.detach().clone()
    rm0 = m[1].running_mean.clone()
    with torch.no_grad():
        m[0].bias.add_(1.0)
        m[1].running_mean.fill_(2.0)
    ema.update(m)
    d1 = 0.9 * (1 - math.exp(-1 / 3.0))
    assert ema.current_decay() == pytest.approx(d1)
    torch.testing.assert_close(ema.module[0].bias, d1 * b0 + (1 - d1) * (b0 + 1))
    torch.testing.assert_close(ema.module[1].running_mean, d1 * rm0 + (1 - d1) * 2.0)
    assert ema.current_decay(10_000) == pytest.approx(0.9)


def test_every_skips_calls():
    m = _model()
    ema = ModelEMA(m, decay=0.5, warmup_tau=None, every=2)
    w0 = m[0].weight.detach().clone()
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    ema.update(m)
    torch.testing.assert_close(ema.module[0].weight, w0)  # first call skipped
    ema.update(m)
    torch.testing.assert_close(ema.module[0].weight, 0.5 * w0 + 0.5)
    assert ema.updates == 1 and ema.calls == 2


def test_state_round_trip_and_wrapped_model():
    m = _model()
    ema = ModelEMA(nn.DataParallel(m), decay=0.99, warmup_tau=5.0)
    for _ in range(4):
        with torch.no_grad():
            m[0].weight.add_(0.1)
        ema.update(nn.DataParallel(m))
    state = ema.state_dict()
    other = ModelEMA(_model(), decay=0.99, warmup_tau=5.0)
    other.load_state_dict(state)
    assert other.updates == 4
    for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()):
        assert torch.equal(a, b)
    # both continue identically
    ema.update(m)
    other.update(m)
    torch.testing.assert_close(ema.module[0].weight, other.module[0].weight, rtol=0, atol=0)


def test_replaced_tensors_are_seen_after_the_first_update():
    """The name matching is cached; a buffer replaced by a new tensor (as ``model.to()`` and
    user code do) and a parameter whose data was swapped must still be averaged."""
    m = _model()
    ema = ModelEMA(m, decay=0.5, warmup_tau=None)
    ema.update(m)
    m[1].running_mean = torch.full((2,), 4.0)  # a new tensor object
    m[0].weight.data = torch.full((2, 3), 2.0)  # new storage under the same Parameter
    before_mean = ema.module[1].running_mean.clone()
    before_w = ema.module[0].weight.clone()
    ema.update(m)
    torch.testing.assert_close(ema.module[1].running_mean, 0.5 * before_mean + 2.0)
    torch.testing.assert_close(ema.module[0].weight, 0.5 * before_w + 1.0)
