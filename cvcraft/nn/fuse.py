"""Fold BatchNorm into the preceding convolution for inference (fewer layers, same output).

In eval mode BN is a fixed per-channel affine map, ``bn(z) = γ·(z - μ)/sqrt(σ² + ε) + β``,
and a conv is linear, so ``bn(conv(x))`` is one conv with

    W' = W · s  (per output channel),   b' = (b - μ) · s + β,   s = γ / sqrt(σ² + ε).

``fuse_model`` finds every conv whose output feeds *only* a BatchNorm:

1. by tracing the model with ``torch.fx`` — the real dataflow, whatever the module names;
2. if the model cannot be traced (data-dependent Python control flow), by structure:
   consecutive children of an ``nn.Sequential``, and sibling children named ``conv``/``bn``
   or ``convN``/``bnN`` (``ConvBNAct``, ResNet blocks). That fallback trusts the naming
   convention (a pre-activation block that runs ``bn1`` *before* ``conv1`` would be
   mis-fused), so pass ``example_input`` to have the result checked.

The fused conv replaces the conv in place and the BN becomes ``nn.Identity``, so the
model keeps its class, methods and module names.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

from cvcraft.errors import ConfigError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _is_conv(m: nn.Module) -> bool:
    # Exact types: a Conv2d subclass may override forward (weight standardisation, ...).
    return type(m) in _CONVS


def _is_bn(m: nn.Module) -> bool:
    return type(m) in _BNS


@torch.no_grad()
def fuse_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A new conv equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    Works for Conv1d/2d/3d with any groups/stride/dilation; the result always has a bias.
    The fold is computed in float64 and cast back to the conv's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ConfigError(
            f"fuse_conv_bn: {bn} has no running statistics (track_running_stats=False); "
            "it normalises with batch statistics and cannot be folded into a conv"
        )
    if conv.out_channels != bn.num_features:
        raise ConfigError(
            f"fuse_conv_bn: conv has {conv.out_channels} output channels but the BatchNorm "
            f"has {bn.num_features}; they are not a conv -> BN pair"
        )
    w = conv.weight.double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + bn.eps)  # (C_out,)

    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter((w * scale.reshape(-1, *[1] * (w.dim() - 1))).to(conv.weight))
    fused.bias = nn.Parameter(((bias - mean) * scale + beta).to(conv.weight))
    return fused


def _pairs_by_tracing(model: nn.Module) -> list[tuple[str, str]] | None:
    """(conv, bn) qualified names where the conv's only consumer is the BN; None if untraceable."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # fx raises many types (TraceError, TypeError, ...) on untraceable code
        return None
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not _is_conv(model.get_submodule(node.target)):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue  # the conv output is used elsewhere too (or not by a module)
        bn_node = users[0]
        if not _is_bn(model.get_submodule(bn_node.target)) or bn_node.args[0] is not node:
            continue
        # A module called twice (weight sharing) would need both call sites fused alike.
        if calls[node.target] == 1 and calls[bn_node.target] == 1:
            pairs.append((node.target, bn_node.target))
    return pairs


def _sibling_bn_name(conv_name: str) -> str | None:
    """``conv`` -> ``bn``, ``conv2`` -> ``bn2`` (the ConvBNAct / ResNet convention)."""
    if conv_name.startswith("conv") and (conv_name[4:] == "" or conv_name[4:].isdigit()):
        return "bn" + conv_name[4:]
    return None


def _pairs_by_structure(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) names from module structure alone: Sequential order and conv/bn naming."""
    pairs = []
    for prefix, parent in model.named_modules():
        children = list(parent.named_children())
        base = f"{prefix}." if prefix else ""
        if isinstance(parent, nn.Sequential):
            for (cn, c), (bn_name, b) in zip(children, children[1:]):
                if _is_conv(c) and _is_bn(b):
                    pairs.append((base + cn, base + bn_name))
            continue
        named = dict(children)
        for cn, c in children:
            bn_name = _sibling_bn_name(cn)
            b = named.get(bn_name) if bn_name else None
            if _is_conv(c) and b is not None and _is_bn(b) and b.num_features == c.out_channels:
                pairs.append((base + cn, base + bn_name))
    return pairs


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` (``layer1.0.bn1``, ``stem.1``)."""
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, module)


@torch.no_grad()
def fuse_model(
    model: nn.Module,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    atol: float = 1e-4,
) -> nn.Module:
    """Fold every conv -> BatchNorm pair of ``model`` into one conv; returns the eval-mode model.

    The model is copied first unless ``inplace``. With ``example_input``, the fused output
    is compared with the original's and a ``ConfigError`` is raised if they differ by more
    than ``atol`` (relative to the output's scale) — a guard for the name-based fallback.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    reference = model(example_input) if example_input is not None else None
    pairs = _pairs_by_tracing(model)
    if pairs is None:
        pairs = _pairs_by_structure(model)
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _replace(model, conv_name, fused)
        _replace(model, bn_name, nn.Identity())
    if reference is not None:
        out = model(example_input)
        err = (out - reference).abs().max().item()
        if err > atol * max(1.0, reference.abs().max().item()):
            raise ConfigError(
                f"fuse_model: fused model differs from the original by {err:.3g} on "
                "example_input; a BatchNorm was folded into a conv it does not follow "
                "(name-based fallback). Make the model fx-traceable or fuse manually"
            )
    return model


__all__ = ["fuse_conv_bn", "fuse_model"]
