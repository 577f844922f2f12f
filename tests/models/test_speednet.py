"""SpeedNet: shapes at every stage, the whitening stem, BN without a trained scale."""

import torch

from cvcraft.models import create_model, model_info
from cvcraft.nn.whitening import PatchWhitening


def test_speednet_shapes_and_parts():
    m = create_model("speednet", num_classes=7, widths=(8, 16, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert isinstance(m.whiten, PatchWhitening) and m.whiten.out_channels == 24
    sides = []
    z = m.act(m.whiten(x))
    for stage in m.stages:
        z = stage(z)
        sides.append(tuple(z.shape[1:]))
    assert sides == [(8, 15, 15), (16, 7, 7), (32, 3, 3)]
    feats = m.forward_features(x)
    torch.testing.assert_close(feats, z.amax((2, 3)))
    torch.testing.assert_close(m(x), m.fc(feats) / 9)
    assert m(x).shape == (2, 7)
    bn_scales = [mod.weight for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bn_scales and not any(w.requires_grad for w in bn_scales)
    assert not m.whiten.weight.requires_grad and m.whiten.bias.requires_grad
    # the 3x3 convs start as Dirac identities on their first channels
    w = m.stages[1].conv2.weight
    torch.testing.assert_close(w[:, :, 1, 1], torch.eye(16))
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    info = model_info(create_model("speednet"))
    assert 1.9e6 < info["params"] < 2.1e6
