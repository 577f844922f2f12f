"""YOLOv3 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement").

Key ideas: a Darknet-53 trunk, an FPN-like neck that upsamples the stride-32 features and
concatenates them with stride-16 and stride-8 trunk features, and three anchor-based output
scales. Each scale has 3 anchors (9 in all, from k-means on the training boxes) and predicts
per anchor and cell ``(tx, ty, tw, th, objectness, C class logits)``, decoded by
``cvcraft.ops.YoloGridCoder``: centre = (cell + sigmoid(t_xy)) * stride, size =
anchor * exp(t_wh). Classes are independent sigmoids (multi-label), not a softmax.

Assignment: every gt box goes to the single anchor (over all 9) whose shape fits it best
(wh-IoU, boxes overlaid at a corner) and to the cell holding its centre at that anchor's
scale. Predictions that are not assigned but whose decoded box already overlaps some gt with
IoU > ``ignore_thr`` (0.5) get no objectness loss.

Loss (summed, then averaged over images): sum-squared error on ``(sigmoid(t_xy), t_wh)``
weighted by ``2 - w h / (W H)`` (Darknet's emphasis on small boxes), binary cross-entropy
for objectness over all non-ignored predictions and for each class of the positives.

Anchors: the paper's 9 COCO k-means anchors at 416 px (``COCO_ANCHORS``), scaled to
``input_size``. For another dataset pass ``anchors=kmeans_anchors(wh, k=9).anchors``
(pixels at ``input_size``), from ``cvcraft.ops.kmeans_anchors``.

Variants: ``yolov3`` is the paper's network (Darknet-53, full width); ``yolov3_tiny`` is the
*same* three-scale design at width 0.25 / depth 0.33 and 320 input so it trains on a CPU
-- not the official two-scale YOLOv3-tiny graph. ``backbone="cspdarknet53"`` swaps in CSP
stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from cvcraft.errors import ConfigError
from cvcraft.models.classification.darknet import Darknet, darknet_conv
from cvcraft.models.detection.base import Detections, Detector, Target, valid_targets
from cvcraft.models.registry import register_model
from cvcraft.ops.anchors import wh_iou
from cvcraft.ops.boxes import pairwise_iou
from cvcraft.ops.coders import YoloGridCoder
from cvcraft.ops.nms import multiclass_nms

__all__ = ["COCO_ANCHORS", "YOLOv3", "assign_yolov3", "yolov3", "yolov3_tiny"]

# Redmon & Farhadi (2018), section 2.3: k-means on COCO at 416 x 416, (w, h) in pixels.
COCO_ANCHORS = (
    (10, 13), (16, 30), (33, 23),
    (30, 61), (62, 45), (59, 119),
    (116, 90), (156, 198), (373, 326),
)  # fmt: skip
STRIDES = (8, 16, 32)
BACKBONES = {"darknet53": False, "cspdarknet53": True}


class _ConvSet(nn.Sequential):
    """YOLOv3's five-conv block: 1x1 (h), 3x3 (2h), 1x1, 3x3, 1x1 -> (B, h, H, W)."""

    def __init__(self, in_ch: int, h: int) -> None:
        super().__init__(
            darknet_conv(in_ch, h, 1), darknet_conv(h, 2 * h, 3), darknet_conv(2 * h, h, 1),
            darknet_conv(h, 2 * h, 3), darknet_conv(2 * h, h, 1),
        )  # fmt: skip


def assign_yolov3(
    targets: list[Target],
    anchors: torch.Tensor,
    anchors_per_level: int,
    strides: Sequence[int],
    grid_sizes: Sequence[tuple[int, int]],
) -> list[dict[str, torch.Tensor]]:
    """Best-anchor assignment of all gts of a batch, per level.

    ``anchors`` (L*A, 2) pixels, level-major (level l owns rows ``l*A .. l*A + A - 1``).
    Returns one dict per level with ``img``, ``anchor``, ``gy``, ``gx`` (P,) indices into
    that level's (B, A, H, W) predictions, ``boxes`` (P, 4) xyxy and ``labels`` (P,).
    """
    device = anchors.device
    boxes = torch.cat([t["boxes"].to(device, torch.float32) for t in targets])  # (G, 4)
    labels = torch.cat([t["labels"].to(device) for t in targets]).long()
    img = torch.repeat_interleave(
        torch.arange(len(targets), device=device),
        torch.tensor([len(t["boxes"]) for t in targets], device=device),
    )
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    best = wh_iou(wh, anchors).argmax(1).to(device)  # (G,) over all L*A anchors
    out = []
    for lvl, (stride, (h, w)) in enumerate(zip(strides, grid_sizes)):
        m = best // anchors_per_level == lvl
        centre = (boxes[m, :2] + boxes[m, 2:]) / 2 / stride
        gx = centre[:, 0].floor().long().clamp(0, w - 1)
        gy = centre[:, 1].floor().long().clamp(0, h - 1)
        out.append({
            "img": img[m], "anchor": best[m] % anchors_per_level, "gy": gy, "gx": gx,
            "boxes": boxes[m], "labels": labels[m],
        })  # fmt: skip
    return out


class YOLOv3(Detector):
    """YOLOv3 detector (see the module docstring).

    Args:
        backbone: ``"darknet53"`` or ``"cspdarknet53"``.
        width_mult, depth_mult: scale the trunk and neck (1.0 = the paper).
        anchors: 9 (w, h) pixel anchors at ``input_size`` (any order; sorted by area and
            split small -> stride 8, large -> stride 32). Default: ``COCO_ANCHORS`` scaled.
        input_size: side of ``default_input_size`` (paper: 416).
        ignore_thr: IoU above which an unassigned prediction gets no objectness loss.
        lambda_box, lambda_obj, lambda_cls: loss weights (Darknet uses 1, 1, 1).
        label_smoothing: eps; positives' class targets become 1 - eps/2 and eps/2 (YOLOv5).

    Output of ``forward``: a list of 3 tensors (B, 3, H_l, W_l, 5 + C) for strides 8, 16, 32,
    last axis ``(tx, ty, tw, th, obj, cls...)`` raw.
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_chans: int = 3,
        backbone: str = "darknet53",
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        anchors: Sequence[Sequence[float]] | np.ndarray | None = None,
        input_size: int = 416,
        ignore_thr: float = 0.5,
        lambda_box: float = 1.0,
        lambda_obj: float = 1.0,
        lambda_cls: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(
                f"YOLOv3 backbone must be one of {sorted(BACKBONES)}, got {backbone!r}"
            )
        if anchors is None:
            a = torch.tensor(COCO_ANCHORS, dtype=torch.float32) * (input_size / 416)
        else:
            a = torch.as_tensor(np.asarray(anchors, dtype=np.float32)).reshape(-1, 2)
        if len(a) % len(STRIDES) or (a <= 0).any():
            raise ConfigError(
                "YOLOv3 anchors: need a positive (3k, 2) array of (w, h) pixels, "
                f"got {tuple(a.shape)}"
            )
        a = a[torch.argsort(a.prod(1), stable=True)]
        self.register_buffer("anchors", a)  # (9, 2) pixels, small -> large
        self.num_anchors = len(a) // len(STRIDES)
        self.num_classes = num_classes
        self.strides = STRIDES
        self.stride = STRIDES[-1]
        self.default_input_size = (in_chans, input_size, input_size)
        self.ignore_thr = ignore_thr
        self.lambdas = (lambda_box, lambda_obj, lambda_cls)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"YOLOv3 label_smoothing={label_smoothing} must be in [0, 1)")
        self.label_smoothing = label_smoothing

        self.backbone = Darknet(
            num_classes=0, in_chans=in_chans, width_mult=width_mult, depth_mult=depth_mult,
            csp=BACKBONES[backbone],
        )  # fmt: skip
        c3, c4, c5 = self.backbone.stage_channels[-3:]
        no = self.num_anchors * (5 + num_classes)
        # Top-down path: P5 -> (1x1, upsample, concat C4) -> P4 -> (..., concat C3) -> P3.
        self.set5 = _ConvSet(c5, c5 // 2)
        self.lat5 = darknet_conv(c5 // 2, c4 // 2, 1)
        self.set4 = _ConvSet(c4 + c4 // 2, c4 // 2)
        self.lat4 = darknet_conv(c4 // 2, c3 // 2, 1)
        self.set3 = _ConvSet(c3 + c3 // 2, c3 // 2)
        self.heads = nn.ModuleList(
            nn.Sequential(darknet_conv(c // 2, c, 3), nn.Conv2d(c, no, 1)) for c in (c3, c4, c5)
        )
        self._init_head_bias(input_size)

    @torch.no_grad()
    def _init_head_bias(self, input_size: int) -> None:
        """Prior-probability bias init (RetinaNet / YOLOv5): ~8 objects per image spread over
        each level's cells, and p(class) = 1 / C, so the first losses are not swamped by
        confident background predictions."""
        for head, s in zip(self.heads, self.strides):
            b = head[-1].bias.view(self.num_anchors, -1)  # (A, 5 + C)
            b[:, 4] = float(np.log(8 / (input_size / s) ** 2))
            b[:, 5:] = float(np.log(1 / max(self.num_classes - 0.99, 1)))

    def coders(self) -> list[YoloGridCoder]:
        """One ``YoloGridCoder`` per level (its 3 anchors and stride)."""
        a = self.anchors.view(len(self.strides), self.num_anchors, 2)
        return [YoloGridCoder(a[i], s) for i, s in enumerate(self.strides)]

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, A, H/8, W/8, 5+C), (B, A, H/16, W/16, 5+C), (B, A, H/32, ...)]."""
        c3, c4, c5 = self.backbone.forward_stages(images)[-3:]
        p5 = self.set5(c5)  # (B, c5/2, H/32, W/32)
        up = F.interpolate(self.lat5(p5), size=c4.shape[-2:], mode="nearest")
        p4 = self.set4(torch.cat([up, c4], 1))  # (B, c4/2, H/16, W/16)
        up = F.interpolate(self.lat4(p4), size=c3.shape[-2:], mode="nearest")
        p3 = self.set3(torch.cat([up, c3], 1))  # (B, c3/2, H/8, W/8)
        outs = []
        for head, p in zip(self.heads, (p3, p4, p5)):
            y = head(p)  # (B, A*(5+C), h, w)
            b, _, h, w = y.shape
            outs.append(y.view(b, self.num_anchors, -1, h, w).permute(0, 1, 3, 4, 2))
        return outs

    def loss(
        self, outputs: list[torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Box SSE + objectness BCE + class BCE (module docstring), mean over images."""
        n = outputs[0].shape[0]
        targets = valid_targets(targets)
        img_h, img_w = outputs[0].shape[2] * self.strides[0], outputs[0].shape[3] * self.strides[0]
        grids = [tuple(o.shape[2:4]) for o in outputs]
        assigned = assign_yolov3(targets, self.anchors, self.num_anchors, self.strides, grids)
        gts = [t["boxes"].to(outputs[0]) for t in targets]
        # (B, G_max, 4) gts per image, zero-padded (a zero box has IoU 0 with everything)
        pad = pad_sequence(gts, batch_first=True) if any(len(g) for g in gts) else None
        box_l = obj_l = cls_l = outputs[0].new_zeros(())
        for out, coder, asg in zip(outputs, self.coders(), assigned):
            idx = (asg["img"], asg["anchor"], asg["gy"], asg["gx"])
            obj_t = torch.zeros_like(out[..., 4])
            obj_t[idx] = 1.0
            # Ignore: unassigned predictions already overlapping a gt of their image well.
            weight = torch.ones_like(obj_t)
            if pad is not None:
                pred_boxes = coder.decode(out[..., :4].detach()).view(n, -1, 4)  # (B, AHW, 4)
                best_iou = pairwise_iou(pred_boxes, pad).amax(-1).view_as(obj_t)  # (B, A, H, W)
                weight[best_iou > self.ignore_thr] = 0.0
                weight[idx] = 1.0
            bce = F.binary_cross_entropy_with_logits(out[..., 4], obj_t, reduction="none")
            obj_l = obj_l + (bce * weight).sum()
            if len(asg["img"]) == 0:
                continue
            p = out[idx]  # (P, 5 + C)
            cells = torch.stack([asg["gx"], asg["gy"]], -1)
            t = coder.encode(asg["boxes"], asg["anchor"], cells)  # (P, 4)
            wh = asg["boxes"][:, 2:] - asg["boxes"][:, :2]
            scale = 2.0 - wh.prod(1) / (img_h * img_w)  # (P,)
            err = (torch.sigmoid(p[:, :2]) - torch.sigmoid(t[:, :2])) ** 2
            err = torch.cat([err, (p[:, 2:4] - t[:, 2:]) ** 2], 1)  # (P, 4)
            box_l = box_l + (err.sum(1) * scale).sum()
            cls_t = F.one_hot(asg["labels"], self.num_classes).to(p)
            if self.label_smoothing:
                cls_t = cls_t * (1 - self.label_smoothing) + self.label_smoothing / 2
            cls_l = cls_l + F.binary_cross_entropy_with_logits(p[:, 5:], cls_t, reduction="sum")
        lb, lo, lc = self.lambdas
        parts = {"box": lb * box_l / n, "obj": lo * obj_l / n, "cls": lc * cls_l / n}
        return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self, outputs: list[torch.Tensor], conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> Detections:
        """Decode all levels; score(class) = sigmoid(obj) * sigmoid(cls); NMS per class."""
        size = (outputs[0].shape[2] * self.strides[0], outputs[0].shape[3] * self.strides[0])
        boxes, scores = [], []
        for out, coder in zip(outputs, self.coders()):
            n = out.shape[0]
            boxes.append(coder.decode(out[..., :4]).reshape(n, -1, 4))  # (B, AHW, 4)
            s = torch.sigmoid(out[..., 4:5]) * torch.sigmoid(out[..., 5:])
            scores.append(s.reshape(n, -1, self.num_classes))  # (B, AHW, C)
        boxes_t, scores_t = torch.cat(boxes, 1), torch.cat(scores, 1)
        return [multiclass_nms(b, s, conf, iou, max_det, size) for b, s in zip(boxes_t, scores_t)]


@register_model()
def yolov3(num_classes: int = 80, in_chans: int = 3, **kw) -> YOLOv3:
    """YOLOv3 (Darknet-53, three scales, 9 COCO anchors) at 416 input; 61.9M params at C=80."""
    return YOLOv3(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model()
def yolov3_tiny(num_classes: int = 80, in_chans: int = 3, **kw) -> YOLOv3:
    """YOLOv3 at width 0.25, depth 0.33, 320 input: the same three-scale graph, CPU-sized."""
    kw.setdefault("width_mult", 0.25)
    kw.setdefault("depth_mult", 0.33)
    kw.setdefault("input_size", 320)
    return YOLOv3(num_classes=num_classes, in_chans=in_chans, **kw)
