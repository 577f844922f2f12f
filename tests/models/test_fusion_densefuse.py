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


def _l1_reference(a: np.ndarray, b: np.ndarray, r: int = 1) -> np.ndarray:
    """DenseFuse's L1-norm rule written from the paper's formulas, pixel by pixel:
    C_k(x, y) = ||phi_k(x, y)||_1 over channels; C^_k = mean of C_k over the (2r+1)^2 block
    (cells outside the map left out); w_k = C^_k / (C^_a + C^_b); f = w_a phi_a + w_b phi_b."""
    n, _, h, w = a.shape
    out = np.zeros_like(a)
    for i in range(n):
        act = [np.abs(x[i]).sum(0) for x in (a, b)]  # (H, W) channel L1 norms
        for y in range(h):
            for x in range(w):
                win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
                ca, cb = act[0][win].mean(), act[1][win].mean()
                out[i, :, y, x] = (ca * a[i, :, y, x] + cb * b[i, :, y, x]) / (ca + cb)
    return out


def test_l1_norm_rule_matches_a_loop_oracle():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 2, 3, 5, 6))
    got = l1_norm_fusion(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, _l1_reference(a, b), rtol=1e-10)
    got5 = l1_norm_fusion(torch.from_numpy(a), torch.from_numpy(b), window=5).numpy()
    np.testing.assert_allclose(got5, _l1_reference(a, b, r=2), rtol=1e-10)
    zero = torch.zeros(1, 2, 3, 3)
    assert torch.equal(l1_norm_fusion(zero, zero), zero)


@pytest.mark.parametrize("strategy", ["add", "l1"])
def test_auto_encoder_fuses_at_test_time(strategy):
    """An auto-encoder (built with either rule) fuses with the rule asked for at test time:
    decoder(rule(encoder(ir), encoder(vis))), the rule from the formula (oracle above)."""
    torch.manual_seed(0)
    m = create_model("densefuse", width=4, strategy="add", skip=False).double().eval()
    x = torch.rand(2, 2, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        fa, fb = m.encoder(x[:, :1]).numpy(), m.encoder(x[:, 1:]).numpy()
        fused = fa + fb if strategy == "add" else _l1_reference(fa, fb)
        want = torch.sigmoid(m.decoder(torch.from_numpy(fused)))
        torch.testing.assert_close(m(x, strategy=strategy), want, rtol=1e-10, atol=1e-12)
        rec = m.reconstruct(x[:, :1])
        torch.testing.assert_close(rec, torch.sigmoid(m.decoder(m.encoder(x[:, :1]))))
    with pytest.raises(ConfigError, match="switch only to 'add' or 'l1'"):
        m(x, strategy="concat")


def test_registry_task_and_bad_inputs():
    assert model_task("densefuse") == "fuse"
    with pytest.raises(ConfigError, match="in_chans must be 2"):
        create_model("densefuse", in_chans=3)
    with pytest.raises(ConfigError, match="strategy='max'"):
        create_model("densefuse", strategy="max")
    with pytest.raises(ConfigError, match=r"expects \(N, 2, H, W\)"):
        create_model("densefuse", width=4)(torch.rand(1, 3, 8, 8))
