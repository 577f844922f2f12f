"""Initialise a detector's backbone from a cvcraft classification checkpoint (transfer learning).

Each detector keeps its trunk as a classifier module with the classifier's own parameter
names under ``detector.backbone_parameters_prefix()`` -- ``"backbone"`` for YOLOv1 / YOLOv3,
``"backbone.body"`` for Faster R-CNN (whose FPN is new). So a ``resnet18`` classification
state dict's ``layer1.0.conv1.weight`` is the detector's
``backbone.body.layer1.0.conv1.weight``; the classifier's head (``fc.*``) has no place in
the detector and is reported as dropped. The same prefix is what ``freeze=`` and
``lr_mults=`` name to fine-tune with a frozen or slower backbone.

Reading the checkpoint file is the engine's job (floor 4); this module takes the loaded dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cvcraft.errors import CheckpointError
from cvcraft.models.weights import checkpoint_weights

__all__ = ["BackboneLoadReport", "backbone_prefix", "load_backbone_state"]


@dataclass
class BackboneLoadReport:
    """What ``load_backbone_state`` did, by classifier key (without the detector prefix).

    - ``loaded``: keys copied into the backbone.
    - ``missing``: backbone keys the checkpoint lacks (they keep their initialisation).
    - ``dropped``: checkpoint keys with no place in the backbone (the classifier head).
    - ``prefix``: where in the detector the keys went.
    """

    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the training log."""
        return (
            f"backbone {self.prefix}: loaded {len(self.loaded)} tensors, "
            f"{len(self.missing)} missing, {len(self.dropped)} dropped"
            + (f" ({', '.join(self.dropped[:4])}{' ...' if len(self.dropped) > 4 else ''})"
               if self.dropped else "")
        )  # fmt: skip


def backbone_prefix(detector: nn.Module) -> str:
    """The detector's backbone parameter prefix (``Detector.backbone_parameters_prefix``)."""
    fn = getattr(detector, "backbone_parameters_prefix", None)
    return fn() if callable(fn) else "backbone"


def load_backbone_state(
    detector: nn.Module,
    state_dict: dict[str, Any],
    *,
    strict: bool = False,
    source: str = "checkpoint",
) -> BackboneLoadReport:
    """Copy a classifier's trunk weights into ``detector``'s backbone; returns the report.

    ``state_dict``: a classifier's state dict or a whole cvcraft checkpoint (``model`` /
    ``ema``). A tensor whose shape differs (another depth or width) raises
    ``CheckpointError`` naming it; so does a checkpoint that fills no backbone tensor at all,
    and, with ``strict``, any backbone key the checkpoint lacks.
    """
    prefix = backbone_prefix(detector)
    try:
        backbone = detector.get_submodule(prefix)
    except AttributeError:
        raise CheckpointError(
            f"{type(detector).__name__} has no module {prefix!r} (its backbone prefix)"
        ) from None
    sd = checkpoint_weights(state_dict)
    own = backbone.state_dict()
    report = BackboneLoadReport(prefix)
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs backbone {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{source} does not fit {type(detector).__name__}'s backbone ({prefix}): "
            + "; ".join(mismatched[:5])
            + (f" ... (+{len(mismatched) - 5} more)" if len(mismatched) > 5 else "")
            + ". Train the classifier with the detector's backbone architecture and width."
        )
    report.loaded = [k for k in own if k in sd]
    report.missing = [k for k in own if k not in sd]
    report.dropped = [k for k in sd if k not in own]
    if not report.loaded:
        raise CheckpointError(
            f"{source} has none of the {len(own)} tensors of {type(detector).__name__}'s "
            f"backbone ({prefix}; e.g. {next(iter(own), '?')}); its keys look like "
            f"{list(sd)[:3]}. Pass a classification checkpoint of the backbone architecture."
        )
    if strict and report.missing:
        raise CheckpointError(
            f"{source} lacks {len(report.missing)} backbone tensors: {report.missing[:5]}"
        )
    with torch.no_grad():
        for k in report.loaded:
            own[k].copy_(sd[k])  # state_dict tensors share storage with the parameters
    return report
