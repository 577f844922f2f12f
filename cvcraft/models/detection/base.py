"""The contract every detector in the registry keeps, so one task trains them all.

A detector is an ``nn.Module`` with three entry points:

- ``forward(images, targets=None)``: ``images`` float (N, 3, H, W), 0-1 (what the detect
  task feeds); a model built for another input scale maps 0-1 to it itself (SSD's
  ``input_norm``: a BatchNorm-free trunk does not learn otherwise). Returns the raw outputs in
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

from typing import Any

import torch
from torch import nn

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
