"""YOLOv8-style training objective: batched task-aligned assignment + BCE + CIoU + DFL.

Everything is vectorized over the batch: targets are padded to (B, M_max) with a validity
mask, and the assignment is one set of (B, N, M) tensor ops instead of a loop over images
(:func:`cvcraft.ops.assigners.batched_task_aligned_assign`).

Loss, normalized by S = sum of the alignment targets over the batch (so it is a mean per
matched object, independent of batch size and image count):

- cls: ``sum BCE(sigmoid(z), t) / S`` over every cell and class, t = one_hot(label) * t_hat,
  t_hat the normalized alignment (IoU-aware classification target, as in TOOD/VFL);
- box: ``sum_pos t_hat (1 - CIoU) / S`` (or SIoU, ``box_kind``);
- dfl: ``sum_pos t_hat DFL(l, t, r, b) / S`` with the edge distances in stride units.

total = box_gain * box + cls_gain * cls + dfl_gain * dfl (YOLOv8's 7.5 / 0.5 / 1.5).

``assigner``: ``tal`` (the above), ``simota`` (YOLOX's dynamic-k least cost, on the
predicted scores and boxes) or ``atss`` (adaptive IoU threshold over the 9 nearest cells per
level, each cell seen as a 5-stride square anchor, as YOLOv6); these two run per image and
take t_hat = IoU(predicted box, its gt), the IoU-aware class target of YOLOX / YOLOv6.
``label_smoothing`` eps turns a positive's one-hot into 1 - eps/2 / eps/2 (YOLOv5's smooth
BCE) before the t_hat scaling; background cells keep 0.
``guide``: an optional second forward dict whose (detached) predictions drive the
assignment instead of the ones being trained -- YOLOv7's lead-guided assignment, where the
lead head's predictions choose the targets of both the lead and the auxiliary head.
``center_radius`` / ``candidate_topk`` are SimOTA's candidate region (in strides) and the
number of IoUs summed for its dynamic k; a larger pair gives YOLOv7's coarse (aux) labels.
Unlike ultralytics, the total is *not* multiplied by the batch size (the Detector contract
asks for a batch mean), so their SGD learning rates correspond to ours times the batch size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import distribution_focal_loss, iou_loss
from cvcraft.models.detection.yolo_coder import encode_ltrb, yolo_decode
from cvcraft.ops.assigners import atss_assign, batched_task_aligned_assign, simota_assign
from cvcraft.ops.boxes import elementwise_iou

__all__ = ["ASSIGNERS", "YoloLoss", "pad_targets"]

ASSIGNERS = ("tal", "simota", "atss")
ATSS_ANCHOR_SCALE = 5.0  # a cell's ATSS anchor is a square of 5 strides (YOLOv6's grid cell)


def pad_targets(
    targets: list[dict[str, torch.Tensor]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """List of per-image ``{"boxes" (M_i, 4), "labels" (M_i,)}`` -> boxes (B, M, 4),
    labels (B, M) int64, mask (B, M) bool; M = max(max M_i, 1): padding rows are zero with mask
    False, and there is at least one so per-cell gathers stay valid on object-free batches."""
    b = len(targets)
    counts = [len(t["labels"]) for t in targets]
    m = max(max(counts, default=0), 1)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.zeros(b, m, dtype=torch.int64, device=device)
    mask = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, (t, k) in enumerate(zip(targets, counts)):  # one copy per image, not per box
        if t["boxes"].shape != (k, 4):
            raise ConfigError(
                f"target {i}: boxes must be ({k}, 4) to match its {k} labels, got "
                f"{tuple(t['boxes'].shape)}"
            )
        boxes[i, :k] = t["boxes"].to(device=device, dtype=boxes.dtype)
        labels[i, :k] = t["labels"].to(device)
        mask[i, :k] = True
    return boxes, labels, mask


class YoloLoss(nn.Module):
    """The YOLOv8 objective over a whole batch (see the module docstring).

    Called with the model's forward dict (``box`` (B, N, 4R) logits, ``cls`` (B, N, C),
    ``anchors`` (N, 2), ``strides`` (N, 1)) and the list of targets; returns
    (total, {"box", "cls", "dfl"} gained parts as floats).
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        box_kind: str = "ciou",
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        assigner: str = "tal",
        label_smoothing: float = 0.0,
        center_radius: float = 2.5,
        candidate_topk: int = 10,
    ) -> None:
        super().__init__()
        if box_kind not in ("iou", "giou", "diou", "ciou", "siou"):
            raise ConfigError(f"YoloLoss box_kind {box_kind!r}; use ciou, siou, diou, giou, iou")
        if assigner not in ASSIGNERS:
            raise ConfigError(f"YoloLoss assigner {assigner!r}; use one of {ASSIGNERS}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"YoloLoss label_smoothing={label_smoothing} must be in [0, 1)")
        self.assigner, self.label_smoothing = assigner, label_smoothing
        self.num_classes, self.reg_max = num_classes, reg_max
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.box_kind = box_kind
        self.assign_kw = {"topk": topk, "alpha": alpha, "beta": beta}
        self.simota_kw = {"center_radius": center_radius, "candidate_topk": candidate_topk}

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        return_assignment: bool = False,
        guide: dict[str, torch.Tensor] | None = None,
    ) -> tuple[Any, ...]:
        """(total, parts); with ``return_assignment`` also the (B, N) index of each cell's
        target in its image's list (-1 = background), for heads that add terms (masks).
        ``guide``: another head's outputs whose predictions choose the targets (YOLOv7)."""
        box_logits, cls_logits = outputs["box"], outputs["cls"]  # (B, N, 4R), (B, N, C)
        anchors, strides = outputs["anchors"], outputs["strides"]  # (N, 2), (N, 1)
        b, n, c = cls_logits.shape
        if len(targets) != b:
            raise ConfigError(f"YOLO loss got {len(targets)} targets for a batch of {b} images")
        gt_boxes, gt_labels, gt_mask = pad_targets(targets, cls_logits.device)
        if gt_mask.any() and int(gt_labels[gt_mask].max()) >= c:
            raise ConfigError(
                f"a target label is {int(gt_labels[gt_mask].max())} but the model has {c} "
                f"classes; set num_classes to the dataset's class count"
            )
        pred_boxes = yolo_decode(box_logits, anchors, strides)  # (B, N, 4) pixels
        if guide is None:
            ref_scores, ref_boxes = cls_logits.detach().sigmoid(), pred_boxes.detach()
        else:  # lead-guided: another head's predictions choose the targets
            ref_scores = guide["cls"].detach().sigmoid()
            ref_boxes = yolo_decode(guide["box"].detach(), anchors, strides)
        if self.assigner == "tal":
            gt_index, t_hat, _ = batched_task_aligned_assign(
                ref_scores,
                ref_boxes,
                anchors,
                gt_boxes,
                gt_labels,
                gt_mask,
                **self.assign_kw,
            )
        else:
            gt_index, t_hat = self.assign_per_image(
                ref_scores, ref_boxes, anchors, strides,
                gt_boxes, gt_labels, gt_mask,
            )  # fmt: skip
        fg = gt_index >= 0  # (B, N)
        idx = gt_index.clamp(min=0)
        tgt_labels = gt_labels.gather(1, idx)  # (B, N)
        one_hot = F.one_hot(tgt_labels, c).to(cls_logits.dtype)
        if self.label_smoothing:
            one_hot = one_hot * (1 - self.label_smoothing) + self.label_smoothing / 2
        cls_target = one_hot * (t_hat * fg)[..., None]
        norm = t_hat.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, cls_target, reduction="sum")
        loss_cls = loss_cls / norm
        if fg.any():
            tgt_boxes = gt_boxes.gather(1, idx[..., None].expand(b, n, 4))[fg]  # (P, 4)
            weight = t_hat[fg]  # (P,)
            box_l = iou_loss(pred_boxes[fg], tgt_boxes, self.box_kind, reduction="none")
            loss_box = (box_l * weight).sum() / norm
            anc, strd = anchors.expand(b, n, 2)[fg], strides.expand(b, n, 1)[fg]
            ltrb = encode_ltrb(tgt_boxes, anc, strd, self.reg_max)  # (P, 4) bins
            logits = box_logits[fg].reshape(-1, 4, self.reg_max)  # (P, 4, R)
            dfl = distribution_focal_loss(logits, ltrb, reduction="none").mean(-1)
            loss_dfl = (dfl * weight).sum() / norm
        else:  # keep the graph connected so backward works on object-free batches
            loss_box = loss_dfl = box_logits.sum() * 0.0
        gb, gc, gd = self.gains
        parts = {"box": gb * loss_box, "cls": gc * loss_cls, "dfl": gd * loss_dfl}
        total = parts["box"] + parts["cls"] + parts["dfl"]
        items = {k: float(v.detach()) for k, v in parts.items()}
        if return_assignment:
            return total, items, gt_index
        return total, items

    def assign_per_image(
        self,
        scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchors: torch.Tensor,
        strides: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SimOTA or ATSS, one image at a time (both are single-image assigners): scores
        (B, N, C) probabilities, pred_boxes (B, N, 4), anchors (N, 2) and strides (N, 1) ->
        gt_index (B, N) (-1 background) and t_hat (B, N) = IoU(pred box, its gt), 0 elsewhere."""
        b, n = scores.shape[:2]
        gt_index = torch.full((b, n), -1, dtype=torch.int64, device=scores.device)
        if self.assigner == "atss":
            half = strides * (ATSS_ANCHOR_SCALE / 2)  # (N, 1)
            cell_boxes = torch.cat([anchors - half, anchors + half], 1)  # (N, 4)
            per_level = torch.unique_consecutive(strides[:, 0], return_counts=True)[1].tolist()
        for i in range(b):  # assignment is per image; the loss itself stays batched
            gts, labels = gt_boxes[i][gt_mask[i]], gt_labels[i][gt_mask[i]]
            if self.assigner == "simota":
                res = simota_assign(scores[i], pred_boxes[i], anchors, gts, labels,
                                    strides=strides[:, 0], **self.simota_kw)  # fmt: skip
            else:
                res = atss_assign(cell_boxes, per_level, gts, gt_labels=labels)
            gt_index[i] = torch.where(res.gt_index >= 0, res.gt_index, -1)
        fg = gt_index >= 0
        matched = gt_boxes.gather(1, gt_index.clamp(min=0)[..., None].expand(b, n, 4))
        t_hat = elementwise_iou(pred_boxes, matched).clamp(min=0) * fg  # (B, N)
        return gt_index, t_hat
