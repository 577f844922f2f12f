"""Finding the layer to explain: lookup by name (with "did you mean"), a sensible default,
and capturing a layer's output during a forward pass.

The default CAM layer is the last module whose output is still a spatial map (B, C, h, w)
with h * w > 1 — for a CNN classifier the end of the backbone (ResNet's ``layer4``), right
before global pooling, which is where Grad-CAM's authors look.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager

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
def default_cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last module (in order of finishing its forward) whose output is a
    spatial map (B, C, h, w) with h * w > 1; ``x`` is one input batch (B, C, H, W)."""
    last: list[str] = []
    handles = []

    def hook(name: str):
        def fn(_m: nn.Module, _inp: tuple, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1:
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
