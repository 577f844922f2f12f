"""Load weights into a model from a cvcraft checkpoint, a bare state_dict or a torchvision file.

One path for every model: ``create_model(name, weights=PATH)`` calls :func:`load_weights`.
The file is read with ``torch.load(weights_only=True)`` (a checkpoint is data, never code);
a cvcraft checkpoint's ``ema`` weights are taken when present (they are the primary model),
else its ``model``; a DDP ``module.`` prefix is dropped. If the keys fit the model better
after the model's registered torchvision converter, the file is a torchvision state_dict
and is loaded converted -- nobody has to find a module's ``from_torchvision_state_dict``.

A classifier head whose shape differs (another ``num_classes``) or that the model does not
have (``num_classes=0``) is left at its initialisation with a warning: that is transfer
learning. RGB weights of the first conv are adapted to another ``in_chans``
(:func:`adapt_input_conv`). Any other missing, unexpected or mis-shaped key raises
``CheckpointError``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvcraft.errors import CheckpointError

__all__ = [
    "adapt_input_conv",
    "checkpoint_weights",
    "head_prefixes",
    "load_weights",
    "read_weights",
    "rename_keys",
]

Converter = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]


def rename_keys(
    sd: Mapping[str, torch.Tensor], rules: Sequence[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """Apply regex substitutions ``(pattern, replacement)`` in order to every key; a key that
    becomes ``""`` is dropped. Tensors are shared, not copied."""
    out = {}
    for key, value in sd.items():
        for pat, rep in rules:
            key = re.sub(pat, rep, key)
        if key:
            out[key] = value
    return out


def checkpoint_weights(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights in ``state``: a bare state_dict, or a cvcraft checkpoint's ``ema`` (when
    present) else ``model``; non-tensor entries and a DDP ``module.`` prefix are dropped."""
    if isinstance(state.get("model"), Mapping):
        state = state["ema"] if isinstance(state.get("ema"), Mapping) else state["model"]
    sd = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP wrapper
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely (``weights_only=True``) and return its state_dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:  # refused, empty, bad zip
        raise CheckpointError(
            f"weights file {path} is not a loadable state_dict or checkpoint "
            f"({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"weights file {path} holds a {type(state).__name__}, not a state_dict; save "
            "model.state_dict() (or a cvcraft checkpoint), not the model object"
        )
    return checkpoint_weights(state)


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the model's classifier: its ``head_names`` and ``get_classifier()``."""
    names = list(getattr(model, "head_names", ()))
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        names += [n for n, m in model.named_modules() if m is head and n]
    return tuple(f"{n}." for n in names)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights (O, C, kh, kw) trained on C channels, for ``in_chans`` channels.

    One channel: the sum over C, so a gray image x gives what the C-channel model gives on x
    repeated C times. Otherwise the C filters repeat cyclically and are scaled by C /
    in_chans, keeping the response's scale (exact on a constant image when in_chans is a
    multiple of C).
    """
    c = weight.shape[1]
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    idx = torch.arange(in_chans, device=weight.device) % c
    return weight[:, idx] * (c / in_chans)


def _first_conv_key(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def _fit(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> int:
    return sum(1 for k, v in sd.items() if k in own and tuple(own[k].shape) == tuple(v.shape))


def load_weights(
    model: nn.Module,
    weights: str | Path | Mapping[str, Any],
    *,
    tv_converter: Converter | None = None,
    model_name: str | None = None,
) -> dict[str, list[str]]:
    """Load ``weights`` (a path or a loaded dict) into ``model`` in place.

    ``tv_converter`` renames a torchvision state_dict to the model's keys; it is applied
    when the renamed keys fit the model better than the original ones. Returns
    ``{"source": ["cvcraft" | "torchvision"], "skipped_head": [keys left at init]}``.
    """
    source = str(weights) if isinstance(weights, (str, Path)) else "the weights dict"
    sd = read_weights(weights) if isinstance(weights, (str, Path)) else checkpoint_weights(weights)
    own = model.state_dict()
    kind = "cvcraft"
    if tv_converter is not None:
        converted = tv_converter(sd)
        if _fit(converted, own) > _fit(sd, own):
            sd, kind = converted, "torchvision"
    first = _first_conv_key(model)
    if first in sd and first in own and sd[first].shape != own[first].shape:
        a, b = tuple(sd[first].shape), tuple(own[first].shape)
        if len(a) == len(b) == 4 and a[0] == b[0] and a[2:] == b[2:]:
            sd = {**sd, first: adapt_input_conv(sd[first], b[1])}
    heads = head_prefixes(model)
    in_head = [k for k in set(sd) | set(own) if k.startswith(heads)] if heads else []
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    skipped = sorted(k for k in mismatched + missing + unexpected if k in in_head)
    bad_shape = [k for k in mismatched if k not in skipped]
    missing = [k for k in missing if k not in skipped]
    unexpected = [k for k in unexpected if k not in skipped]
    if bad_shape or missing or unexpected:
        name = model_name or type(model).__name__

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" ... (+{len(keys) - 6} more)" if len(keys) > 6 else "")

        lines = [f"weights {source} ({kind} keys) do not fit model {name}:"]
        lines += [f"  {k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in bad_shape[:6]]  # fmt: skip
        if missing:
            lines.append(f"  missing in the file ({len(missing)}): {few(missing)}")
        if unexpected:
            lines.append(f"  not in the model ({len(unexpected)}): {few(unexpected)}")
        lines.append(
            "  build the architecture (and options such as aux=True) the file was saved from"
        )
        raise CheckpointError("\n".join(lines))
    if skipped:
        warnings.warn(
            f"{model_name or type(model).__name__}: classifier weights {skipped[:4]} from "
            f"{source} do not fit this num_classes and keep their initialisation",
            stacklevel=3,
        )
    with torch.no_grad():
        for k, v in own.items():
            if k in sd and k not in skipped:
                v.copy_(sd[k])  # state_dict tensors share storage with parameters and buffers
    return {"source": [kind], "skipped_head": skipped}
