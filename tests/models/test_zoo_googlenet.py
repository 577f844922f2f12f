import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.googlenet import GoogLeNetOutputs, googlenet_loss


def _torchvision_googlenet(**kw):
    with warnings.catch_warnings():  # torchvision warns about its future init default
        warnings.simplefilter("ignore")
        return torchvision.models.googlenet(weights=None, init_weights=True, **kw)


@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_parity(transform_input, randomize_bn):
    torch.manual_seed(0)
    ref = _torchvision_googlenet(transform_input=transform_input)
    randomize_bn(ref)
    ref.eval()
    ours = create_model("googlenet", transform_input=transform_input).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters()) == 13_004_888
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert isinstance(a, torch.Tensor)  # eval: logits only
    assert (a - b).abs().max().item() <= 1e-5 and a.abs().max() > 0


def test_train_mode_outputs_match_torchvision_and_reach_every_parameter(randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(_torchvision_googlenet())  # train-mode BN: the affine part matters
    ours = create_model("googlenet", num_classes=1000)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.train(), ours.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    out = ours(x)
    torch.manual_seed(1)  # same dropout masks
    out_ref = ref(x)
    assert isinstance(out, GoogLeNetOutputs) and isinstance(out, tuple)
    for a, b in zip(out, out_ref):  # (logits, aux2, aux1) in torchvision's order
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    y = torch.tensor([3, 7])
    loss = ours.training_loss(out, y)
    expect = F.cross_entropy(out.logits, y) + 0.3 * (
        F.cross_entropy(out.aux_logits1, y) + F.cross_entropy(out.aux_logits2, y)
    )
    torch.testing.assert_close(loss, expect)
    loss.backward()
    grads = [p.grad for p in ours.parameters()]
    assert all(g is not None for g in grads)  # aux heads included
    assert sum(bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


def test_shapes_in_chans_no_aux_and_classifier():
    torch.manual_seed(0)
    m = create_model("googlenet", num_classes=6, in_chans=1, aux_logits=False)
    assert m.conv1.conv.weight.shape == (64, 1, 7, 7)
    assert m.default_input_size == (1, 224, 224)
    assert model_info(m)["params"] < 6.0e6  # no aux heads
    for size in (64, 96):
        assert m.train()(torch.randn(2, 1, size, size)).shape == (2, 6)  # tensor even in train
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 6)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1024, 2, 2)
    m = create_model("googlenet", num_classes=6)
    m.reset_classifier(4)
    out = m.train()(torch.randn(2, 3, 64, 64))
    assert [o.shape for o in out] == [(2, 4)] * 3
    y = torch.tensor([0, 1])
    torch.testing.assert_close(googlenet_loss(out.logits, y), F.cross_entropy(out.logits, y))
    with pytest.raises(ConfigError, match="transform_input"):
        create_model("googlenet", in_chans=1, transform_input=True)
