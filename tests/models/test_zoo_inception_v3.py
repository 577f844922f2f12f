"""Inception v3 against torchvision: parameters, keys through the converter, eval outputs
with randomised BatchNorm, the auxiliary head, train-mode outputs (logits + aux, at 299,
slow); timm for the feature taps."""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.errors import ConfigError
from cvcraft.losses.classification import deep_supervision_loss
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.inception_v3 import InceptionAux, InceptionOutputs
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights


def _pair(randomize_bn, **kw):
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.inception_v3(weights=None, init_weights=True, **kw))
    ours = create_model("inception_v3", **kw)
    info = load_weights(ours, tv.state_dict(), tv_converter=tv_converter("inception_v3"))
    assert info["skipped_head"] == [] and ours.state_dict().keys() == tv.state_dict().keys()
    return ours, tv


def _close(a, b):
    assert b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("aux_logits", [True, False])
def test_torchvision_parity_eval(aux_logits, randomize_bn):
    ours, tv = _pair(randomize_bn, aux_logits=aux_logits)
    assert model_info(ours)["params"] == sum(p.numel() for p in tv.parameters())
    assert model_info(ours)["params"] == (27_161_264 if aux_logits else 23_834_568)
    x = torch.randn(2, 3, 75, 75)  # the smallest input the trunk takes
    with torch.no_grad():
        _close(ours.eval()(x), tv.eval()(x))


def test_aux_head_equals_torchvision(randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.inception.InceptionAux(768, 10)).eval()
    ours = InceptionAux(768, 10).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 768, 17, 17)
    with torch.no_grad():
        _close(ours(x), tv(x))
    with pytest.raises(ConfigError, match="17x17"):
        ours(torch.randn(1, 768, 8, 8))


@pytest.mark.slow
def test_torchvision_parity_train_mode_with_aux(randomize_bn):
    ours, tv = _pair(randomize_bn)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():  # train mode: batch statistics, dropout, the aux head
        torch.manual_seed(1)  # the same dropout mask on both sides
        got = ours.train()(x)
        torch.manual_seed(1)
        ref = tv.train()(x)
    assert isinstance(got, InceptionOutputs) and got.aux_logits.shape == (2, 1000)
    _close(got.logits, ref.logits)
    _close(got.aux_logits, ref.aux_logits)
    y = torch.tensor([3, 7])
    loss = deep_supervision_loss(got, y, torch.nn.functional.cross_entropy, ours.aux_loss_weight)
    want = torch.nn.functional.cross_entropy(
        ref.logits, y
    ) + 0.4 * torch.nn.functional.cross_entropy(ref.aux_logits, y)
    _close(loss, want)


@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained by tracing")
def test_features_equal_torchvision_nodes_and_timm(randomize_bn):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.inception_v3(weights=None, init_weights=True))
    kw = {"aux_logits": False, "features_only": True}  # the file's aux head: left at init
    with pytest.warns(UserWarning, match="classifier weights"):
        feats = create_model("inception_v3", weights=tv.state_dict(), **kw).eval()
    with torch.device("meta"):
        ref = timm.create_model("inception_v3", features_only=True)
    assert feats.channels() == ref.feature_info.channels()
    assert feats.reductions() == ref.feature_info.reduction()
    nodes = [f["module"] for f in feats.feature_info]
    extractor = create_feature_extractor(tv.eval(), return_nodes={n: n for n in nodes})
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        got, want = feats(x), extractor(x)
    for g, n in zip(got, nodes):
        _close(g, want[n])
    assert [g.shape[-1] for g in got] == [45, 20, 9, 4, 1]


def test_shapes_grads_and_headless():
    torch.manual_seed(0)
    m = create_model("inception_v3", num_classes=4, in_chans=1, aux_logits=False)
    m.train()
    out = m(torch.randn(2, 1, 75, 75))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 75, 75)).shape == (1, 2048)
