"""Explicit weight penalties added to the loss, and gradient clipping.

``l1_penalty`` / ``l2_penalty`` are loss terms over the *weights* only — the same parameters
``optim.param_groups`` decays: biases, normalization parameters and other 1-d parameters are
excluded, and so are frozen ones. They differ from an optimizer's ``weight_decay``: that one is
applied inside the update (coupled L2 in SGD/Adam, decoupled in AdamW) and never appears in the
loss value; an explicit penalty is part of the loss, goes through Adam's per-parameter
scaling, and shows up in the logged loss. L1 drives weights to exactly zero (sparsity).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from cvcraft.engine.optim import named_decay_split


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for _, p, decay in named_decay_split(model) if decay]


def l1_penalty(model: nn.Module, coeff: float) -> torch.Tensor:
    """``coeff * sum_w |w|`` over the model's decayed weights (a scalar tensor with grad)."""
    ws = _weights(model)
    if not ws:
        return torch.zeros(())
    return coeff * torch.stack([w.abs().sum() for w in ws]).sum()


def l2_penalty(model: nn.Module, coeff: float) -> torch.Tensor:
    """``coeff * sum_w w**2`` over the decayed weights. Its gradient is ``2*coeff*w``, so
    ``coeff = wd / 2`` reproduces SGD's coupled ``weight_decay=wd`` exactly."""
    ws = _weights(model)
    if not ws:
        return torch.zeros(())
    return coeff * torch.stack([w.pow(2).sum() for w in ws]).sum()


def clip_gradients(
    model_or_params: nn.Module | Iterable[torch.Tensor],
    max_norm: float | None = None,
    max_value: float | None = None,
) -> torch.Tensor:
    """Clip gradients in place and return their total L2 norm *before* clipping.

    ``max_value`` clamps each gradient element to ``[-max_value, max_value]`` first
    (``clip_grad_value_``); ``max_norm`` then rescales all gradients so their joint L2 norm is
    at most ``max_norm`` (``clip_grad_norm_``). The returned norm may be inf/nan — the
    caller decides whether to skip the step (mixed precision does).
    """
    if isinstance(model_or_params, nn.Module):
        params = [p for p in model_or_params.parameters() if p.grad is not None]
    else:
        params = [p for p in model_or_params if p.grad is not None]
    if not params:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(params, max_value)
    if max_norm is not None:
        reuse = getattr(torch.nn.utils, "clip_grads_with_norm_", None)  # torch >= 2.6
        if max_value is None and reuse is not None:
            reuse(params, max_norm, total)  # the norm just computed: not a second pass
        else:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
    return total
