"""DenseFuse: shapes for every strategy, the L1-norm fusion rule against a hand-written
loop oracle, the source-order symmetry of the fixed rules, and bad inputs."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.fusion.densefuse import l1_norm_fusion
from cvcraft.tasks import model_task


@pytest.mark.parametrize("strategy", ["add", "l1", "concat"])
def test_output_shape_range_and_any_size(strategy):
    torch.manual_seed(0)
    m = create_model("densefuse", width=4, strategy=strategy).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 2, 13, 21))
    assert y.shape == (2, 1, 13, 21) and 0 <= float(y.min()) and float(y.max()) <= 1
    if strategy != "concat":  # fixed rules treat the two sources alike
        x = torch.rand(1, 2, 9, 9)
        assert torch.allclose(m(x), m(x.flip(1)), atol=1e-6)


def test_untrained_skip_network_is_the_pixel_average():
    x = torch.rand(2, 2, 12, 15) * 0.9 + 0.05
    with torch.no_grad():
        y = create_model("densefuse", width=4)(x)
    torch.testing.assert_close(y, x.mean(1, keepdim=True), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # without the skip the last conv is random: not the average
        z = create_model("densefuse", width=4, skip=False)(x)
    assert (z - x.mean(1, keepdim=True)).abs().max() > 1e-3


def test_l1_norm_rule_matches_a_loop_oracle():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 1, 3, 5, 6))
    got = l1_norm_fusion(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    act = [np.abs(x[0]).sum(0) for x in (a, b)]  # (H, W) channel L1 norms
    want = np.zeros_like(a)
    for y in range(5):
        for x in range(6):
            win = (slice(max(0, y - 1), y + 2), slice(max(0, x - 1), x + 2))  # valid 3x3
            ca, cb = act[0][win].mean(), act[1][win].mean()
            want[0, :, y, x] = (ca * a[0, :, y, x] + cb * b[0, :, y, x]) / (ca + cb)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    zero = torch.zeros(1, 2, 3, 3)
    assert torch.equal(l1_norm_fusion(zero, zero), zero)


def test_registry_task_and_bad_inputs():
    assert model_task("densefuse") == "fuse"
    with pytest.raises(ConfigError, match="in_chans must be 2"):
        create_model("densefuse", in_chans=3)
    with pytest.raises(ConfigError, match="strategy='max'"):
        create_model("densefuse", strategy="max")
    with pytest.raises(ConfigError, match=r"expects \(N, 2, H, W\)"):
        create_model("densefuse", width=4)(torch.rand(1, 3, 8, 8))
