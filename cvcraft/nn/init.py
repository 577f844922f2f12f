"""Weight initialisation schemes applied to a whole model in one call.

A network trains well only if activations keep their scale from layer to layer; the
schemes here pick the weight variance that does so:

- ``"kaiming"`` (He et al. 2015): ``W ~ N(0, std²)``, ``std = gain / sqrt(fan_out)`` with
  ``gain = sqrt(2)`` for ReLU. ``fan_out`` (= out_channels * kh * kw) preserves the scale of
  the *gradients* in the backward pass, the choice torchvision's ResNets make.
- ``"xavier"`` (Glorot & Bengio 2010): ``W ~ U(-a, a)``, ``a = gain * sqrt(6 / (fan_in +
  fan_out))``, a compromise between the forward and backward pass.
- ``"default"``: each layer's own ``reset_parameters()`` (PyTorch's defaults).

In every scheme conv/linear biases become 0 and norm layers get weight 1, bias 0, so a
freshly initialised norm layer is the identity on normalised activations.
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError

SCHEMES = ("kaiming", "xavier", "default")

_WEIGHTED = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
)  # fmt: skip
_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.GroupNorm, nn.LayerNorm,
)  # fmt: skip


@torch.no_grad()
def init_weights(
    model: nn.Module, scheme: str = "kaiming", nonlinearity: str | None = None
) -> nn.Module:
    """Initialise every conv/linear/norm layer of ``model`` in place; returns ``model``.

    ``nonlinearity`` sets the gain (``torch.nn.init.calculate_gain``). ``None`` means "relu"
    for kaiming and "linear" (gain 1, plain Glorot) for xavier, the usual pairings.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown init scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    for m in model.modules():
        if scheme == "default":
            # Every torch layer re-draws its defaults here; norm layers also reset running stats.
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            continue
        if isinstance(m, _WEIGHTED):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity=nonlinearity or "relu"
                )
            else:
                gain = nn.init.calculate_gain(nonlinearity or "linear")
                nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return model
