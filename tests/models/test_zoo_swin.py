import pytest
import torch
import torchvision

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.swin import from_torchvision_state_dict


@pytest.mark.parametrize(
    "tv,name",
    [("swin_t", "swin_tiny_patch4_window7_224"), ("swin_s", "swin_small_patch4_window7_224")],
)
def test_swin_matches_torchvision(tv, name, randomize_bn):
    """LayerNorm affine randomised (1/0 at init would hide a skipped or swapped norm); the
    weights go through ``create_model(weights=...)`` and its registered converter."""
    torch.manual_seed(0)
    ref = randomize_bn(getattr(torchvision.models, tv)(weights=None)).eval()
    ours = create_model(name, weights=ref.state_dict()).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    assert set(from_torchvision_state_dict(ref.state_dict())) == set(ours.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    assert expected.abs().max() > 0.01
    assert (out - expected).abs().max().item() <= 1e-5


def test_swin_padding_path_matches_torchvision_at_odd_size(randomize_bn):
    # 100x68 -> 25x17 tokens: not window multiples, so padding and the per-axis shift
    # rules are exercised (the last stage, 4x3, fits one window and is not shifted).
    torch.manual_seed(1)
    ref = randomize_bn(torchvision.models.swin_t(weights=None), seed=1).eval()
    ours = create_model("swin_tiny_patch4_window7_224", weights=ref.state_dict()).eval()
    x = torch.randn(1, 3, 100, 68)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5


def test_swin_nano_for_cifar():
    m = create_model("swin_nano_patch2_window4_32", num_classes=10).eval()
    assert m.default_input_size == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32)
    assert m.forward_features(x).shape == (2, 4, 4, 256)  # 32/2 = 16 -> 8 -> 4
    assert m(x).shape == (2, 10)
    assert 1.5e6 < model_info(m)["params"] < 2.5e6
    assert m.get_classifier() is m.head
    m.reset_classifier(0)
    assert m(x).shape == (2, 256)


def test_swin_trains():
    m = create_model("swin_nano_patch2_window4_32", num_classes=4)
    m(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    table = m.stages[0].blocks[1].attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0
