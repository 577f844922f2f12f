import pytest
import torch
from torch import nn

from cvcraft.engine.regularization import clip_gradients, l1_penalty, l2_penalty


def _model():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        m[0].bias.fill_(100.0)  # excluded
        m[1].weight.fill_(50.0)  # excluded (norm)
        m[2].weight.copy_(torch.tensor([[-1.5, 2.0]]))
    return m


def test_penalties_hand_computed():
    m = _model()
    assert l1_penalty(m, 0.1).item() == pytest.approx(0.1 * (1 + 2 + 3 + 0.5 + 1.5 + 2))
    assert l2_penalty(m, 0.1).item() == pytest.approx(0.1 * (1 + 4 + 9 + 0.25 + 2.25 + 4))
    m[2].weight.requires_grad_(False)  # frozen weights don't count
    assert l2_penalty(m, 1.0).item() == pytest.approx(1 + 4 + 9 + 0.25)


def test_l2_gradient_equals_sgd_coupled_weight_decay():
    torch.manual_seed(0)
    x = torch.randn(8, 2)
    a, b = _model(), _model()
    wd = 0.05
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    decay = [a[0].weight, a[2].weight]
    opt_b = torch.optim.SGD(
        [
            {"params": [b[0].weight, b[2].weight], "weight_decay": wd},
            {"params": [b[0].bias, b[1].weight, b[1].bias, b[2].bias], "weight_decay": 0.0},
        ],
        lr=0.1,
    )
    (a(x).sum() + l2_penalty(a, wd / 2)).backward()
    b(x).sum().backward()
    opt_a.step()
    opt_b.step()
    for pa, pb in zip(decay, [b[0].weight, b[2].weight]):
        torch.testing.assert_close(pa, pb)


def _with_grads(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    (m(torch.randn(6, 5)) * 10).square().sum().backward()
    return m


def test_clip_norm_matches_torch():
    a, b = _with_grads(1), _with_grads(1)
    total = clip_gradients(a, max_norm=0.5)
    ref = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    torch.testing.assert_close(total, ref)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)
    assert torch.stack([p.grad.norm() for p in a.parameters()]).norm() == pytest.approx(
        0.5, rel=1e-4
    )


def test_clip_value_then_norm_returns_preclip_norm():
    a, b = _with_grads(2), _with_grads(2)
    pre = torch.stack([p.grad.norm() for p in a.parameters()]).norm()
    total = clip_gradients(list(a.parameters()), max_norm=1.0, max_value=0.3)
    torch.testing.assert_close(total, pre)
    torch.nn.utils.clip_grad_value_(b.parameters(), 0.3)
    torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)
    assert max(p.grad.abs().max() for p in a.parameters()) <= 0.3 + 1e-7
