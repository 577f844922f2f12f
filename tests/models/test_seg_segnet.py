import pytest
import torch
import torch.nn.functional as F

import cvcraft.models.segmentation.segnet as segnet_module
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.segmentation.segnet import unpool_scatter

TINY_VGG = [4, "M", 4, "M", 8, "M", 8, "M", 8, "M"]


def test_segnet_param_count_by_hand_and_encoder_loads_vgg16_bn_features():
    m = create_model("segnet", num_classes=12)
    enc = sum(p.numel() for p in m.encoder.parameters())
    assert enc == 14_723_136  # VGG-16-BN's 13 conv + BN layers
    # Decoder: the encoder's convs mirrored (in/out swapped per stage boundary), each 3x3
    # conv + BN (no bias), then a 1x1 classifier.
    dec_layers = [(512, 512)] * 5 + [(512, 256), (256, 256), (256, 256), (256, 128),
                                     (128, 128), (128, 64), (64, 64), (64, 64)]  # fmt: skip
    dec = sum(i * o * 9 + 2 * o for i, o in dec_layers) + 64 * 12 + 12
    assert model_info(m)["params"] == enc + dec
    vgg = VGG(TINY_VGG, batch_norm=True)
    small = create_model("segnet", num_classes=2, cfg=TINY_VGG)
    small.encoder.load_state_dict(vgg.features.state_dict(), strict=True)


def test_unpooling_puts_values_back_at_the_argmax_positions():
    m = create_model("segnet", num_classes=2, cfg=[2, "M"]).eval()
    # With the decoder and head identities, the output is the unpooled sparse map itself.
    m.decoder[0] = torch.nn.Identity()
    m.head = torch.nn.Identity()
    for i in range(3):  # no conv/BN/ReLU: pool the raw input
        m.encoder[i] = torch.nn.Identity()
    x = torch.tensor([[[[1.0, 5, 2, 0], [3, 4, 8, 1], [0, 0, 1, 1], [9, 2, 1, 3]]]])
    with torch.no_grad():
        y = m(x)
    ref = torch.tensor([[[[0.0, 5, 0, 0], [0, 0, 8, 0], [0, 0, 0, 0], [9, 0, 0, 3]]]])
    assert torch.equal(y, ref)


@pytest.mark.parametrize("hw", [(8, 8), (9, 7), (5, 12)])
def test_unpool_scatter_equals_max_unpool2d(hw):
    """The export path's scatter unpooling against torch's kernel, odd sizes included."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw)
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    expected = F.max_unpool2d(pooled, idx, 2, 2, output_size=hw)
    got = unpool_scatter(pooled, idx, hw)
    assert got.shape == expected.shape == (2, 3, *hw)
    assert torch.equal(got, expected)


def test_segnet_export_path_matches_eager(monkeypatch):
    """The whole model with the export-time unpooling gives the eager outputs."""
    torch.manual_seed(0)
    model = create_model("segnet", num_classes=4, cfg=TINY_VGG).eval()
    x = torch.randn(1, 3, 40, 56)  # pooled sizes include odd ones (5, 7, 3)
    with torch.no_grad():
        eager = model(x)
        monkeypatch.setattr(segnet_module, "is_exporting", lambda: True)
        exported_path = model(x)
    torch.testing.assert_close(exported_path, eager, atol=0, rtol=0)
