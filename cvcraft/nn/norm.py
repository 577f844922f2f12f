"""Normalization layers by name for NCHW feature maps, plus the SyncBatchNorm converter.

Each layer standardises activations, ``y = γ · (x - μ) / sqrt(σ² + eps) + β``, and they
differ only in the set the statistics ``μ, σ²`` are taken over:

- ``batchnorm`` (Ioffe & Szegedy 2015): per channel, over (N, H, W); running averages at eval.
- ``instancenorm`` (Ulyanov et al. 2016): per sample and channel, over (H, W) (style transfer).
- ``layernorm`` (Ba et al. 2016): over the *last* dim — for (B, N, C) token tensors.
- ``layernorm2d``: per sample and pixel, over C of an NCHW map (ConvNeXt's channels-first LN).
- ``groupnorm`` (Wu & He 2018): per sample, over (C/G, H, W) in each of G channel groups;
  batch-size independent, so it suits detection/segmentation with tiny batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.registry import Registry

NORMS: Registry[Callable[..., nn.Module]] = Registry("norm layer")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor: (B, C, H, W) -> (B, C, H, W).

    Same parameters as ``nn.LayerNorm(C)`` (so ``init_weights`` and checkpoints treat it as
    one); the input is moved channels-last, normalised over C, and moved back.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


def _group_norm(channels: int, num_groups: int | None = None, **kw: Any) -> nn.GroupNorm:
    """GroupNorm with the paper's default G=32; fewer groups when C is not a multiple of 32."""
    if num_groups is None:
        # Largest G <= 32 dividing C, so narrow layers (C=16, 24...) still get a valid norm.
        num_groups = math.gcd(32, channels)
    if num_groups <= 0 or channels % num_groups:
        raise ConfigError(
            f"groupnorm: num_groups={num_groups} must divide channels={channels}; "
            f"pick a divisor of {channels} (or leave num_groups unset)"
        )
    return nn.GroupNorm(num_groups, channels, **kw)


for _name, _factory in {
    "batchnorm": nn.BatchNorm2d,
    "syncbatchnorm": nn.SyncBatchNorm,
    "instancenorm": nn.InstanceNorm2d,
    "layernorm": nn.LayerNorm,
    "layernorm2d": LayerNorm2d,
    "groupnorm": _group_norm,
}.items():
    NORMS.register(_name, _factory)


def get_norm(name: str | Callable[..., nn.Module] | None, channels: int, **kw: Any) -> nn.Module:
    """Build the norm layer ``name`` for ``channels`` channels (``None`` -> ``nn.Identity``).

    ``kw`` goes to the layer (``eps``, ``momentum``, ``num_groups`` for groupnorm, ``affine``
    for instancenorm — torch's default there is ``affine=False``). A class or factory taking
    ``channels`` first may be passed instead of a name.
    """
    if name is None or name == "":
        return nn.Identity()
    factory = NORMS.get(name.lower()) if isinstance(name, str) else name
    return factory(channels, **kw)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm*d in ``model`` by ``nn.SyncBatchNorm`` (stats shared across
    processes in DDP, so small per-GPU batches still get whole-batch statistics).

    Parameters and running statistics are kept; returns the converted model.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
