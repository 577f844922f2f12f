"""YOLOv1 (Redmon et al. 2016, "You Only Look Once: Unified, Real-Time Object Detection").

Key idea: detection as one regression. The image is cut into an S x S grid; the cell holding
an object's centre is responsible for it and predicts B boxes ``(x, y, sqrt w, sqrt h, conf)``
plus one set of C class probabilities, so the output is an S x S x (5B + C) tensor. ``x, y``
are the centre's offset inside the cell, ``w, h`` are relative to the image; of the B boxes
of a responsible cell, the one with the highest IoU with the object is its "predictor".

Loss (sum-squared error, summed over the grid, averaged over images):

    lambda_coord * sum_obj [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
    + sum_obj (C - IoU(pred, gt))^2 + lambda_noobj * sum_noobj C^2
    + sum_cells-with-object sum_c (p(c) - p^(c))^2

with lambda_coord = 5, lambda_noobj = 0.5. Predicting sqrt(w), sqrt(h) makes the same pixel
error cost more on a small box than on a big one. At test time a box scores
``conf * p(class)``.

This implementation keeps the paper's head (conv, flatten, fc -> dropout -> fc) but takes any
registered classifier as the backbone (``backbone="resnet18"`` by default, so ImageNet-style
checkpoints and ``load_backbone_state`` apply) and adaptive-pools its last feature map to
S x S, so any input size works; the paper trained a 24-layer Darknet at 448. Outputs are
sigmoid-squashed (x, y, sqrt w, sqrt h, conf in [0, 1]) -- the paper's linear outputs
diverge easily without its ImageNet pre-training -- and class scores are a softmax.

Post-processing is ``cvcraft.ops.nms.multiclass_nms`` (score threshold + class-aware NMS +
max_det), shared by the detectors in this package.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detections, Detector, Target, valid_targets
from cvcraft.models.registry import MODELS, register_model
from cvcraft.ops.boxes import elementwise_iou
from cvcraft.ops.nms import multiclass_nms
from cvcraft.structures import cxcywh_to_xyxy

__all__ = ["YOLOv1", "yolov1", "yolov1_decode", "yolov1_encode"]


def yolov1_encode(
    boxes: torch.Tensor, grid: int, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv1 targets of gt boxes: (K, 4) xyxy pixels -> cell indices (K, 2) as (row, col) and
    (K, 4) ``(x, y, sqrt w, sqrt h)``: in-cell centre offset in [0, 1) and sqrt of the size
    relative to the image."""
    h, w = image_size
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / w * grid  # centre in cell units
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / h * grid
    col = cx.floor().clamp(0, grid - 1)
    row = cy.floor().clamp(0, grid - 1)
    bw = ((boxes[:, 2] - boxes[:, 0]) / w).clamp(min=0)
    bh = ((boxes[:, 3] - boxes[:, 1]) / h).clamp(min=0)
    t = torch.stack([cx - col, cy - row, bw.sqrt(), bh.sqrt()], -1)
    return torch.stack([row, col], -1).long(), t


def yolov1_decode(pred: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes from ``(x, y, sqrt w, sqrt h)`` predictions (N, S, S, B, 4) -> xyxy pixels, same
    leading shape; the inverse of :func:`yolov1_encode` at every cell."""
    grid = pred.shape[1]
    h, w = image_size
    rows = torch.arange(grid, dtype=pred.dtype, device=pred.device).reshape(1, -1, 1, 1)
    cols = torch.arange(grid, dtype=pred.dtype, device=pred.device).reshape(1, 1, -1, 1)
    cx = (pred[..., 0] + cols) / grid * w
    cy = (pred[..., 1] + rows) / grid * h
    return cxcywh_to_xyxy(torch.stack([cx, cy, pred[..., 2] ** 2 * w, pred[..., 3] ** 2 * h], -1))


class YOLOv1(Detector):
    """YOLOv1 detector on any classifier trunk (see the module docstring).

    Args:
        num_classes: C.
        backbone: registered classifier name; must have ``forward_features`` and
            ``num_features`` (ResNets, VGG, Darknet ...). Built with ``num_classes=0``.
        backbone_kw: extra options for the backbone (e.g. ``{"widths": (16, 32, 64, 128)}``).
        grid, boxes_per_cell: S and B (paper: 7 and 2).
        hidden: width of the first fc layer (paper: 4096; 512 here so it trains on CPU).
        head_channels: channels of the conv layer before the fc (paper: 1024).
        lambda_coord, lambda_noobj: the loss weights (paper: 5 and 0.5).
        input_size: side of the square ``default_input_size`` (paper: 448).

    Shapes: (N, 3, H, W) -> backbone (N, F, H/32, W/32) -> pool (N, head_channels, S, S)
    -> fc -> (N, S, S, 5B + C), the last axis ``[B x (x, y, sqrt w, sqrt h, conf), C probs]``.
    """

    def __init__(
        self,
        num_classes: int = 20,
        in_chans: int = 3,
        backbone: str = "resnet18",
        backbone_kw: dict[str, Any] | None = None,
        grid: int = 7,
        boxes_per_cell: int = 2,
        hidden: int = 512,
        head_channels: int = 256,
        dropout: float = 0.5,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        input_size: int = 448,
    ) -> None:
        super().__init__()
        if grid < 1 or boxes_per_cell < 1 or num_classes < 1:
            raise ConfigError(
                f"YOLOv1: grid={grid}, boxes_per_cell={boxes_per_cell} and num_classes="
                f"{num_classes} must all be >= 1"
            )
        self.num_classes = num_classes
        self.grid, self.num_boxes = grid, boxes_per_cell
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.default_input_size = (in_chans, input_size, input_size)
        self.stride = 32  # the trunk's; cells are input/S pixels and need not divide it
        self.backbone = MODELS.get(backbone)(
            num_classes=0, in_chans=in_chans, **(backbone_kw or {})
        )
        if not hasattr(self.backbone, "forward_features"):
            raise ConfigError(f"YOLOv1: backbone {backbone!r} has no forward_features()")
        feat = int(self.backbone.num_features)
        self.neck = nn.Sequential(
            nn.Conv2d(feat, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.LeakyReLU(0.1, inplace=True),
            nn.AdaptiveAvgPool2d(grid),
        )
        self.out_dim = 5 * boxes_per_cell + num_classes
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(head_channels * grid * grid, hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, grid * grid * self.out_dim),
        )

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        """(N, 3, H, W) -> ``{"pred": (N, S, S, 5B + C) raw, "image_size": (H, W)}``."""
        x = self.neck(self.backbone.forward_features(images))  # (N, head_channels, S, S)
        pred = self.head(x).reshape(-1, self.grid, self.grid, self.out_dim)
        return {"pred": pred, "image_size": tuple(images.shape[-2:])}

    def _split(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """raw (N, S, S, 5B + C) -> boxes (N, S, S, B, 4), conf (N, S, S, B) in [0, 1] and
        class logits (N, S, S, C)."""
        b = self.num_boxes
        box = torch.sigmoid(pred[..., : 5 * b]).unflatten(-1, (b, 5))
        return box[..., :4], box[..., 4], pred[..., 5 * b :]

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper's sum-squared loss (module docstring), summed over cells, mean over images."""
        pred = outputs["pred"]
        n, s = pred.shape[0], self.grid
        targets = valid_targets(targets)
        box, conf, cls_logits = self._split(pred)  # (N,S,S,B,4), (N,S,S,B), (N,S,S,C)
        gt = torch.cat([t["boxes"].to(pred) for t in targets])  # (G, 4)
        labels = torch.cat([t["labels"].to(pred.device) for t in targets]).long()
        img = torch.repeat_interleave(
            torch.arange(n, device=pred.device),
            torch.tensor([len(t["boxes"]) for t in targets], device=pred.device),
        )
        cell, t = yolov1_encode(gt, s, outputs["image_size"])  # (G, 2), (G, 4)
        # One object per cell, as in the paper: when several centres share a cell the last
        # written wins consistently for box, class and the responsibility mask.
        owner = torch.full((n, s, s), -1, dtype=torch.long, device=pred.device)
        owner[img, cell[:, 0], cell[:, 1]] = torch.arange(len(gt), device=pred.device)
        keep = owner[img, cell[:, 0], cell[:, 1]] == torch.arange(len(gt), device=pred.device)
        img, cell, t, gt, labels = img[keep], cell[keep], t[keep], gt[keep], labels[keep]

        cell_box = box[img, cell[:, 0], cell[:, 1]]  # (K, B, 4) the responsible cell's boxes
        decoded = yolov1_decode(box, outputs["image_size"])[img, cell[:, 0], cell[:, 1]]
        iou = elementwise_iou(decoded.detach(), gt[:, None, :])  # (K, B)
        best = iou.argmax(1)  # the "predictor" of each object
        k = torch.arange(len(gt), device=pred.device)

        coord = ((cell_box[k, best] - t) ** 2).sum()
        obj_conf = conf[img, cell[:, 0], cell[:, 1], best]  # (K,)
        obj = ((obj_conf - iou[k, best]) ** 2).sum()
        noobj_mask = torch.ones_like(conf, dtype=torch.bool)
        noobj_mask[img, cell[:, 0], cell[:, 1], best] = False
        noobj = (conf[noobj_mask] ** 2).sum()
        probs = F.softmax(cls_logits[img, cell[:, 0], cell[:, 1]], -1)  # (K, C)
        cls = ((probs - F.one_hot(labels, self.num_classes).to(probs)) ** 2).sum()

        parts = {
            "box": self.lambda_coord * coord / n,
            "obj": obj / n,
            "noobj": self.lambda_noobj * noobj / n,
            "cls": cls / n,
        }
        total = sum(parts.values())
        return total, {k_: float(v.detach()) for k_, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> Detections:
        """Score = box confidence x class probability; boxes in input pixels, NMS per class."""
        box, box_conf, cls_logits = self._split(outputs["pred"])
        size = outputs["image_size"]
        boxes = yolov1_decode(box, size).flatten(1, 3)  # (N, S*S*B, 4)
        probs = F.softmax(cls_logits, -1)[:, :, :, None, :]  # (N, S, S, 1, C)
        scores = (box_conf[..., None] * probs).flatten(1, 3)  # (N, S*S*B, C)
        return [multiclass_nms(b, sc, conf, iou, max_det, size) for b, sc in zip(boxes, scores)]


@register_model(
    # the paper: SGD (momentum 0.9) at 1e-3 warming up to 1e-2, weight decay 5e-4
    default_cfg={"optimizer": "sgd", "lr": 1e-3, "weight_decay": 5e-4}
)
def yolov1(num_classes: int = 20, in_chans: int = 3, **kw) -> YOLOv1:
    """YOLOv1 (S=7, B=2) on a ResNet-18 trunk, 448 input; ``backbone=`` picks another trunk."""
    return YOLOv1(num_classes=num_classes, in_chans=in_chans, **kw)
