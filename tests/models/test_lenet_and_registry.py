import pytest
import torch

from cvcraft.errors import ConfigError, RegistryError
from cvcraft.models import create_model, list_models, model_info, register_model
from cvcraft.models.registry import MODELS


@pytest.mark.parametrize("in_chans", [1, 3])
def test_lenet_shapes_and_params(in_chans):
    m = create_model("lenet5", num_classes=10, in_chans=in_chans)
    assert m.default_input_size == (in_chans, 32, 32)
    assert m(torch.randn(4, in_chans, 32, 32)).shape == (4, 10)
    # Hand count: conv1 (in*25+1)*6, conv2 (6*25+1)*16 = 2416, fc1 400*120+120 = 48120,
    # fc2 120*84+84 = 10164, fc3 84*10+10 = 850.
    expected = (in_chans * 25 + 1) * 6 + 2416 + 48120 + 10164 + 850
    assert model_info(m) == {"params": expected, "trainable": expected}
    assert expected == {1: 61706, 3: 62006}[in_chans]


def test_lenet_options_and_errors():
    m = create_model("lenet5", num_classes=10, act="relu", pool="max")
    assert isinstance(m.act, torch.nn.ReLU) and isinstance(m.pool, torch.nn.MaxPool2d)
    assert isinstance(create_model("lenet5").act, torch.nn.Tanh)  # paper default
    with pytest.raises(ValueError, match="32x32"):
        m(torch.randn(1, 1, 28, 28))
    with pytest.raises(ConfigError, match="act"):
        create_model("lenet5", act="gelu")
    m.reset_classifier(4)
    assert m.get_classifier().out_features == 4


def test_model_info_counts_trainable():
    m = create_model("lenet5", num_classes=10, in_chans=1)
    m.conv1.requires_grad_(False)
    assert model_info(m) == {"params": 61706, "trainable": 61706 - 156}


def test_unknown_model_did_you_mean():
    with pytest.raises(RegistryError, match='Did you mean "resnet50"'):
        create_model("resnt50")


def test_unknown_option_is_config_error():
    with pytest.raises(ConfigError, match="'dropout'"):
        create_model("resnet18", dropout=0.1)
    with pytest.raises(ConfigError, match="'actt'"):
        create_model("lenet5", actt="relu")


def test_list_models():
    names = list_models("resnet*")
    assert {"resnet18", "resnet50", "resnet152", "resnet20", "resnet110", "resnet18_cifar"} <= set(
        names
    )
    assert names == sorted(names) and "lenet5" not in names
    assert list_models("lenet*") == ["lenet5"]


def test_register_model_custom():
    @register_model("tiny_test_model")
    def tiny(num_classes=1000, in_chans=3, **kw):
        return torch.nn.Linear(in_chans, num_classes)

    try:
        assert create_model("tiny_test_model", num_classes=2, in_chans=5).weight.shape == (2, 5)
        assert "tiny_test_model" in list_models()
    finally:
        MODELS._items.pop("tiny_test_model")
