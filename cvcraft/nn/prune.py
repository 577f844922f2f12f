"""Pruning: unstructured weight magnitude and structured L1-norm channel removal.

- Magnitude (Han et al. 2015): zero the fraction ``amount`` of conv/linear weights with the
  smallest ``|w|``, over all layers at once (``scope="global"``) or per layer. The tensors
  keep their shape (dense kernels run as fast as before; the model compresses on disk).
- L1 channels (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): in each prunable
  chain drop the ``amount`` of a conv's output channels whose filters have the smallest
  L1 norm ``sum |W[c]|``, together with the matching BatchNorm entries and the next
  conv's input channels. Tensors really shrink, so parameters, MACs and latency drop.

A chain is found in the ``torch.fx`` graph: a conv whose output flows, through nothing but
BatchNorm and channel-wise ops (activations, pooling, dropout) each used once, into exactly
one other ungrouped conv. ResNet blocks expose their inner chains (``conv1 -> bn1 -> relu
-> conv2``); block outputs meet the shortcut in an addition and are left alone, as are
convs feeding a flatten/linear head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from cvcraft.errors import ConfigError

_PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)
# Channel-wise modules a channel passes through unchanged in identity.
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.MaxPool2d, nn.AvgPool2d,
)  # fmt: skip
_PASS_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu6, F.silu, F.gelu, F.leaky_relu, F.hardswish,
    torch.sigmoid, torch.tanh, F.max_pool2d, F.avg_pool2d, F.dropout,
}  # fmt: skip
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous"}


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"amount={amount} must be in [0, 1) (the fraction to remove)")


# -- unstructured ------------------------------------------------------------------------
def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{module name: weight}`` of every conv and linear layer."""
    return {n: m.weight for n, m in model.named_modules() if isinstance(m, _PRUNABLE)}


@torch.no_grad()
def magnitude_masks(
    model: nn.Module, amount: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Bool keep-masks, one per conv/linear weight, removing ``round(amount * n)`` smallest
    ``|w|`` of all n weights (global) or of each layer's weights (``scope="layer"``)."""
    _check_amount(amount)
    if scope not in ("global", "layer"):
        raise ConfigError(f"scope={scope!r}: choose global or layer")
    weights = prunable_weights(model)
    if not weights:
        raise ConfigError(f"{type(model).__name__} has no conv or linear layers to prune")
    groups = [weights] if scope == "global" else [{n: w} for n, w in weights.items()]
    masks: dict[str, torch.Tensor] = {}
    for group in groups:
        scores = torch.cat([w.detach().abs().flatten() for w in group.values()])
        keep = torch.ones_like(scores, dtype=torch.bool)
        k = round(amount * scores.numel())
        if k:
            keep[torch.topk(scores, k, largest=False).indices] = False
        for (name, w), part in zip(group.items(), keep.split([w.numel() for w in group.values()])):
            masks[name] = part.view_as(w)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the weights where the mask is False (in place)."""
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        w.mul_(mask.to(w.dtype))


def prune_magnitude(
    model: nn.Module, amount: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Magnitude-prune ``model`` in place; returns the keep-masks (to re-apply after steps
    of fine-tuning)."""
    masks = magnitude_masks(model, amount, scope)
    apply_masks(model, masks)
    return masks


def sparsity(model: nn.Module) -> float:
    """Fraction of conv/linear weights that are exactly zero."""
    ws = list(prunable_weights(model).values())
    total = sum(w.numel() for w in ws)
    return sum(int((w == 0).sum()) for w in ws) / max(total, 1)


# -- structured --------------------------------------------------------------------------
@dataclass
class ChannelChain:
    """A conv whose output channels may be removed: its BatchNorms and the one consumer."""

    conv: str
    consumer: str
    norms: list[str] = field(default_factory=list)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as e:
        raise ConfigError(
            f"l1_channel pruning traces the model with torch.fx and {type(model).__name__} "
            f"cannot be traced ({type(e).__name__}: {str(e)[:120]}); use method=magnitude"
        ) from e


def _passes_channels(node: fx.Node, modules: dict[str, nn.Module], src: fx.Node) -> bool:
    if not node.args or node.args[0] is not src:
        return False
    if node.op == "call_module":
        return isinstance(modules[node.target], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def channel_chains(model: nn.Module) -> list[ChannelChain]:
    """Every conv -> [BN / channel-wise ops] -> conv chain whose channels can be removed."""
    graph = _trace(model).graph
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    chains = []
    for node in graph.nodes:
        if node.op != "call_module" or type(modules[node.target]) is not nn.Conv2d:
            continue
        if modules[node.target].groups != 1 or calls[node.target] != 1:
            continue
        cur, norms = node, []
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            mod = modules.get(nxt.target) if nxt.op == "call_module" else None
            if type(mod) is nn.Conv2d and nxt.args[0] is cur and len(nxt.args) == 1:
                if mod.groups == 1 and calls[nxt.target] == 1:
                    chains.append(ChannelChain(node.target, nxt.target, norms))
                break
            if type(mod) is nn.BatchNorm2d and nxt.args[0] is cur and calls[nxt.target] == 1:
                norms.append(nxt.target)
            elif not _passes_channels(nxt, modules, cur):
                break
            cur = nxt
    return chains


@torch.no_grad()
def l1_channel_plan(
    model: nn.Module, amount: float, chains: list[ChannelChain] | None = None
) -> dict[str, torch.Tensor]:
    """``{conv name: kept channel indices (ascending)}``: in each chain the conv keeps the
    ``max(1, round(C (1 - amount)))`` output channels of largest filter L1 norm."""
    _check_amount(amount)
    plan = {}
    for ch in chains if chains is not None else channel_chains(model):
        w = model.get_submodule(ch.conv).weight
        keep = max(1, round(w.shape[0] * (1 - amount)))
        l1 = w.abs().flatten(1).sum(1)
        plan[ch.conv] = torch.topk(l1, keep).indices.sort().values
    return plan


def _slice_param(module: nn.Module, name: str, idx: torch.Tensor, dim: int) -> None:
    t = getattr(module, name)
    if t is None:
        return
    new = t.detach().index_select(dim, idx.to(t.device)).clone()
    if isinstance(t, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        setattr(module, name, new)


@torch.no_grad()
def prune_channels(
    model: nn.Module, plan: dict[str, torch.Tensor], chains: list[ChannelChain] | None = None
) -> nn.Module:
    """Remove channels in place: each planned conv keeps ``plan[conv]`` output channels, its
    BatchNorms the same entries, its consumer the same input channels. Returns ``model``."""
    by_conv = {c.conv: c for c in (chains if chains is not None else channel_chains(model))}
    for name, idx in plan.items():
        if name not in by_conv:
            raise ConfigError(f"{name!r} is not a prunable conv of {type(model).__name__}")
        chain = by_conv[name]
        idx = torch.as_tensor(idx, dtype=torch.long)
        conv = model.get_submodule(name)
        _slice_param(conv, "weight", idx, 0)
        _slice_param(conv, "bias", idx, 0)
        conv.out_channels = len(idx)
        for bn_name in chain.norms:
            bn = model.get_submodule(bn_name)
            for p in ("weight", "bias", "running_mean", "running_var"):
                _slice_param(bn, p, idx, 0)
            bn.num_features = len(idx)
        consumer = model.get_submodule(chain.consumer)
        _slice_param(consumer, "weight", idx, 1)
        consumer.in_channels = len(idx)
    return model


def prune_l1_channels(model: nn.Module, amount: float) -> dict[str, int]:
    """L1-norm channel pruning of every chain, in place; returns ``{conv: kept width}``
    (what :func:`shrink_to_widths` needs to rebuild the pruned shape)."""
    chains = channel_chains(model)
    if not chains:
        raise ConfigError(
            f"{type(model).__name__} has no conv -> conv channel chain to prune; "
            "use method=magnitude"
        )
    plan = l1_channel_plan(model, amount, chains)
    prune_channels(model, plan, chains)
    return {k: len(v) for k, v in plan.items()}


def shrink_to_widths(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """Give a freshly built model a pruned model's shapes (its first ``widths[conv]``
    channels), so the pruned checkpoint's state_dict loads into it."""
    return prune_channels(model, {k: torch.arange(int(v)) for k, v in widths.items()})
