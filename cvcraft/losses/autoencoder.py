"""Autoencoder objectives beyond reconstruction: the sparse autoencoder's activation
penalties (Ng's notes on sparse autoencoders).

- ``l1``: λ·mean |z| over the code — pushes most code units to exactly 0.
- ``kl``: Σ_j KL(ρ ‖ ρ̂_j) with ρ̂_j = the batch mean of sigmoid(z_j), the average activation
  of unit j, and KL(ρ ‖ ρ̂) = ρ log(ρ/ρ̂) + (1 - ρ) log((1 - ρ)/(1 - ρ̂)): each unit is on
  for about a fraction ρ of the inputs.

``code`` is (N, D) pre-activation; both return a scalar.
"""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError

SPARSITY_KINDS = ("l1", "kl")


def sparsity_penalty(code: torch.Tensor, kind: str = "kl", rho: float = 0.05) -> torch.Tensor:
    """The sparse autoencoder's penalty on a batch of codes (module docstring)."""
    if kind not in SPARSITY_KINDS:
        raise ConfigError(f"sparsity_kind={kind!r} is not one of {', '.join(SPARSITY_KINDS)}")
    if kind == "l1":
        return code.abs().mean()
    if not 0.0 < rho < 1.0:
        raise ConfigError(f"rho={rho} must be in (0, 1)")
    rho_hat = torch.sigmoid(code).mean(0).clamp(1e-6, 1 - 1e-6)  # (D,)
    return (rho * (rho / rho_hat).log() + (1 - rho) * ((1 - rho) / (1 - rho_hat)).log()).sum()
