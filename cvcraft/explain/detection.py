"""Per-box explanations for detectors: the score of one detection, as a CAM target.

A detection that survived NMS is one candidate of the detector's dense output. Given a
differentiable ``decode(outputs) -> (boxes (B, N, 4) xyxy, scores (B, N, C))`` (the YOLOs'
``model.decode``), :func:`detection_score` finds, per image, the candidate whose decoded
box overlaps the given box most (IoU 1 for a box taken from the detector's own
post-processing) and returns its score for the given class. Grad-CAM of that score
(``class_activation_map(..., score_fn=...)``) shows what made *that* box fire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cvcraft.errors import ConfigError
from cvcraft.ops.boxes import elementwise_iou


def detection_score(
    decode: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
    boxes: torch.Tensor,
    labels: torch.Tensor,
) -> Callable[[Any], torch.Tensor]:
    """``score_fn`` for one box per image: ``boxes`` (B, 4) xyxy in input pixels, ``labels``
    (B,) -> the matching candidate's class score (B,), differentiable in the outputs."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(boxes) != len(labels):
        raise ConfigError(f"detection_score: {len(boxes)} boxes but {len(labels)} labels")

    def score(outputs: Any) -> torch.Tensor:
        cand, cls = decode(outputs)  # (B, N, 4), (B, N, C)
        if cand.shape[0] != len(boxes) or bool((labels >= cls.shape[-1]).any()):
            raise ConfigError(
                f"detection_score: {len(boxes)} boxes for a batch of {cand.shape[0]} and "
                f"labels {labels.tolist()} for {cls.shape[-1]} classes; give one box per image"
            )
        ref = boxes.to(cand.device, cand.dtype)[:, None]  # (B, 1, 4)
        best = elementwise_iou(cand.detach(), ref).argmax(1)  # (B,) the candidate it came from
        rows = torch.arange(len(boxes), device=cand.device)
        return cls[rows, best, labels.to(cand.device)]

    return score
