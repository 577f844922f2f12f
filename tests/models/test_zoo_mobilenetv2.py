import pytest
import torch
import torchvision

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.mobilenetv2 import round_channels


@pytest.mark.parametrize("width_mult", [1.0, 0.5])
def test_torchvision_parity(width_mult, randomize_bn):
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult)
    randomize_bn(ref)
    ref.eval()
    ours = create_model("mobilenet_v2", width_mult=width_mult).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() <= 1e-5 and a.abs().max() > 0


def test_round_channels():
    assert [round_channels(c) for c in (32, 12, 4, 20, 37.5)] == [32, 16, 8, 24, 40]
    assert round_channels(3) == 8  # never below the divisor
    assert round_channels(92) == 96 and round_channels(91.9) == 88  # nearest multiple


def test_shapes_grads_in_chans_and_classifier():
    torch.manual_seed(0)
    m = create_model("mobilenet_v2", num_classes=5, in_chans=1)
    assert m.features[0][0].weight.shape == (32, 1, 3, 3)
    for size in (32, 64):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1280, 2, 2)
    m.train()
    # 64px, not 32: on a 1x1 map a train-mode BN after a projection cancels its bias exactly.
    m(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    assert m.get_classifier() is m.classifier[1]
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 1280)
