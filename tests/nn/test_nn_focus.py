"""Focus / space-to-depth against ultralytics' Focus (same weights) and torch.pixel_unshuffle."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.nn.focus import Focus, space_to_depth


def test_space_to_depth_is_a_channel_permutation_of_pixel_unshuffle():
    x = torch.randn(2, 3, 8, 10)
    ours = space_to_depth(x)  # channel (2 dx + dy) C + c
    ref = torch.nn.functional.pixel_unshuffle(x, 2)  # channel 4 c + 2 dy + dx
    c = 3
    perm = [4 * ch + 2 * dy + dx for dx in (0, 1) for dy in (0, 1) for ch in range(c)]
    assert torch.equal(ours, ref[:, perm])


def test_focus_equals_ultralytics_focus_with_copied_weights():
    ul = pytest.importorskip("ultralytics.nn.modules")
    torch.manual_seed(0)
    ref = ul.Focus(3, 16, k=3).eval()
    for m in ref.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    ours = Focus(3, 16, k=3).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_odd_sides_raise():
    with pytest.raises(ConfigError, match="even H and W"):
        space_to_depth(torch.zeros(1, 3, 7, 8))
