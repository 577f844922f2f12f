"""The anchor-based YOLO output layer shared by YOLOv2, YOLOv4 and YOLOv5: grid box coding,
the 1x1 prediction convs, and a base detector that owns anchors, loss and post-processing.

Each level predicts per cell and anchor ``(tx, ty, tw, th, obj, C class logits)``, boxes
coded as ``yolo_grid_coder`` says (``param`` v2 / v4 / v5). Scores are ``sigmoid(obj) *
sigmoid(cls)`` (multi-label), or ``sigmoid(obj) * softmax(cls)`` for YOLOv2's softmax
classifier. Anchors are one (L*A, 2) pixel buffer ``anchors`` sorted by
area (level l owns rows l*A..l*A+A-1), so ``autoanchor=true`` refits them in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detections, Detector, Target
from cvcraft.models.detection.yolo_anchor_loss import AnchorYoloLoss
from cvcraft.models.detection.yolo_grid_coder import BOX_PARAMS, cell_grid, grid_boxes
from cvcraft.ops.nms import NMS_METHODS, multiclass_nms, postprocess_method

__all__ = ["AnchorHead", "AnchorYOLO"]


class AnchorHead(nn.Module):
    """Per level a 1x1 conv to ``A (5 + C)`` channels; output per level (B, A, H, W, 5 + C)."""

    def __init__(self, chans: Sequence[int], num_classes: int, num_anchors: int) -> None:
        super().__init__()
        self.no = 5 + num_classes
        self.num_anchors = num_anchors
        self.m = nn.ModuleList(nn.Conv2d(c, num_anchors * self.no, 1) for c in chans)

    @torch.no_grad()
    def init_bias(self, strides: Sequence[int], image_size: int, softmax: bool = False) -> None:
        """YOLOv5's prior bias: about 8 objects per ``image_size``^2 image spread over each
        level's cells, class probability 0.6 / C (uniform for a softmax classifier)."""
        for conv, s in zip(self.m, strides):
            b = conv.bias.view(self.num_anchors, self.no)  # (A, 5 + C)
            b[:, 4] += math.log(8 / (image_size / s) ** 2)
            c = self.no - 5
            b[:, 5:] = 0.0 if softmax else math.log(0.6 / max(c - 0.99, 0.01))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for conv, f in zip(self.m, feats):
            y = conv(f)  # (B, A (5 + C), H, W)
            b, _, h, w = y.shape
            outs.append(y.view(b, self.num_anchors, self.no, h, w).permute(0, 1, 3, 4, 2))
        return outs


class AnchorYOLO(Detector):
    """Base of the anchor-based YOLO detectors: a subclass builds ``self.features(images)``
    (returning one map per stride) and calls ``setup_head``; this class keeps the detector
    contract (forward, loss, postprocess) and the anchors.

    ``forward`` returns a list of L tensors (B, A, H_l, W_l, 5 + C), raw.
    """

    def setup_head(
        self,
        chans: Sequence[int],
        num_classes: int,
        anchors: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
        strides: Sequence[int],
        input_size: int,
        param: str,
        scale_xy: Sequence[float] | None = None,
        softmax: bool = False,
        nms: str | None = None,
        **loss_kw: object,
    ) -> None:
        """Anchors (L*A, 2) pixels (sorted by area here), the 1x1 head, the loss."""
        if param not in BOX_PARAMS:
            raise ConfigError(f"box parameterisation {param!r}; use one of {BOX_PARAMS}")
        if num_classes < 1:
            raise ConfigError(f"{type(self).__name__}: num_classes must be >= 1, got {num_classes}")
        if isinstance(anchors, torch.Tensor):
            a = anchors.detach().float().reshape(-1, 2)
            # values are checked where they exist (a model built on the meta device has none)
            bad = a.device.type != "meta" and bool((a <= 0).any())
        else:
            arr = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
            bad, a = bool((arr <= 0).any()), torch.tensor(arr)
        if len(a) % len(strides) or bad:
            raise ConfigError(
                f"{type(self).__name__} anchors: need a positive ({len(strides)}k, 2) array "
                f"of (w, h) pixels, got {tuple(a.shape)}"
            )
        self.register_buffer("anchors", a[torch.argsort(a.prod(1), stable=True)])
        self.num_anchors = len(a) // len(strides)
        self.num_classes, self.strides, self.stride = num_classes, tuple(strides), max(strides)
        self.param, self.softmax = param, softmax
        self.scale_xy = tuple(scale_xy) if scale_xy else (1.0,) * len(strides)
        if nms is not None and nms not in NMS_METHODS:
            raise ConfigError(f"{type(self).__name__} nms={nms!r}; use one of {NMS_METHODS}")
        self.nms = nms
        self.head = AnchorHead(chans, num_classes, self.num_anchors)
        self.head.init_bias(self.strides, input_size, softmax)
        self.criterion = AnchorYoloLoss(num_classes, param=param, softmax=softmax, **loss_kw)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def level_anchors(self) -> list[torch.Tensor]:
        """Per level its (A, 2) pixel anchors."""
        return list(self.anchors.view(len(self.strides), self.num_anchors, 2))

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> list[torch.Tensor]:
        h, w = images.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ConfigError(
                f"{type(self).__name__} input sides must be multiples of {self.stride}, got "
                f"{h}x{w}; use imgsz={(max(h, w) + self.stride - 1) // self.stride * self.stride}"
            )
        return self.head(self.features(images))

    def decode(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """All levels -> boxes (B, N, 4) xyxy pixels and class scores (B, N, C), N = sum of
        A H W; score = p(obj) p(class)."""
        boxes, scores = [], []
        for out, anc, s, k in zip(outputs, self.level_anchors(), self.strides, self.scale_xy):
            b, a, h, w, _ = out.shape
            cells = cell_grid(h, w, out)  # (H, W, 2)
            bx = grid_boxes(out[..., :4], cells, anc.to(out).view(a, 1, 1, 2), s, self.param, k)
            cls = out[..., 5:].softmax(-1) if self.softmax else out[..., 5:].sigmoid()
            boxes.append(bx.reshape(b, -1, 4))
            scores.append((out[..., 4:5].sigmoid() * cls).reshape(b, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def loss(
        self, outputs: list[torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.criterion(outputs, targets, self.level_anchors(), self.strides, self.scale_xy)

    @torch.no_grad()
    def postprocess(
        self, outputs: list[torch.Tensor], conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> Detections:
        """Decode, score, class-aware NMS per image. The method is the task's ``nms=``; a
        model built with ``nms=`` (YOLOv4: ``diou``) uses its own where the task left greedy."""
        size = (outputs[0].shape[2] * self.strides[0], outputs[0].shape[3] * self.strides[0])
        method = postprocess_method()
        if method == "greedy" and self.nms:
            method = self.nms
        boxes, scores = self.decode(outputs)
        return [
            multiclass_nms(b, s, conf, iou, max_det, size, method=method)
            for b, s in zip(boxes, scores)  # NMS is per image
        ]
