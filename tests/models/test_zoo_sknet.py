"""SK-ResNet-18/34 against timm (same layout): parameter counts, strict state_dict and
outputs with randomised BatchNorm; the split-fuse-select equations by hand; feature taps."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.sknet import SelectiveKernelConv

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["skresnet18", pytest.param("skresnet34", marks=pytest.mark.slow)])
def test_timm_parity(name, randomize_bn):
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model(name, pretrained=False)).eval()
    ours = create_model(name).eval()
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert b.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_selective_kernel_equations_by_hand(randomize_bn):
    torch.manual_seed(0)
    sk = randomize_bn(SelectiveKernelConv(8, 32, stride=2)).eval()
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        u1 = sk.paths[0](x[:, :4])  # split: each branch reads half the channels
        u2 = sk.paths[1](x[:, 4:])  # dilation 2: a 5x5 receptive field
        s = (u1 + u2).mean((2, 3), keepdim=True)  # fuse
        z = torch.relu(sk.attn.bn(sk.attn.fc_reduce(s)))
        logits = sk.attn.fc_select(z)  # (B, 2C, 1, 1): branch 1's C rows, then branch 2's
        a1, a2 = logits[:, :32], logits[:, 32:]
        w1 = torch.exp(a1) / (torch.exp(a1) + torch.exp(a2))  # select: softmax over branches
        torch.testing.assert_close(sk(x), w1 * u1 + (1 - w1) * u2, rtol=1e-5, atol=1e-5)
    assert u1.shape == (2, 32, 5, 5) and sk.paths[1].conv.dilation == (2, 2)
    assert sk.attn.fc_reduce.out_channels == 16  # 32 / 8 = 4, at least 16


def test_feature_taps_and_errors():
    with torch.device("meta"):
        ref = timm.create_model("skresnet18", features_only=True)
        got = create_model("skresnet18", features_only=True)
    assert got.channels() == ref.feature_info.channels()
    assert got.reductions() == ref.feature_info.reduction()
    with pytest.raises(ConfigError, match="split"):
        SelectiveKernelConv(7, 16)
