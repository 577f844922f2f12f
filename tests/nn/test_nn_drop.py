import pytest
import torch
from torchvision.ops import stochastic_depth

from cvcraft.errors import ConfigError
from cvcraft.nn.drop import Dropout, Dropout2d, DropPath, drop_path


def test_drop_path_zeroes_whole_samples_and_scales_survivors():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 4, 4) + 0.5
    y = DropPath(0.25).train()(x)
    per_sample = (y / x).flatten(1)
    # each sample is either all-zero or all scaled by exactly 1/(1-p)
    dropped = (per_sample == 0).all(1)
    kept = torch.isclose(per_sample, torch.tensor(1 / 0.75)).all(1)
    assert (dropped | kept).all() and dropped.any() and kept.any()


def test_drop_path_preserves_expectation():
    torch.manual_seed(0)
    x = torch.ones(200_000, 1)
    y = drop_path(x, 0.3, training=True)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # E[y] = x
    assert (y == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_drop_path_identity_in_eval_and_p0():
    x = torch.randn(8, 4)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    with pytest.raises(ConfigError, match=r"DropPath probability must be in \[0, 1\], got 1\.5"):
        DropPath(1.5)


@pytest.mark.parametrize("p", [0.2, 0.5, 1.0])
def test_drop_path_matches_torchvision_stochastic_depth_same_seed(p):
    x = torch.randn(32, 3, 5, 5)
    torch.manual_seed(123)
    ours = drop_path(x, p, training=True)
    torch.manual_seed(123)
    ref = stochastic_depth(x, p, mode="row", training=True)
    torch.testing.assert_close(ours, ref)


def test_dropout_reexports_are_torch_modules():
    assert Dropout is torch.nn.Dropout and Dropout2d is torch.nn.Dropout2d
