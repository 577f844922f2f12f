"""Cascade R-CNN (Cai & Vasconcelos 2018) on cvcraft's Faster R-CNN + FPN.

Key idea: one box head trained at IoU 0.5 is best at refining boxes of about that quality;
a sequence of heads trained at rising IoU thresholds (0.5, 0.6, 0.7), each fed the boxes the
previous one regressed, keeps enough positives at every threshold (regression moves the
distribution of proposals towards higher IoU) and ends with a high-quality detector.

- Stage t has its own two-fc head (stage 1 is Faster R-CNN's ``fc6/fc7/cls_score/bbox_pred``,
  so a one-stage cascade *is* Faster R-CNN), its own IoU threshold and its own delta weights
  ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)): later stages see smaller deltas, the
  larger weights scale them back to unit variance.
- Training: stage 1 samples from the RPN proposals (+ gts) at IoU 0.5; stage t > 1 decodes
  stage t-1's deltas on its sampled RoIs (detached; a positive takes its gt class's box, a
  negative its best non-background class's) and re-samples from those boxes (+ gts) at its
  own threshold. Loss = RPN + sum_t w_t (CE_t + smoothL1_t), w = (1, 0.5, 0.25).
- Inference: the proposals go through the stages in turn (stage t's input boxes are stage
  t-1's regressed boxes), class scores = mean of the stages' softmax scores, boxes = the last
  stage's regression, then per-class NMS.
- Regression is class-agnostic (one box per RoI, the paper's choice) unless
  ``class_agnostic=False``.

Shapes: as Faster R-CNN; ``forward`` adds ``stages``: per stage a dict with ``rois`` [(R_i, 4)],
``cls_logits`` (R, C+1), ``box_deltas`` (R, 4) or (R, 4 (C+1)) and, in training, ``roi_labels``
/ ``roi_targets``; the top-level ``proposals``/``cls_logits``/``box_deltas`` are the last
stage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detections, Target, valid_targets
from cvcraft.models.detection.faster_rcnn import _CFG, CPU_SIZES, FasterRCNN
from cvcraft.models.registry import register_model
from cvcraft.ops.boxes import clip_boxes
from cvcraft.ops.coders import DeltaCoder

__all__ = [
    "CascadeRCNN",
    "StageHead",
    "cascade_rcnn_resnet18_fpn",
    "cascade_rcnn_resnet50_fpn",
    "refine_boxes",
]

STAGE_IOUS = (0.5, 0.6, 0.7)
STAGE_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))
STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)


class StageHead(nn.Module):
    """A later stage's box head: two fc layers, class logits and deltas (the same names as
    Faster R-CNN's own, so ``FasterRCNN.box_head(feats, rois, head)`` runs it)."""

    def __init__(self, in_features: int, representation: int, num_classes: int, n_box: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation)
        self.fc7 = nn.Linear(representation, representation)
        self.cls_score = nn.Linear(representation, num_classes + 1)
        self.bbox_pred = nn.Linear(representation, 4 * n_box)


def refine_boxes(
    rois: torch.Tensor,
    logits: torch.Tensor,
    deltas: torch.Tensor,
    coder: DeltaCoder,
    image_size: tuple[int, int],
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """A stage's regressed boxes, the next stage's input: rois (R, 4), logits (R, C+1), deltas
    (R, 4) agnostic or (R, 4 (C+1)) -> (R, 4), decoded, clipped to ``image_size`` (H, W).

    Class-specific deltas use ``labels`` where > 0 (the sampled positives' gt class) and else
    the best non-background class of ``logits``."""
    d = deltas.view(len(deltas), -1, 4)
    if d.shape[1] > 1:
        cls = logits[:, 1:].argmax(1) + 1
        if labels is not None:
            cls = torch.where(labels > 0, labels, cls)
        d = d[torch.arange(len(d), device=d.device), cls]
    else:
        d = d[:, 0]
    return clip_boxes(coder.decode(d, rois), *image_size)


class CascadeRCNN(FasterRCNN):
    """Faster R-CNN with ``len(stage_ious)`` box-head stages (see the module docstring).

    Args:
        stage_ious: the IoU threshold of each stage's positives.
        stage_weights: each stage's ``DeltaCoder`` weights.
        stage_loss_weights: each stage's weight in the total loss.
        class_agnostic: one regressed box per RoI (True, the paper's) or one per class.
        **kw: ``FasterRCNN``'s arguments (``roi_iou`` is stage 1's threshold).
    """

    head_names = (
        *FasterRCNN.head_names,
        *(f"stage_heads.{i}.{n}" for i in range(2) for n in ("cls_score", "bbox_pred")),
    )

    def __init__(
        self,
        num_classes: int = 90,
        in_chans: int = 3,
        stage_ious: Sequence[float] = STAGE_IOUS,
        stage_weights: Sequence[Sequence[float]] = STAGE_WEIGHTS,
        stage_loss_weights: Sequence[float] = STAGE_LOSS_WEIGHTS,
        class_agnostic: bool = True,
        **kw: Any,
    ) -> None:
        n = len(stage_ious)
        if n < 1 or len(stage_weights) != n or len(stage_loss_weights) != n:
            raise ConfigError(
                f"Cascade R-CNN: stage_ious {tuple(stage_ious)}, stage_weights and "
                "stage_loss_weights need one entry per stage (at least one stage)"
            )
        if any(not 0.0 < t <= 1.0 for t in stage_ious):
            raise ConfigError(f"Cascade R-CNN: stage_ious {tuple(stage_ious)} must be in (0, 1]")
        if kw.get("sampler", "random") != "random":
            raise ConfigError(
                f"Cascade R-CNN: sampler={kw['sampler']!r}; each stage samples at its own IoU "
                "with the random sampler (sampler=ohem is for the one-head R-CNNs)"
            )
        if kw.setdefault("roi_iou", float(stage_ious[0])) != stage_ious[0]:
            raise ConfigError(
                f"Cascade R-CNN: roi_iou={kw['roi_iou']} is stage 1's threshold; set stage_ious"
            )
        super().__init__(num_classes=num_classes, in_chans=in_chans, **kw)
        rep, n_box = self.fc7.out_features, 1 if class_agnostic else num_classes + 1
        if class_agnostic:  # stage 1's own predictor: one box per RoI
            self.bbox_pred = nn.Linear(rep, 4)
        self.stage_ious = tuple(float(t) for t in stage_ious)
        self.stage_coders = [DeltaCoder(w) for w in stage_weights]
        self.roi_coder = self.stage_coders[0]
        self.stage_heads = nn.ModuleList(
            StageHead(self.fc6.in_features, rep, num_classes, n_box) for _ in range(n - 1)
        )
        for i, w in enumerate(stage_loss_weights):
            sfx = self._suffix(i)
            self.loss_weights[f"cls{sfx}"] = self.loss_weights[f"box{sfx}"] = float(w)

    @staticmethod
    def _suffix(i: int) -> str:
        return "" if i == 0 else f"{i + 1}"  # stage 1's terms keep Faster R-CNN's names

    def head(self, i: int) -> nn.Module:
        """Stage i's box head (stage 0 is the model's own fc6/fc7/cls_score/bbox_pred)."""
        return self if i == 0 else self.stage_heads[i - 1]

    def roi_stage(
        self,
        feats: Sequence[torch.Tensor],
        props: list[torch.Tensor],
        targets: list[Target] | None,
        out: dict[str, Any],
    ) -> None:
        """Every stage in turn; stage t+1 starts from stage t's regressed boxes."""
        sample = self.training and targets is not None
        if sample:
            targets = valid_targets(targets)
        rois, stages = props, []
        for i, (iou, coder) in enumerate(zip(self.stage_ious, self.stage_coders)):
            st: dict[str, Any] = {}
            if sample:
                rois, st["roi_labels"], st["roi_targets"] = self.sample_rois(
                    rois, targets, iou, coder
                )
            st["rois"] = rois
            st["cls_logits"], st["box_deltas"] = self.box_head(feats, rois, self.head(i))
            stages.append(st)
            if i + 1 < len(self.stage_ious):
                with torch.no_grad():
                    refined = refine_boxes(
                        torch.cat(rois), st["cls_logits"], st["box_deltas"], coder,
                        out["image_size"], st.get("roi_labels"),
                    )  # fmt: skip
                rois = list(refined.split([len(r) for r in rois]))
        last = stages[-1]
        out["stages"] = stages
        out["proposals"], out["cls_logits"], out["box_deltas"] = (
            last["rois"], last["cls_logits"], last["box_deltas"],
        )  # fmt: skip
        if sample:
            out["roi_labels"], out["roi_targets"] = last["roi_labels"], last["roi_targets"]

    def roi_stage_loss(self, outputs: dict, targets: list[Target]) -> dict[str, torch.Tensor]:
        """Each stage's CE and smooth-L1 (``cls``, ``box``, ``cls2``, ``box2``, ...); the
        weights are applied in ``loss`` through ``loss_weights``."""
        parts = {}
        for i, st in enumerate(outputs["stages"]):
            if "roi_labels" in st:
                labels, reg_t = st["roi_labels"], st["roi_targets"]
            else:  # eval outputs: every RoI of the stage, at the stage's threshold
                labels, reg_t = self._assign_all(
                    st["rois"], targets, self.stage_ious[i], self.stage_coders[i]
                )
            cls, box = self.roi_loss(st["cls_logits"], st["box_deltas"], labels, reg_t)
            parts[f"cls{self._suffix(i)}"], parts[f"box{self._suffix(i)}"] = cls, box
        return parts

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.05, iou: float = 0.5, max_det: int = 100
    ) -> Detections:
        """Mean of the stages' softmax scores, the last stage's boxes, per-class NMS."""
        probs = torch.stack([F.softmax(st["cls_logits"], -1) for st in outputs["stages"]])
        return self.detections(outputs, probs.mean(0), self.stage_coders[-1], conf, iou, max_det)


def _cascade(depth: int, num_classes: int, in_chans: int, **kw: Any) -> CascadeRCNN:
    return CascadeRCNN(num_classes=num_classes, in_chans=in_chans, depth=depth, **kw)


@register_model(default_cfg=_CFG)
def cascade_rcnn_resnet50_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> CascadeRCNN:
    """Cascade R-CNN, ResNet-50-FPN, three stages at IoU 0.5 / 0.6 / 0.7 (Faster R-CNN's
    torchvision defaults for everything else)."""
    return _cascade(50, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def cascade_rcnn_resnet18_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> CascadeRCNN:
    """CPU-sized Cascade R-CNN: ``fasterrcnn_resnet18_fpn``'s sizes, three stages."""
    return _cascade(18, num_classes, in_chans, **{**CPU_SIZES, **kw})
