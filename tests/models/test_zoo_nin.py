import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info


def _conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def test_param_count_matches_the_papers_cifar10_network():
    m = create_model("nin", num_classes=10)
    exact = (
        _conv(3, 192, 5) + _conv(192, 160, 1) + _conv(160, 96, 1)
        + _conv(96, 192, 5) + _conv(192, 192, 1) + _conv(192, 192, 1)
        + _conv(192, 192, 3) + _conv(192, 192, 1) + _conv(192, 10, 1)
    )  # fmt: skip
    assert model_info(m)["params"] == exact
    assert exact == pytest.approx(0.97e6, rel=0.01)  # the paper's ~0.97M


def test_logits_are_the_global_average_of_the_class_maps():
    torch.manual_seed(0)
    m = create_model("nin", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape == (2, 192, 8, 8)  # 32 -> 16 -> 8 (ceil-mode pools, as in Caffe)
    maps = m.head(feats)
    torch.testing.assert_close(m(x), maps.mean((2, 3)))
    assert not isinstance(m.head[-1], torch.nn.ReLU)  # logits may be negative


@pytest.mark.parametrize("batch_norm", [False, True])
def test_shapes_grads_in_chans(batch_norm):
    torch.manual_seed(0)
    m = create_model("nin", num_classes=5, in_chans=1, batch_norm=batch_norm)
    assert m.default_input_size == (1, 32, 32)
    for size in (32, 24):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)
    m.train()
    m(torch.randn(2, 1, 32, 32)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    m.reset_classifier(3)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="NIN needs num_classes > 0"):
        m.reset_classifier(0)
