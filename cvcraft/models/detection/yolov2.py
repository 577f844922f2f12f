"""YOLOv2 (Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger"), the detection network.

Part by part:

- **Trunk**: Darknet-19 (``models.classification.darknet19``) without its classifier; its
  stride-16 map (the last 3x3 conv before the fifth max-pool, 512 channels) and its stride-32
  output (1024).
- **Head**: two 3x3 convs (1024) on the stride-32 map; the **passthrough layer** takes the
  stride-16 map through a 1x1 conv (64) and a reorg (space-to-depth: each 2x2 block of
  pixels into channels, 64 -> 256 at stride 32, ``nn.focus.space_to_depth``) and
  concatenates it, so the coarse 13x13 grid sees fine detail; a 3x3 conv (1024) and a 1x1
  prediction for 5 anchors x (5 + C).
- **Anchors**: 5 shapes from k-means with the ``1 - IoU`` distance on the training boxes
  (the paper's COCO ones by default, 0.57 x 0.68 ... 9.77 x 9.17 cells at stride 32);
  ``autoanchor=true`` refits them (``ops.anchors.kmeans_anchors``) at the start of training.
- **Box coding** ("direct location prediction"): centre ``(sigmoid(t_xy) + c) 32``, size
  ``p exp(t_wh)``: the centre is bound to its cell, which made training stable (``v2`` in
  ``yolo_grid_coder``).
- **Loss**: each gt goes to the best-shaped of the 5 anchors at its centre cell; coordinates
  by squared error on (sigmoid(t_xy), t_wh) weighted by ``2 - w h``; objectness toward the
  IoU of the predicted box (Darknet's ``rescore``), no objectness loss for background
  predictions overlapping a gt by more than 0.6; softmax cross-entropy over the classes
  (class probability conditioned on an object).
  Darknet's extra early-training term pulling every prediction toward its anchor shape is
  left out.

``yolov2`` is the paper's network (416 input); ``yolov2_small`` is the same graph at width
0.25 and 320 input for a CPU (not the paper's, different, Tiny YOLO).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.darknet import darknet_conv
from cvcraft.models.classification.darknet19 import Darknet19
from cvcraft.models.detection.yolo_anchor_head import AnchorYOLO
from cvcraft.models.registry import register_model
from cvcraft.nn.focus import space_to_depth

__all__ = ["V2_ANCHORS", "YOLOv2", "yolov2", "yolov2_small"]

# yolov2.cfg (COCO), k-means anchors in stride-32 cells (w, h)
V2_ANCHOR_CELLS = (
    (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434),
    (7.88282, 3.52778), (9.77052, 9.16828),
)  # fmt: skip
V2_ANCHORS = tuple((w * 32, h * 32) for w, h in V2_ANCHOR_CELLS)  # pixels
STRIDE = 32


class YOLOv2(AnchorYOLO):
    """YOLOv2 (module docstring).

    Args:
        width_mult: scales every conv (1.0 = the paper).
        anchors: 5 (w, h) pixel anchors (default ``V2_ANCHORS``).
        input_size: 416 for the paper.
        ignore_thr: IoU above which a background prediction gets no objectness loss.
        loss_kw: other ``AnchorYoloLoss`` options (gains).

    ``forward`` returns one tensor (B, 5, H/32, W/32, 5 + C).
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_chans: int = 3,
        width_mult: float = 1.0,
        anchors: Sequence[Sequence[float]] | None = None,
        input_size: int = 416,
        ignore_thr: float = 0.6,
        **loss_kw: Any,
    ) -> None:
        super().__init__()
        if "label_smoothing" in loss_kw:
            raise ConfigError(
                "yolov2 classifies with a softmax cross-entropy; label_smoothing is for the "
                "sigmoid YOLO losses (v3-v8)"
            )
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = Darknet19(num_classes=0, in_chans=in_chans, width_mult=width_mult)
        c4 = self.backbone.feature_info[4]["num_chs"]  # stride 16
        c5 = self.backbone.feature_info[5]["num_chs"]  # stride 32

        def ch(c: int) -> int:
            return max(8, round(c * width_mult))

        self.convs5 = nn.Sequential(
            darknet_conv(c5, ch(1024), 3), darknet_conv(ch(1024), ch(1024), 3)
        )
        self.passthrough = darknet_conv(c4, ch(64), 1)
        self.fuse = darknet_conv(ch(1024) + 4 * ch(64), ch(1024), 3)
        self.setup_head(
            (ch(1024),), num_classes, V2_ANCHORS if anchors is None else anchors, (STRIDE,),
            input_size, "v2", softmax=True, match="best", box_loss="sse",
            ignore_thr=ignore_thr, **loss_kw,
        )  # fmt: skip

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        c4, c5 = self.backbone.forward_intermediates(images, [4, 5])  # strides 16, 32
        fine = space_to_depth(self.passthrough(c4))  # (B, 4 * 64, H/32, W/32): reorg
        return [self.fuse(torch.cat([fine, self.convs5(c5)], 1))]  # (B, 1024, H/32, W/32)


@register_model()
def yolov2(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv2:
    """YOLOv2 (Darknet-19, passthrough, 5 k-means anchors) at 416 input."""
    return YOLOv2(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model()
def yolov2_small(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv2:
    """YOLOv2 at width 0.25 and 320 input: the same graph, CPU-sized."""
    kw.setdefault("width_mult", 0.25)
    kw.setdefault("input_size", 320)
    return YOLOv2(num_classes=num_classes, in_chans=in_chans, **kw)
