import pytest
import torch
import torchvision

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, list_models, model_info
from cvcraft.models.classification.vit import VisionTransformer, from_torchvision_state_dict


def test_vit_b16_matches_torchvision(randomize_bn):
    """LayerNorm affine randomised; weights loaded through ``create_model(weights=...)``."""
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.vit_b_16(weights=None)).eval()
    torch.nn.init.normal_(ref.heads.head.weight, std=0.02)  # torchvision zero-inits the head
    ours = create_model("vit_base_patch16_224", weights=ref.state_dict()).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    assert set(from_torchvision_state_dict(ref.state_dict())) == set(ours.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    assert expected.abs().max() > 0.01  # a zero head would make the comparison vacuous
    assert (out - expected).abs().max().item() <= 1e-5


def test_mapping_covers_every_torchvision_key_of_a_small_vit():
    ref = torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5)
    ours = VisionTransformer(32, 8, 5, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
    mapped = from_torchvision_state_dict(ref.state_dict())
    assert sorted(mapped) == sorted(ours.state_dict())
    ours.load_state_dict(mapped, strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "name,params",
    [("vit_tiny_patch16_224", 5_717_416), ("vit_small_patch16_224", 22_050_664)],
)
def test_param_counts_match_the_papers_configs(name, params):
    # ViT-Ti 5.7M, ViT-S 22.1M (Touvron et al. 2021, DeiT Table 1).
    with torch.device("meta"):
        assert model_info(create_model(name))["params"] == params


def test_other_input_size_interpolates_position_table():
    torch.manual_seed(1)
    m = create_model("vit_tiny_patch16_224", num_classes=7).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 160, 160)).shape == (2, 7)
        assert m.forward_features(torch.randn(1, 3, 160, 96)).shape == (1, 1 + 10 * 6, 192)
    with pytest.raises(ConfigError, match="patch size"):
        m(torch.randn(1, 3, 100, 100))


def test_cifar_vit_and_classifier_api():
    assert "vit_tiny_patch4_32" in list_models("vit*")
    m = create_model("vit_tiny_patch4_32", num_classes=10, in_chans=1).eval()
    assert m.default_input_size == (1, 32, 32)
    x = torch.randn(2, 1, 32, 32)
    assert m.forward_features(x).shape == (2, 65, 192)
    assert m(x).shape == (2, 10)
    assert m.get_classifier() is m.head
    m.reset_classifier(0)
    assert m(x).shape == (2, 192)


def test_training_mode_drop_path_runs_and_backprops():
    m = create_model("vit_tiny_patch4_32", num_classes=3, drop_path_rate=0.1, drop_rate=0.1)
    loss = m(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    assert m.patch_embed.weight.grad is not None and m.pos_embed.weight.grad.abs().sum() > 0
