import pytest
import torch
import torchvision

from cvcraft.models import create_model, model_info


def test_torchvision_parity_at_smallest_input():
    torch.manual_seed(0)
    ref = torchvision.models.alexnet(weights=None).eval()
    ours = create_model("alexnet").eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters()) == 61_100_840
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 63, 63)  # 63 is the smallest size the stem + 3 pools let through
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() <= 1e-5
    assert a.abs().max() > 0


def test_shapes_grads_in_chans_and_classifier():
    torch.manual_seed(0)
    m = create_model("alexnet", num_classes=4, in_chans=1, drop_rate=0.0)
    assert m.features[0].weight.shape == (64, 1, 11, 11)
    for size in (63, 100):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 4)
    m.train()
    m(torch.randn(2, 1, 80, 80)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="63x63"):
        m(torch.randn(1, 1, 62, 62))
    assert m.get_classifier() is m.classifier[6]
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 63, 63)).shape == (1, 4096)
