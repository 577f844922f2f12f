"""Start training from other weights (``weights=``): load every tensor that fits, and give a
head trained for another number of classes a fresh initialisation instead of refusing.

A tensor is a class-dependent head tensor when it differs from the model's only in its first
dimension (out features / out channels: ``(6, 64)`` vs ``(2, 64)``, a YOLO class conv's
``(6, C, 1, 1)`` vs ``(2, C, 1, 1)``, Faster R-CNN's ``(4 * 6, D)``) and the class count of
the file differs from the model's (or is unknown, as in a bare torchvision state_dict), or
when it belongs to the model's declared classifier (``head_names``). Those keep the model's
initialisation and are named in one line. Anything else that does not fit (another
architecture) is a ``CheckpointError`` listing the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cvcraft.engine.optim import unwrap_model
from cvcraft.errors import CheckpointError
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import adapt_input_conv, checkpoint_weights, head_prefixes


def _first_conv(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def _only_dim0_differs(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and len(a) >= 1 and a[0] != b[0] and a[1:] == b[1:]


def load_finetune_weights(
    model: nn.Module,
    state: Mapping[str, Any],
    *,
    num_classes: int | None,
    source: str,
    model_name: str | None = None,
) -> str:
    """Load ``state`` (a cvcraft checkpoint or a bare state_dict, ours or torchvision's) into
    ``model`` in place for fine-tuning; returns the one-line summary to print.

    ``num_classes`` is the model's class count now (None: unknown). A cvcraft checkpoint's
    ``num_classes`` is compared with it; its EMA weights are used when present.
    """
    model = unwrap_model(model)
    own = model.state_dict()
    sd = checkpoint_weights(state)
    kind = "cvcraft" if isinstance(state.get("model"), Mapping) else "state_dict"
    conv = tv_converter(model_name) if model_name else None
    if conv is not None:
        fit = sum(1 for k, v in sd.items() if k in own and own[k].shape == v.shape)
        converted = conv(sd)
        if sum(1 for k, v in converted.items() if k in own and own[k].shape == v.shape) > fit:
            sd, kind = converted, "torchvision"
    first = _first_conv(model)
    if first in sd and first in own and sd[first].shape != own[first].shape:
        a, b = tuple(sd[first].shape), tuple(own[first].shape)
        if len(a) == len(b) == 4 and a[0] == b[0] and a[2:] == b[2:]:
            sd = {**sd, first: adapt_input_conv(sd[first], b[1])}
    file_classes = state.get("num_classes") if kind == "cvcraft" else None
    classes_differ = file_classes is None or num_classes is None or file_classes != num_classes
    heads = head_prefixes(model)
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    head = [
        k
        for k in mismatched
        if k.startswith(heads or ("\0",))
        or (classes_differ and _only_dim0_differs(tuple(sd[k].shape), tuple(own[k].shape)))
    ]
    missing = [k for k in own if k not in sd and not k.startswith(heads or ("\0",))]
    unexpected = [k for k in sd if k not in own and not k.startswith(heads or ("\0",))]
    bad = [k for k in mismatched if k not in head]
    if bad or missing or unexpected:
        arch = state.get("model_name") if kind == "cvcraft" else None
        lines = [
            f"weights={source} do not fit model={model_name or type(model).__name__}"
            + (
                f" (the file is a checkpoint of model={arch})"
                if arch and arch != model_name
                else ""
            )
            + ":"
        ]
        lines += [f"  {k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in bad[:6]]  # fmt: skip
        for what, keys in (("missing in the file", missing), ("not in the model", unexpected)):
            if keys:
                more = f" ... (+{len(keys) - 6} more)" if len(keys) > 6 else ""
                lines.append(f"  {what} ({len(keys)}): {', '.join(keys[:6])}{more}")
        lines.append(
            "  pass the model= (and model_kwargs=) the file was trained with"
            + (f": model={arch}" if arch else "")
        )
        raise CheckpointError("\n".join(lines))
    loaded = [k for k in own if k in sd and k not in head]
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(sd[k])  # state_dict tensors share storage with the parameters
    msg = f"weights: loaded {len(loaded)}/{len(own)} tensors from {source} ({kind})"
    if head:
        k = head[0]
        was = f"{file_classes} classes" if file_classes is not None else "another class count"
        msg += (
            f"; re-initialised the head for {num_classes} classes (the file has {was}: "
            f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}): {', '.join(head[:4])}"
            + (f" +{len(head) - 4} more" if len(head) > 4 else "")
        )
    return msg
