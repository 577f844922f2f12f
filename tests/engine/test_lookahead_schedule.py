"""Lookahead on a schedule against a by-hand loop over plain tensors."""

import copy

import pytest
import torch
from torch import nn

from cvcraft.engine.lookahead import Lookahead, lookahead_decay
from cvcraft.errors import ConfigError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _train(net, hook, steps):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(1)
    for t in range(1, steps + 1):
        x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        hook(net, t)


def test_decay_schedule_values():
    assert lookahead_decay(0, 100) == 0.0
    assert lookahead_decay(50, 100) == pytest.approx(0.95**5 * 0.125)
    assert lookahead_decay(100, 100, base=0.9, power=2) == pytest.approx(0.9)
    assert lookahead_decay(150, 100, base=0.9, power=2) == pytest.approx(0.9)


def test_lookahead_equals_by_hand_loop():
    total, every = 23, 5
    net_a, net_b = _net(), _net()
    la = Lookahead(every=every)
    la.reset(net_a)
    _train(net_a, lambda n, t: la.step(n, t, total), total)

    slow = {k: v.clone() for k, v in net_b.state_dict().items() if v.is_floating_point()}

    def by_hand(n, t):
        state = n.state_dict()
        decays = ([0.95**5 * (t / total) ** 3] if t % every == 0 else []) + (
            [1.0] if t == total else []
        )
        for d in decays:
            for k in slow:
                slow[k] = d * slow[k] + (1 - d) * state[k]
                state[k].copy_(slow[k])

    _train(net_b, by_hand, total)
    for (k, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
    # at the end the weights are the slow average, and integer buffers are left alone
    for k, v in la.slow.items():
        assert torch.equal(v, net_a.state_dict()[k])
    assert int(net_a[1].num_batches_tracked) == total


def test_frozen_parameters_stay_put():
    net = _net()
    la = Lookahead(every=1, base=0.9, power=0.0)  # d = 0.9 at every step
    la.reset(net)
    w_old = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[0].bias.add_(1.0)
    net[0].weight.requires_grad_(False)
    w_new, b_old = net[0].weight.detach().clone(), la.slow["0.bias"].clone()
    b_new = net[0].bias.detach().clone()
    la.update(net, 0.9)
    assert torch.equal(net[0].weight, w_new) and torch.equal(la.slow["0.weight"], w_new)
    assert not torch.equal(w_new, w_old)
    torch.testing.assert_close(net[0].bias, 0.9 * b_old + 0.1 * b_new)  # live ones are pulled


def test_lookahead_changes_training():
    """The schedule has an effect: without it the weights differ."""
    net_a, net_b = _net(), _net()
    la = Lookahead(every=2, base=0.9, power=1.0)
    la.reset(net_a)
    _train(net_a, lambda n, t: la.step(n, t, 10), 10)
    _train(net_b, lambda n, t: None, 10)
    assert not torch.allclose(net_a[0].weight, net_b[0].weight)


def test_as_trainer_callback():
    class Ctx:
        step_now = True
        steps_per_epoch = 4
        cfg = type("C", (), {"epochs": 2})()

    net = _net()
    ref = copy.deepcopy(net)
    la, la_ref = Lookahead(every=3), Lookahead(every=3)
    ctx = Ctx()
    ctx.model = net
    la.on_epoch_start(ctx, 0)
    la_ref.reset(ref)

    def hook(n, t):
        ctx.global_step = t
        la.after_step(ctx, t - 1)

    _train(net, hook, 8)
    _train(ref, lambda n, t: la_ref.step(n, t, 8), 8)
    for a, b in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_keys():
    with pytest.raises(ConfigError, match="every=0"):
        Lookahead(every=0)
    with pytest.raises(ConfigError, match="base decay"):
        Lookahead(base=1.5)
