import pytest
import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.vgg import VGG

NAMES = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]


@pytest.mark.parametrize("name", NAMES)
def test_keys_shapes_param_counts_equal_torchvision(name):
    with torch.device("meta"):  # 130M+ params each: compare structure without allocating
        ref, ours = getattr(torchvision.models, name)(weights=None), create_model(name)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert all(our_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name", ["vgg11_bn", "vgg19"])
def test_outputs_equal_torchvision_at_32px(name):
    # Initialising 130M+ weights twice is slow on 2 cores: build on meta, fill torchvision's
    # model with cheap random values, and share its tensors with ours (assign=True).
    with torch.device("meta"):
        ref, ours = getattr(torchvision.models, name)(weights=None), create_model(name)
    ref.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(shape, generator=g) * 2 - 1

    for k, t in ref.state_dict().items():
        if not t.is_floating_point():
            t.zero_()
        elif t.dim() == 1:
            t.copy_(rand(len(t)) * 0.1 + (1.0 if "running_var" in k or "weight" in k else 0.0))
        elif t.numel() > 4_000_000:  # the big FC layers: a cheap random outer product
            n = t.shape[0]
            t.view(n, -1).copy_(torch.outer(rand(n), rand(t[0].numel())) * 3 / t[0].numel())
        else:  # uniform with variance ~1/fan_in keeps activations O(1)
            t.copy_(rand(*t.shape) * (3 / t[0].numel()) ** 0.5)
    ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() <= 1e-5
    assert a.abs().max() > 1e-3


def test_shapes_and_in_chans_of_registered_models():
    with torch.device("meta"):  # shapes only: meta tensors run the graph without the math
        m = create_model("vgg16_bn", num_classes=5, in_chans=1).eval()
        assert m.features[0].weight.shape == (64, 1, 3, 3)
        assert m.default_input_size == (1, 224, 224)
        for size in (32, 224):
            assert m(torch.empty(2, 1, size, size)).shape == (2, 5)
        # forward_features is the map before the 7x7 pool (timm convention), H/32 x W/32
        assert m.forward_features(torch.empty(1, 1, 64, 64)).shape == (1, 512, 2, 2)


def test_grads_and_classifier_on_a_small_table():
    torch.manual_seed(0)
    m = VGG([8, "M", 16, "M"], num_classes=5, in_chans=1, batch_norm=True)
    m(torch.randn(2, 1, 32, 32)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    assert m.get_classifier() is m.classifier[6]
    m.reset_classifier(3)
    assert m.eval()(torch.randn(1, 1, 40, 40)).shape == (1, 3)
    m.reset_classifier(0)
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 4096)


def test_bad_cfg_raises():
    with pytest.raises(ConfigError, match="cfg"):
        VGG("Z")
