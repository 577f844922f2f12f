import pytest
import torch
import torchvision

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.resnet import Bottleneck, ResNet

torch.set_num_threads(1)


@pytest.mark.parametrize("name,size", [("resnet18", 224), ("resnet50", 224), ("resnet34", 96)])
def test_torchvision_parity(name, size, randomize_bn):
    """Random BN statistics/affine (at init eval BN is the identity and would hide a BN/ReLU
    swap), loaded the way users load a torchvision file: ``create_model(weights=...)``."""
    torch.manual_seed(0)
    ref = randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    ours = create_model(name, weights=ref.state_dict()).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
             "wide_resnet50_2"],
)  # fmt: skip
def test_keys_shapes_and_param_counts_equal_torchvision(name):
    ref = getattr(torchvision.models, name)(weights=None)
    ours = create_model(name)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert all(our_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())


def test_in_chans_num_classes_and_classifier():
    m = create_model("resnet18", num_classes=7, in_chans=1).eval()
    assert m.conv1.weight.shape == (64, 1, 7, 7)
    assert m.default_input_size == (1, 224, 224)
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 7)
    assert m.get_classifier() is m.fc and m.fc.in_features == 512
    m.reset_classifier(3)
    assert m(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    m.reset_classifier(0)
    assert m(torch.randn(1, 1, 64, 64)).shape == (1, 512)  # pooled features


@pytest.mark.parametrize(
    "name,features,side",
    [("resnet18_cifar", 512, 4), ("resnet50_cifar", 2048, 4), ("resnet20", 64, 8)],
)
def test_cifar_variants(name, features, side):
    m = create_model(name, num_classes=10).eval()
    assert m.default_input_size == (3, 32, 32)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    # No stem downsampling: 32 -> 4 after three stride-2 stages (8 after two for resnet20).
    assert feats.shape == (2, features, side, side)
    assert m(x).shape == (2, 10)


def test_cifar_stem_keeps_torchvision_keys():
    ours = create_model("resnet18_cifar", num_classes=1000)
    ref = torchvision.models.resnet18(weights=None)
    ref_sd = {k: v for k, v in ref.state_dict().items() if k != "conv1.weight"}
    missing, unexpected = ours.load_state_dict(ref_sd, strict=False)
    assert missing == ["conv1.weight"] and unexpected == []


# He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters. Option-B
# projections add 2,752 parameters (1x1 convs 16->32, 32->64 and their BNs).
@pytest.mark.parametrize(
    "depth,paper_m", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)]
)
def test_he_cifar_resnet_param_counts(depth, paper_m):
    n = model_info(create_model(f"resnet{depth}", num_classes=10))["params"]
    assert n == pytest.approx(paper_m * 1e6, rel=0.03)
    blocks = (depth - 2) // 6

    # Exact count: stem conv+bn, 3 stages of BasicBlocks, 2 projections, fc.
    def block(c_in, c):
        return 9 * c_in * c + 2 * c + 9 * c * c + 2 * c

    exact = 9 * 3 * 16 + 2 * 16
    exact += blocks * block(16, 16)
    exact += block(16, 32) + (blocks - 1) * block(32, 32) + 16 * 32 + 2 * 32
    exact += block(32, 64) + (blocks - 1) * block(64, 64) + 32 * 64 + 2 * 64
    exact += 64 * 10 + 10
    assert n == exact


def test_zero_init_residual_and_drop_rate():
    m = create_model("resnet50", zero_init_residual=True, drop_rate=0.5)
    assert all(torch.all(b.bn3.weight == 0) for b in m.modules() if isinstance(b, Bottleneck))
    # With zero-initialised residual branches each block is relu(shortcut(x)).
    blk = m.layer1[1].eval()
    x = torch.rand(1, 256, 8, 8)
    torch.testing.assert_close(blk(x), x)
    m.eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(m(x), m(x))  # dropout inactive in eval
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(x), m(x))  # dropout active before fc in training
    feats = m.forward_head(m.forward_features(x), pre_logits=True)
    assert feats.shape == (1, 2048)


def test_bad_options_raise_config_errors():
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match="stem"):
        ResNet("basic", (1, 1), widths=(8, 16), stem="tiny")
    with pytest.raises(ConfigError, match="block"):
        ResNet("dense", (1,), widths=(8,))
