"""TNT-S against timm's ``tnt_s_patch16_224`` (keys mapped by ``from_timm_state_dict``):
parameter counts at 224 and outputs with randomised norms/biases (at 64 px, built for it);
feature maps against the blocks run by hand; bad sizes."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.tnt import from_timm_state_dict

timm = pytest.importorskip("timm")


def test_param_count_equals_timm():
    with torch.device("meta"):
        ref = timm.create_model("tnt_s_patch16_224", pretrained=False)
        ours = create_model("tnt_s_patch16_224")
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters()) == 23_768_584


def test_outputs_equal_timm():
    torch.manual_seed(0)
    ref = timm.create_model("tnt_s_patch16_224", pretrained=False, img_size=64).eval()
    with torch.no_grad():  # LayerNorm affines and biases start at 1 / 0: randomise them
        for p in ref.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    ours = create_model("tnt_s_patch16_224", img_size=64).eval()
    ours.load_state_dict(from_timm_state_dict(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
        fa, fb = ours.forward_features(x), ref.forward_features(x)
    assert b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)


def test_feature_maps_are_patch_tokens_after_each_block():
    torch.manual_seed(0)
    m = create_model("tnt_s_patch16_224", img_size=32, depth=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got = m.forward_intermediates(x, [0, 2])
        pixel, patch = m._tokens(x)
        ref = []
        for blk in m.blocks:
            pixel, patch = blk(pixel, patch)
            ref.append(patch[0, 1:].T.reshape(384, 2, 2))  # 4 patches as a 2x2 map
    assert [tuple(g.shape) for g in got] == [(1, 384, 2, 2)] * 2
    torch.testing.assert_close(got[0][0], ref[0])
    torch.testing.assert_close(got[1][0], ref[2])
    feats = create_model("tnt_s_patch16_224", img_size=32, depth=3, features_only=True)
    assert feats.reductions() == [16, 16, 16] and feats.channels() == [384] * 3


def test_bad_sizes_raise():
    m = create_model("tnt_s_patch16_224", img_size=32, depth=1)
    with pytest.raises(ConfigError, match="img_size"):
        m(torch.randn(1, 3, 48, 48))
    with pytest.raises(ConfigError, match="multiple"):
        create_model("tnt_s_patch16_224", img_size=40)
