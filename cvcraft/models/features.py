"""Multi-scale features of a backbone by name, timm's ``features_only`` convention.

A backbone that offers features has

- ``feature_info``: one dict per tap, shallow to deep, ``{"num_chs": C, "reduction": r,
  "module": "layer2"}`` -- the map after module ``module`` has C channels at 1/r of the input;
- ``feature_stages()``: its trunk as ordered ``(dotted name, module)`` pairs, each applied to
  the previous one's output (the taps are some of these names);
- ``forward_intermediates(x, indices)``: the maps at those taps, (B, C, H/r, W/r) each.

``create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` wraps such a model in
:class:`FeatureListNet`, whose forward returns the list of maps. Necks (FPN) and dense heads
(U-Net, DeepLab, Faster R-CNN) read a trunk through ``forward_intermediates`` instead of
re-running its stages by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError

__all__ = [
    "FeatureListNet",
    "feature_entry",
    "prune_for_features",
    "resolve_out_indices",
    "run_stages",
    "stage_features",
]


def feature_entry(num_chs: int, reduction: int, module: str) -> dict[str, Any]:
    """One ``feature_info`` row: channels, input-to-map stride, and the module it follows."""
    return {"num_chs": int(num_chs), "reduction": int(reduction), "module": module}


def resolve_out_indices(
    feature_info: Sequence[dict[str, Any]], out_indices: Sequence[int] | None, model: str = ""
) -> list[int]:
    """Normalise ``out_indices`` (negative counts from the deepest tap; None = every tap).

    Raises ``ConfigError`` naming the model and its taps for an index out of range, a
    repeated index or an empty selection.
    """
    n = len(feature_info)
    if out_indices is None:
        return list(range(n))
    idx = [int(i) for i in out_indices]
    bad = [i for i in idx if not -n <= i < n]
    taps = ", ".join(f"{i}: {d['module']} (/{d['reduction']})" for i, d in enumerate(feature_info))
    if not idx or bad:
        raise ConfigError(
            f"out_indices {tuple(out_indices)} of {model or 'this model'} must pick among its "
            f"{n} feature taps [{taps}]" + (f"; out of range: {bad}" if bad else "")
        )
    idx = [i % n for i in idx]
    if len(set(idx)) != len(idx):
        raise ConfigError(f"out_indices {tuple(out_indices)} of {model} repeats a tap")
    return idx


def run_stages(
    stages: Sequence[tuple[str, nn.Module]],
    x: torch.Tensor,
    taps: Sequence[str],
) -> list[torch.Tensor]:
    """Apply ``stages`` in order and return the outputs of the stages named in ``taps``
    (in the order of ``taps``); stops after the deepest tap, so later stages cost nothing."""
    wanted = set(taps)
    missing = wanted - {name for name, _ in stages}
    if missing:
        raise ConfigError(f"feature taps {sorted(missing)} are not stages of this trunk")
    found: dict[str, torch.Tensor] = {}
    for name, module in stages:
        x = module(x)
        if name in wanted:
            found[name] = x
            if len(found) == len(wanted):
                break
    return [found[t] for t in taps]


def stage_features(model: nn.Module, x: torch.Tensor, indices: Sequence[int] | None) -> list[Any]:
    """``forward_intermediates`` of a backbone whose trunk is ``model.feature_stages()``."""
    info = model.feature_info
    idx = resolve_out_indices(info, indices, type(model).__name__)
    return run_stages(model.feature_stages(), x, [info[i]["module"] for i in idx])


def prune_for_features(model: nn.Module, indices: Sequence[int]) -> None:
    """Replace by ``nn.Identity`` every trunk stage after the deepest tap and every module
    named in ``model.head_names`` (pooling, classifier): a features-only model then holds
    no parameter its forward never uses (which DDP would reject)."""
    last = max(indices)
    names = [n for n, _ in model.feature_stages()]
    cut = names.index(model.feature_info[last]["module"])
    for name in list(names[cut + 1 :]) + list(getattr(model, "head_names", ())):
        model.set_submodule(name, nn.Identity())


class FeatureListNet(nn.Module):
    """A backbone reduced to its trunk; ``forward`` returns the maps at ``out_indices``.

    ``feature_info`` lists the selected taps only (timm's ``features_only``). The backbone is
    kept as ``model``, so its parameters are ``model.<classifier key>``.
    (B, C, H, W) -> [(B, num_chs_i, H / reduction_i, W / reduction_i)].
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if not hasattr(model, "feature_info") or not hasattr(model, "forward_intermediates"):
            raise ConfigError(
                f"{type(model).__name__} has no feature_info / forward_intermediates; "
                "features_only works for the backbones listed in docs/models.md"
            )
        self.out_indices = resolve_out_indices(
            model.feature_info, out_indices, type(model).__name__
        )
        prune_for_features(model, self.out_indices)
        self.model = model
        self.feature_info = [dict(model.feature_info[i]) for i in self.out_indices]
        self.default_input_size = getattr(model, "default_input_size", None)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, self.out_indices)

    def channels(self) -> list[int]:
        """``num_chs`` of every returned map."""
        return [d["num_chs"] for d in self.feature_info]

    def reductions(self) -> list[int]:
        """``reduction`` of every returned map."""
        return [d["reduction"] for d in self.feature_info]
