"""Shared helpers of the reference tests: numpy <-> float64 torch with autograd."""

from __future__ import annotations

import numpy as np
import torch


def t(a: np.ndarray, grad: bool = True) -> torch.Tensor:
    """A float64 leaf tensor copied from ``a`` (requires grad by default)."""
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def close(ours, theirs, tol: float = 1e-5) -> None:
    """Values equal to ``tol`` (absolute and relative), torch tensors or arrays."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=tol, atol=tol)
