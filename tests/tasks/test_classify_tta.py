"""TTA logits equal the average of the transformed passes done by hand."""

import numpy as np
import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.tasks.classify.tta import tta_logits


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                      nn.LazyLinear(5))  # fmt: skip
    m(torch.randn(2, 3, 8, 8))
    # not symmetric under flips, and eval mode (BN uses running stats)
    return m.eval()


def _pad_np(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")


@torch.no_grad()
def test_flip_and_translate_equal_separate_passes():
    m = _model()
    x = torch.randn(6, 3, 8, 8)
    f = lambda z: m(z)  # noqa: E731
    torch.testing.assert_close(tta_logits(f, x, "none"), m(x))
    flip = 0.5 * m(x) + 0.5 * m(torch.from_numpy(x.numpy()[..., ::-1].copy()))
    torch.testing.assert_close(tta_logits(f, x, "flip"), flip, rtol=1e-5, atol=1e-6)
    p = _pad_np(x.numpy(), 1)
    shifted = [torch.from_numpy(p[:, :, d : d + 8, d : d + 8].copy()) for d in (0, 2)]

    def flip_avg(z):
        return 0.5 * m(z) + 0.5 * m(z.flip(-1))

    ref = 0.5 * flip_avg(x) + 0.5 * (flip_avg(shifted[0]) + flip_avg(shifted[1])) / 2
    torch.testing.assert_close(tta_logits(f, x, "flip_translate"), ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ref, m(x), atol=1e-3)  # the views do change the answer


def test_bad_mode():
    with pytest.raises(ConfigError, match="tta='rot'"):
        tta_logits(lambda z: z, torch.zeros(1, 3, 4, 4), "rot")
