import pytest
import torch
import torchvision

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.densenet import from_torchvision_state_dict


@pytest.mark.parametrize("name", ["densenet121", "densenet169"])
def test_torchvision_parity(name, randomize_bn):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None)
    randomize_bn(ref)
    ref.eval()
    ours = create_model(name).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() <= 1e-5 and a.abs().max() > 0


def test_legacy_checkpoint_keys_are_renamed():
    sd = create_model("densenet121").state_dict()
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert list(from_torchvision_state_dict(legacy)) == list(sd)
    assert list(from_torchvision_state_dict(sd)) == list(sd)  # current keys untouched


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_shapes_grads_in_chans(memory_efficient):
    torch.manual_seed(0)
    m = create_model("densenet121", num_classes=5, in_chans=1, memory_efficient=memory_efficient)
    assert m.features.conv0.weight.shape == (64, 1, 7, 7)
    for size in (32, 64):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1024, 2, 2)
    m.train()
    m(torch.randn(2, 1, 32, 32)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 1024)
