"""Spectral normalisation: after power iteration converges, σ equals the largest singular
value torch.linalg.matrix_norm(W, ord=2) computes, and the normalised weight has norm 1."""

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.spectral_norm import spectral_norm, spectral_sigma


@pytest.mark.parametrize(
    "layer",
    [lambda: nn.Linear(20, 7), lambda: nn.Conv2d(3, 8, 4, 2, 1), lambda: nn.Linear(5, 30)],
)
def test_sigma_converges_to_the_spectral_norm(layer):
    torch.manual_seed(0)
    m = spectral_norm(layer(), n_power_iterations=1)
    w = m.parametrizations.weight.original.detach().flatten(1)
    oracle = torch.linalg.matrix_norm(w, ord=2)
    for _ in range(300):  # each training-mode access runs one power-iteration step
        _ = m.weight
    assert torch.allclose(spectral_sigma(m), oracle, rtol=1e-5)
    normed = m.weight.detach().flatten(1)
    assert torch.allclose(torch.linalg.matrix_norm(normed, ord=2), torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(normed, w / oracle, atol=1e-5)


def test_eval_mode_keeps_u_v_and_gradients_flow_to_the_raw_weight():
    torch.manual_seed(1)
    m = spectral_norm(nn.Linear(6, 4))
    m.eval()
    u = m.parametrizations.weight[0].u.clone()
    y = m(torch.randn(3, 6)).sum()
    y.backward()
    assert torch.equal(u, m.parametrizations.weight[0].u)  # no update in eval
    assert m.parametrizations.weight.original.grad is not None
    # a single step from a fixed start underestimates σ (power iteration approaches from below)
    oracle = torch.linalg.matrix_norm(m.parametrizations.weight.original.detach(), ord=2)
    assert spectral_sigma(m) <= oracle + 1e-6


def test_bad_input():
    with pytest.raises(ConfigError, match="n_power_iterations=0"):
        spectral_norm(nn.Linear(3, 3), n_power_iterations=0)
    with pytest.raises(ConfigError, match="no tensor 'nope'"):
        spectral_norm(nn.Linear(3, 3), name="nope")
    with pytest.raises(ConfigError, match="not spectrally normalised"):
        spectral_sigma(nn.Linear(3, 3))
