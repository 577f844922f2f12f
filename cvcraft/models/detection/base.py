"""The contract every detector in the registry keeps, so one task trains them all.

A detector is an ``nn.Module`` with three entry points:

- ``forward(images, targets=None)``: ``images`` float (N, 3, H, W), 0-1 (what the detect
  task feeds); a model built for another input scale maps 0-1 to it itself with an
  ``InputNorm`` (SSD: a BatchNorm-free trunk does not learn otherwise; the ResNet detectors:
  torchvision's weights were trained on ImageNet-normalized images). Returns the raw outputs in
  whatever structure the model likes. ``targets`` is passed during training only; one-stage
  models ignore it, two-stage models (Faster R-CNN) need it to sample proposals.
- ``loss(outputs, targets) -> (total, items)``: ``targets`` is a list of N dicts with
  ``boxes`` float32 (M, 4) xyxy in input pixels and ``labels`` int64 (M,). ``total`` is a
  scalar tensor scaled for the batch (mean over images); ``items`` maps loss-part names
  (``box``, ``cls``, ``obj``, ``dfl``, ...) to floats for logging.
- ``postprocess(outputs, conf=0.25, iou=0.7, max_det=300) -> list of N dicts`` with
  ``boxes`` (K, 4) xyxy in input pixels, ``scores`` (K,), ``labels`` int64 (K,), sorted by
  score: score thresholding, decoding and (class-aware) NMS.

Class attributes a task reads: ``num_classes``, ``default_input_size`` (C, H, W), ``stride``
(the largest output stride; input sides must be multiples of it).

``valid_targets`` drops degenerate boxes from targets before any detector's loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import IMAGENET_MEAN, IMAGENET_STD

Target = dict[str, torch.Tensor]
Detections = list[dict[str, torch.Tensor]]


def valid_targets(targets: list[Target], min_size: float = 1e-3) -> list[Target]:
    """Targets without degenerate boxes (a side below ``min_size`` px), which would give
    log(0) box targets and IoU-0 matches; shared by the detectors' losses."""
    out = []
    for t in targets:  # one dict per image; the boxes inside are filtered vectorised
        wh = t["boxes"][:, 2:] - t["boxes"][:, :2]
        keep = (wh >= min_size).all(1)
        out.append({**t, "boxes": t["boxes"][keep], "labels": t["labels"][keep]})
    return out


def channel_norm(
    mean: Sequence[float], std: Sequence[float], in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB (mean, std) for ``in_chans`` inputs: as they are for 3, else their averages
    repeated (a grey image's channel is the mean of R, G, B)."""
    if in_chans == 3:
        return tuple(mean), tuple(std)
    return (sum(mean) / 3,) * in_chans, (sum(std) / 3,) * in_chans


class InputNorm(nn.Module):
    """``(x - mean) / std`` per channel: maps the detect task's 0-1 images to the scale a
    trunk was trained on. ``mean``/``std`` are RGB statistics (``channel_norm`` adapts them to
    ``in_chans``). The buffers are not in the state dict, so torchvision's weight files (and
    ours) keep their keys; ``owner`` names the model in the error for bad statistics."""

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], in_chans: int, owner: str = "detector"
    ) -> None:
        super().__init__()
        mean_v, std_v = ([float(v) for v in t] for t in (mean, std))
        if len(mean_v) != in_chans or len(std_v) != in_chans or min(std_v) <= 0:
            raise ConfigError(
                f"{owner} input_norm: need {in_chans} means and {in_chans} positive stds, got "
                f"{(tuple(mean), tuple(std))}"
            )
        self.register_buffer("mean", torch.tensor(mean_v).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std_v).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def imagenet_input_norm(enabled: bool, in_chans: int, owner: str) -> nn.Module:
    """The ImageNet ``InputNorm`` torchvision's ResNet detectors apply in their transform
    (``GeneralizedRCNNTransform``), or the identity when the inputs come normalized
    (``normalize_input=False``)."""
    if not enabled:
        return nn.Identity()
    return InputNorm(*channel_norm(IMAGENET_MEAN, IMAGENET_STD, in_chans), in_chans, owner)


class Detector(nn.Module):
    """Base class documenting the detector contract (see the module docstring)."""

    num_classes: int
    stride: int = 32
    default_input_size: tuple[int, int, int] = (3, 640, 640)

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> Any:
        raise NotImplementedError

    def loss(self, outputs: Any, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def postprocess(
        self, outputs: Any, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> Detections:
        raise NotImplementedError

    def backbone_parameters_prefix(self) -> str:
        """Name prefix of the backbone's parameters (for freeze= and lr_mults=)."""
        return "backbone"
