"""Finding the layer to explain: lookup by name (with "did you mean"), a sensible default,
and capturing a layer's output during a forward pass.

The default CAM layer is the last module whose output is still a spatial map (B, C, h, w)
with h * w > 1 — for a CNN classifier the end of the backbone (ResNet's ``layer4``), right
before global pooling, which is where Grad-CAM's authors look.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, or a ConfigError listing the closest layer names."""
    names = [n for n, _ in model.named_modules() if n]
    if name in names:
        return model.get_submodule(name)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = (
        f"did you mean {', '.join(close)}?" if close else f"layers include {', '.join(names[:8])}"
    )
    raise ConfigError(
        f"layer={name!r} is not a layer of {type(model).__name__}; {hint} "
        "(names as in model.named_modules())"
    )


@torch.no_grad()
def default_cam_layer(model: nn.Module, x: torch.Tensor, coarser: bool = False) -> str:
    """Name of the last module (in order of finishing its forward) whose output is a
    spatial map (B, C, h, w) with h * w > 1 (with ``coarser``: also smaller than the input,
    which skips a segmenter's full-resolution logits); ``x`` is one batch (B, C, H, W)."""
    last: list[str] = []
    handles = []
    limit = x.shape[-2] * x.shape[-1] if coarser else None

    def hook(name: str):
        def fn(_m: nn.Module, _inp: tuple, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                area = out.shape[2] * out.shape[3]
                if area > 1 and (limit is None or area < limit):
                    last.append(name)

        return fn

    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not last:
        raise ConfigError(
            f"{type(model).__name__} has no layer with a spatial (B, C, h, w) output; "
            "name one with layer=..., or use method=rollout for a Vision Transformer"
        )
    return last[-1]


def score_cam_layer(
    model: nn.Module,
    x: torch.Tensor,
    score_fn: Callable[[Any], torch.Tensor],
    exclude: tuple[str, ...] = ("head",),
) -> str:
    """The last module (in order of finishing its forward) with a spatial output coarser
    than ``x`` that the score really depends on (non-zero gradient), outside the modules
    named in ``exclude`` (prediction heads, whose last conv is the score map itself).

    For a multi-scale detector this is the deepest feature of the level the box came from
    (in a PAN neck: the P3 map for a small box, P5 for a large one)."""
    names, outs = [], []
    limit = x.shape[-2] * x.shape[-1]
    skip = tuple(f"{e}." for e in exclude)

    def hook(name: str):
        def fn(_m: nn.Module, _inp: tuple, out: object) -> object:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.requires_grad:
                if 1 < out.shape[2] * out.shape[3] < limit:
                    names.append(name)
                    outs.append(out)
                    return out.clone()  # later in-place ops must not touch the recorded map
            return None

        return fn

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if n and n not in exclude and not n.startswith(skip)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            score = score_fn(model(x)).sum()
            grads = torch.autograd.grad(score, outs, allow_unused=True) if outs else []
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    for name, g in zip(reversed(names), reversed(grads)):
        if g is not None and bool(g.abs().sum() > 0):
            return name
    raise ConfigError(
        f"no spatial layer of {type(model).__name__} outside {exclude} influences this score; "
        "name one with layer=..."
    )


@contextmanager
def capture_output(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``layer``'s output under key ``"out"`` while the context is open.

    The hook hands the rest of the network a clone, so a later in-place op (``out +=
    shortcut``, an in-place ReLU) cannot overwrite the recorded map or its gradient.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _inp: tuple, out: object) -> object:
        if not isinstance(out, torch.Tensor):
            raise ConfigError(
                f"the CAM layer {type(layer).__name__} returns {type(out).__name__}, not a "
                "tensor; pick a layer whose output is one feature map"
            )
        store["out"] = out
        return out.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
