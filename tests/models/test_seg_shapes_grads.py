"""Every segmentation model: logits at the input size for two sizes (one not a multiple of
32), training-mode auxiliary outputs at the input size too, and a gradient on every parameter."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model

TINY_VGG = [4, "M", 4, "M", 8, "M", 8, "M", 8, "M"]  # VGG table with 4-8 channels, 5 pools
# case -> kwargs (or (registered name, kwargs)) small enough for about a second on one thread.
SMALL = {
    "unet": dict(base=4, depth=3),
    "unet_bilinear": ("unet", dict(base=4, depth=3, bilinear=True)),
    "unet_resnet34": dict(decoder_channels=(16, 8, 8, 8, 8)),
    "unet_pp": dict(base=4, depth=3),
    "unet_pp_ds": ("unet_pp", dict(base=4, depth=3, deep_supervision=True)),
    "unet_pp_resnet18": ("unet_pp", dict(encoder="resnet18", deep_supervision=True)),
    "u2netp": {},
    "deeplabv3_resnet18": dict(aspp_channels=16, aux=True),
    "deeplabv3_os16": ("deeplabv3_resnet18", dict(aspp_channels=16, output_stride=16)),
    "deeplabv3plus_resnet18": dict(aspp_channels=16, low_level_channels=8),
    "deeplabv3plus_sep_os8": (
        "deeplabv3plus_resnet18",
        dict(aspp_channels=16, low_level_channels=8, separable=True, output_stride=8, aux=True),
    ),
    "pspnet_resnet18": dict(head_channels=16),
    "fcn32s": dict(cfg=TINY_VGG, fc_width=16),
    "fcn16s": dict(cfg=TINY_VGG, fc_width=16),
    "fcn8s": dict(cfg=TINY_VGG, fc_width=16),
    "segnet": dict(cfg=TINY_VGG),
    "fcn_resnet50": dict(aux=True),
}
SIZES = [(64, 64), (72, 56)]  # 72 and 56 are not multiples of 32


def _build(key: str, **kw):
    spec = SMALL[key]
    name, small = spec if isinstance(spec, tuple) else (key, spec)
    return create_model(name, num_classes=3, **small, **kw)


def _logits_and_aux(out):
    return (out[0], out[1]) if isinstance(out, tuple) else (out, [])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_eval_logits_at_input_size(name):
    torch.manual_seed(0)
    m = _build(name).eval()
    for h, w in SIZES:
        with torch.no_grad():
            y = m(torch.randn(1, 3, h, w))
        assert isinstance(y, torch.Tensor) and y.shape == (1, 3, h, w)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_train_outputs_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    m = _build(name, in_chans=2).train()
    if name.startswith("fcn"):  # the paper zero-initialises the score layers, which would
        for n, p in m.named_parameters():  # block every gradient upstream at step 0
            if n.startswith("score"):
                torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 2, 64, 64)
    main, aux = _logits_and_aux(m(x))
    assert main.shape == (2, 3, 64, 64)
    assert all(a.shape == (2, 3, 64, 64) for a in aux)
    (main.square().mean() + sum(a.square().mean() for a in aux)).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters with no (or an all-zero) gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("name,side", [("unet", 8), ("unet_pp", 8), ("segnet", 32)])
def test_input_too_small_for_the_poolings_raises_a_clear_error(name, side):
    m = _build(name).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, side, side)).shape == (1, 3, side, side)  # the minimum works
        with pytest.raises(ConfigError, match=f">= {side}"):
            m(torch.randn(1, 3, side - 1, side + 5))
