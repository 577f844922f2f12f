"""Spectral normalisation: divide a layer's weight by its largest singular value, so the
layer is 1-Lipschitz and a GAN discriminator built from such layers cannot sharpen without
bound (Miyato et al. 2018).

σ(W) is estimated by power iteration on the weight flattened to (out, rest): in training
each forward refines the persistent vectors u, v with ``n_power_iterations`` steps
(``v = Wᵀu/‖Wᵀu‖``, ``u = Wv/‖Wv‖``) and uses ``σ ≈ uᵀWv``; in eval mode u and v are kept,
so inference is deterministic. Implemented as a ``torch.nn.utils.parametrize``
parametrization: the layer stores the raw weight and its ``.weight`` is ``W / σ``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from cvcraft.errors import ConfigError


class SpectralNorm(nn.Module):
    """The parametrization ``W -> W / σ(W)`` with persistent power-iteration vectors.

    Shapes: ``weight`` (out, ...) is read as a matrix (out, prod(...)); ``u`` (out,),
    ``v`` (prod(...),).
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        if weight.ndim < 2:
            raise ConfigError(
                f"spectral norm needs a weight of >= 2 dims, got {tuple(weight.shape)}"
            )
        if n_power_iterations < 1:
            raise ConfigError(f"n_power_iterations={n_power_iterations} must be >= 1")
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        out, rest = weight.shape[0], weight[0].numel()
        g = torch.Generator().manual_seed(0)  # fixed start: the same layer, the same u, v
        u = torch.randn(out, generator=g).to(weight.device, weight.dtype)
        v = torch.randn(rest, generator=g).to(weight.device, weight.dtype)
        self.register_buffer("u", F.normalize(u, dim=0, eps=eps))
        self.register_buffer("v", F.normalize(v, dim=0, eps=eps))

    @torch.no_grad()
    def power_iteration(self, w: torch.Tensor, steps: int) -> None:
        """Refine u, v in place (``steps`` iterations on the matrix ``w`` (out, rest))."""
        for _ in range(steps):
            self.v.copy_(F.normalize(w.t() @ self.u, dim=0, eps=self.eps))
            self.u.copy_(F.normalize(w @ self.v, dim=0, eps=self.eps))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """The current estimate uᵀWv of the largest singular value (differentiable in W)."""
        w = weight.flatten(1)
        # u, v are cloned: the in-place updates of a later forward must not touch the graph
        return torch.dot(self.u.clone(), w @ self.v.clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.power_iteration(weight.detach().flatten(1), self.n_power_iterations)
        return weight / self.sigma(weight)


def spectral_norm(
    module: nn.Module, name: str = "weight", n_power_iterations: int = 1
) -> nn.Module:
    """Put ``module.<name>`` under spectral normalisation (in place); returns the module."""
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ConfigError(f"{type(module).__name__} has no tensor {name!r} to normalise")
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations))
    return module


def spectral_sigma(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The σ estimate of a spectrally normalised ``module`` (its raw weight's uᵀWv)."""
    if not parametrize.is_parametrized(module, name):
        raise ConfigError(f"{type(module).__name__}.{name} is not spectrally normalised")
    param = module.parametrizations[name]
    return param[0].sigma(param.original)
