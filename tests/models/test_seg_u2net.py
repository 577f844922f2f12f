import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.segmentation.u2net import RSU


def test_u2net_sizes_match_the_paper():
    # Paper: U2-Net 176.3 MB (44.0M float32 params), U2-Net-dagger 4.7 MB (1.13M).
    with torch.device("meta"):
        big, small = create_model("u2net", num_classes=1), create_model("u2netp", num_classes=1)
    assert round(model_info(big)["params"] / 1e6, 1) == 44.0
    assert round(model_info(small)["params"] / 1e6, 2) == 1.13


def test_rsu_structure_and_dilated_variant_never_pools():
    rsu7 = RSU(7, 3, 8, 16)
    assert len(rsu7.enc) == 6 and rsu7.bottom.conv.dilation == (2, 2)
    rsu4f = RSU(4, 16, 8, 16, dilated=True)
    assert [c.conv.dilation[0] for c in rsu4f.enc] == [1, 2, 4]
    assert rsu4f.bottom.conv.dilation == (8, 8)
    assert [c.conv.dilation[0] for c in rsu4f.dec] == [1, 2, 4]  # mirrored on the way up
    with pytest.raises(ConfigError, match="RSU depth must be >= 2, got 1"):
        RSU(1, 3, 8, 16)


def test_rsu_is_residual_over_its_input_conv():
    rsu = RSU(5, 3, 4, 6).eval()
    x = torch.randn(1, 3, 33, 47)  # odd sizes: ceil-mode pools + resize back
    with torch.no_grad():
        h = rsu.conv_in(x)
        for conv in rsu.dec:  # zero the U path: the block must return exactly conv_in(x)
            conv.bn.weight.zero_()
            conv.bn.bias.zero_()
        assert torch.equal(rsu(x), h)


def test_u2netp_fuses_six_side_outputs():
    m = create_model("u2netp", num_classes=2).train()
    fused, sides = m(torch.randn(2, 3, 48, 40))
    assert len(sides) == 6 and all(s.shape == (2, 2, 48, 40) for s in sides)
    # The fusion is a 1x1 conv over the concatenated sides.
    ref = m.fuse(torch.cat(sides, 1))
    assert torch.allclose(fused, ref, atol=1e-6)
