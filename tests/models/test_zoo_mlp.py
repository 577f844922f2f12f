import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info


def test_param_count_and_forward_against_hand_computation():
    m = create_model("mlp", num_classes=10)
    # 3072 -> 512 -> 256 -> 10, each with a bias.
    assert model_info(m)["params"] == 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    m.eval()
    x = torch.randn(3, 3, 32, 32)
    l1, l2 = m.layers[0], m.layers[3]
    ref = m.head(torch.relu(l2(torch.relu(l1(x.reshape(3, -1))))))
    torch.testing.assert_close(m(x), ref)


def test_mnist_size_hidden_dropout_and_grads():
    torch.manual_seed(0)
    m = create_model("mlp", num_classes=7, in_chans=1, img_size=28, hidden=(64,), drop_rate=0.1)
    assert m.default_input_size == (1, 28, 28)
    assert m(torch.randn(4, 1, 28, 28)).shape == (4, 7)
    m(torch.randn(4, 1, 28, 28)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    with pytest.raises(ValueError, match="img_size=32"):
        m(torch.randn(1, 1, 32, 32))
    m.reset_classifier(0)
    assert m.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 64)
    lr = create_model("mlp", num_classes=3, hidden=())  # logistic regression
    assert model_info(lr)["params"] == 3072 * 3 + 3
    with pytest.raises(ConfigError, match=r"hidden widths must be positive, got .*hidden=\(0,\)"):
        create_model("mlp", hidden=(0,))
