"""One-stage instance segmentation on the anchor-free YOLO (YOLACT's idea, YOLOv8-seg's layout).

Key idea: masks need no second stage. A prototype branch on the finest neck level (P3,
stride 8) upsamples once and predicts ``nm`` prototype masks per image at stride 4; a third
head branch predicts, for every cell, ``nm`` coefficients next to its box and class. A
detection's mask is ``sigmoid(coefs @ protos)`` cropped to its box (``ops.proto_masks``).

Training adds one term to the YOLO loss (``yolo_loss.py``, whose task-aligned assignment is
reused): for every positive cell, per-pixel BCE between its assembled mask logits and its
object's mask averaged down to the prototype grid (4x4 area mean, soft targets), summed
inside the object's box and divided by the box's area in prototype pixels; the mean over
positive cells times ``mask_gain`` (7.5, ultralytics' box gain, which it uses for masks).

Layers equal ultralytics' ``Segment`` head (Proto: 3x3 conv -> 2x2 transposed conv -> 3x3
conv -> 1x1 conv to ``nm``; coefficient branch: two 3x3 convs and a 1x1 conv of width
``max(c3 / 4, nm)``), so ``yolo_seg_n`` has yolov8n-seg's parameter count.

Shapes: ``forward`` adds ``coef`` (B, N, nm) and ``proto`` (B, nm, H/4, W/4) to YOLO's
outputs; targets carry ``masks`` (M_i, H, W) bool at the input size; ``postprocess`` adds
``masks`` (K, H, W) probabilities to each image's detections.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detections, Target
from cvcraft.models.detection.yolo import SCALES, YOLO, _conv, pop_loss_options
from cvcraft.models.registry import register_model
from cvcraft.ops.nms import multiclass_nms
from cvcraft.ops.proto_masks import assemble_masks, box_crop

__all__ = ["Proto", "YOLOSeg", "proto_mask_loss"]

PROTO_STRIDE = 4  # prototypes at stride 8 (P3) upsampled 2x


class Proto(nn.Module):
    """Prototype masks: 3x3 conv -> 2x transposed conv -> 3x3 conv -> 1x1 conv.
    (B, c_in, H/8, W/8) -> (B, nm, H/4, W/4)."""

    def __init__(self, c_in: int, c_mid: int, nm: int) -> None:
        super().__init__()
        self.cv1 = _conv(c_in, c_mid, 3)
        self.up = nn.ConvTranspose2d(c_mid, c_mid, 2, 2)
        self.cv2 = _conv(c_mid, c_mid, 3)
        self.cv3 = _conv(c_mid, nm, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.up(self.cv1(x))))


def proto_mask_loss(
    coef: torch.Tensor,
    proto: torch.Tensor,
    gt_index: torch.Tensor,
    targets: list[Target],
) -> torch.Tensor:
    """Mean over positive cells of the box-normalised BCE of their masks (module docstring).

    ``coef`` (B, N, nm), ``proto`` (B, nm, Hp, Wp), ``gt_index`` (B, N) target index per cell
    (-1 background), targets with ``boxes`` (M_i, 4) input pixels and ``masks`` (M_i, H, W)
    with H = Hp * s, W = Wp * s. Returns a scalar (0, still in the graph, without positives).
    """
    b, nm, hp, wp = proto.shape
    total = proto.sum() * 0.0 + coef.sum() * 0.0
    n_pos = 0
    for i, t in enumerate(targets):  # one matmul per image (prototypes differ per image)
        pos = gt_index[i] >= 0
        if not pos.any():
            continue
        masks = t.get("masks")
        if masks is None:
            raise ConfigError("a YOLO-seg target has no 'masks'; train it with instance masks")
        h, w = masks.shape[-2:]
        if len(masks) != len(t["boxes"]) or h % hp or w % wp or h // hp != w // wp:
            raise ConfigError(
                f"target {i}: masks {tuple(masks.shape)} must be (M, H, W) with M = "
                f"{len(t['boxes'])} boxes and H, W = {hp}, {wp} prototype cells x the stride"
            )
        s = h // hp
        soft = F.avg_pool2d(masks[:, None].to(proto.dtype), s)[:, 0] if s > 1 else masks.float()
        idx = gt_index[i][pos]  # (P,)
        logits = (coef[i][pos] @ proto[i].reshape(nm, hp * wp)).reshape(-1, hp, wp)
        bce = F.binary_cross_entropy_with_logits(logits, soft[idx], reduction="none")
        box = t["boxes"][idx].to(proto.dtype) / s  # (P, 4) in prototype pixels
        area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).clamp(min=1.0)
        total = total + (box_crop(bce, box).sum((1, 2)) / area).sum()
        n_pos += int(pos.sum())
    return total / max(n_pos, 1)


class YOLOSeg(YOLO):
    """The anchor-free YOLO with a prototype-mask branch (see the module docstring).

    ``num_masks`` prototypes (``nm``, 32), ``proto_channels`` the Proto's width (default the
    scale's 256 channels, as YOLOv8-seg), ``mask_gain`` the mask term's weight.
    """

    def __init__(
        self,
        scale: str = "n",
        num_classes: int = 80,
        in_chans: int = 3,
        reg_max: int = 16,
        loss_kw: dict[str, Any] | None = None,
        num_masks: int = 32,
        proto_channels: int | None = None,
        mask_gain: float = 7.5,
    ) -> None:
        super().__init__(scale, num_classes, in_chans, reg_max, loss_kw)
        if num_masks < 1:
            raise ConfigError(f"YOLO-seg num_masks must be >= 1, got {num_masks}")
        chans = self.backbone.channels
        c_proto = proto_channels or SCALES[scale].ch(256)
        self.num_masks, self.mask_gain = num_masks, float(mask_gain)
        self.proto = Proto(chans[0], c_proto, num_masks)
        c4 = max(chans[0] // 4, num_masks)
        self.coef = nn.ModuleList(
            nn.Sequential(_conv(c, c4), _conv(c4, c4), nn.Conv2d(c4, num_masks, 1)) for c in chans
        )
        for m in [*self.proto.modules(), *self.coef.modules()]:
            if isinstance(m, nn.BatchNorm2d):  # the YOLO BN settings (yolo.py)
                m.eps, m.momentum = 1e-3, 0.03

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ConfigError(
                f"YOLO-seg input sides must be multiples of {self.stride}, got {h}x{w}; "
                f"letterbox-pad the images (e.g. imgsz={(max(h, w) + 31) // 32 * 32})"
            )
        feats = self.neck(self.backbone(images))  # P3, P4, P5
        box, cls = self.head(feats)
        coef = torch.cat([c(f).flatten(2) for c, f in zip(self.coef, feats)], 2)  # (B, nm, N)
        anchors, strides = self._anchors([tuple(f.shape[-2:]) for f in feats], box)
        return {
            "box": box,
            "cls": cls,
            "coef": coef.transpose(1, 2),  # (B, N, nm)
            "proto": self.proto(feats[0]),  # (B, nm, H/4, W/4)
            "anchors": anchors,
            "strides": strides,
        }

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """YOLO's box/cls/dfl terms plus ``mask_gain`` x ``proto_mask_loss``."""
        total, items, gt_index = self.criterion(outputs, targets, return_assignment=True)
        mask = self.mask_gain * proto_mask_loss(
            outputs["coef"], outputs["proto"], gt_index, targets
        )
        items["mask"] = float(mask.detach())
        return total + mask, items

    @torch.no_grad()
    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        max_candidates: int = 30000,
    ) -> Detections:
        """YOLO's detections (class-aware NMS over every cell and class above ``conf``), each
        with ``masks`` (K, H, W) probabilities assembled from its cell's coefficients."""
        boxes, scores = self.decode(outputs)
        size = tuple(int(v) * PROTO_STRIDE for v in outputs["proto"].shape[-2:])
        dets = []
        for b, s, c, p in zip(boxes, scores, outputs["coef"], outputs["proto"]):
            d = multiclass_nms(
                b, s, conf, iou, max_det, pre_nms_top_k=max_candidates, return_index=True
            )
            cells = d.pop("index")  # the cell each kept detection came from
            d["masks"] = assemble_masks(c[cells].float(), p.float(), d["boxes"].float(), size)
            dets.append(d)
        return dets


def _yolo_seg(scale: str, num_classes: int, in_chans: int, **kw: Any) -> YOLOSeg:
    loss_kw = pop_loss_options(kw)  # the task's loss options, as for YOLO
    return YOLOSeg(scale, num_classes, in_chans, loss_kw=loss_kw, **kw)


@register_model()
def yolo_seg_p(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOSeg:
    """YOLO-seg pico (width 0.125): for CPU demos at small image sizes."""
    return _yolo_seg("p", num_classes, in_chans, **kw)


@register_model()
def yolo_seg_n(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOSeg:
    """YOLO-seg nano (width 0.25): yolov8n-seg's layout and parameter count."""
    return _yolo_seg("n", num_classes, in_chans, **kw)


@register_model()
def yolo_seg_s(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOSeg:
    """YOLO-seg small (width 0.5): yolov8s-seg's layout and parameter count."""
    return _yolo_seg("s", num_classes, in_chans, **kw)
