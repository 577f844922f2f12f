"""YOLOv6 (Li et al. 2022, "YOLOv6: A Single-Stage Object Detection Framework for Industrial
Applications"), nano/small/medium, anchor-free.

Why it is built this way, part by part:

- **EfficientRep backbone**: every 3x3 conv is a RepVGG block (3x3 + 1x1 + identity branches
  while training, one 3x3 conv + ReLU after :func:`cvcraft.nn.repvgg.reparameterize_model`),
  so training optimises like a ResNet and inference runs a plain VGG stack that GPUs and
  NPUs love. Stages: a stride-2 RepVGG block then a RepBlock (n RepVGG blocks); SimSPPF
  (SPPF with ReLU) on the last stage.
- **Rep-PAN neck** (YOLOv6 v1/v2 topology): 1x1 reduce, 2x2 transposed-conv upsampling,
  concat and a RepBlock top-down; 3x3 stride-2 conv, concat with the reduced map and a
  RepBlock bottom-up. Outputs P3, P4, P5 at strides 8, 16, 32.
- **Decoupled anchor-free head** and loss: the same DFL head and :class:`YoloLoss` as
  ``yolo.py`` (ReLU here), with **SIoU** as the box loss (YOLOv6's choice for n/s) and
  task-aligned assignment (``assigner=simota|atss`` as options; YOLOv6 itself warms up with
  ATSS for 4 epochs, then TAL).

Compound scaling is the YOLOv8/ultralytics table (``yolo.SCALES``). The topology equals
ultralytics' ``yolov6.yaml`` layer for layer; the differences are *only* that ultralytics
builds each RepVGG position as a plain conv-BN-ReLU and uses SiLU-free ReLU everywhere, so
after re-parameterising ours and fusing both the parameter counts (and, with copied weights,
the outputs) are equal. Not reproduced: YOLOv6 3.0's BiFusion neck, anchor-aided training,
VFL and self-distillation (the class loss is the BCE on IoU-aware targets of ``yolo_loss``).
Inputs are float 0-1 (N, 3, H, W) with H, W multiples of 32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detector
from cvcraft.models.detection.yolo import (
    SCALES,
    STRIDES,
    YOLO,
    YoloScale,
    _conv,
    _Head,
    pop_loss_options,
)
from cvcraft.models.detection.yolo_loss import YoloLoss
from cvcraft.models.registry import register_model
from cvcraft.nn.pool import SimSPPF
from cvcraft.nn.repvgg import RepVGGBlock

__all__ = ["YOLOv6", "check_num_classes", "rep_block", "yolo_family_init"]


def rep_block(c_in: int, c_out: int, n: int) -> nn.Sequential:
    """YOLOv6's RepBlock: ``n`` RepVGG blocks, the first c_in -> c_out, the rest c_out -> c_out."""
    return nn.Sequential(*(RepVGGBlock(c_in if i == 0 else c_out, c_out) for i in range(n)))


class EfficientRep(nn.Module):
    """RepVGG-style backbone: returns P3, P4, P5 (strides 8, 16, 32)."""

    def __init__(self, sc: YoloScale, in_chans: int) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (sc.ch(c) for c in (64, 128, 256, 512, 1024))
        self.stem = RepVGGBlock(in_chans, c1, 2)  # /2
        self.stage2 = nn.Sequential(RepVGGBlock(c1, c2, 2), *rep_block(c2, c2, sc.n(6)))  # /4
        self.stage3 = nn.Sequential(RepVGGBlock(c2, c3, 2), *rep_block(c3, c3, sc.n(12)))  # /8
        self.stage4 = nn.Sequential(RepVGGBlock(c3, c4, 2), *rep_block(c4, c4, sc.n(18)))  # /16
        self.stage5 = nn.Sequential(
            RepVGGBlock(c4, c5, 2), *rep_block(c5, c5, sc.n(6)), SimSPPF(c5, c5, 5)
        )  # /32
        self.channels = (c3, c4, c5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return p3, p4, self.stage5(p4)


class RepPAN(nn.Module):
    """Rep-PAN neck (module docstring). (c3, c4, c5) maps -> [o3, o4, o5]."""

    def __init__(self, sc: YoloScale, chans: tuple[int, int, int]) -> None:
        super().__init__()
        c3, c4, c5 = chans
        n4, n5, n6 = sc.ch(128), sc.ch(256), sc.ch(512)
        n = 1 + sc.n(9)  # a RepBlock's first (channel-changing) conv plus the repeats
        self.reduce5 = _conv(c5, n5, 1, act="relu")
        self.up5 = nn.ConvTranspose2d(n5, n5, 2, 2)
        self.td4 = rep_block(n5 + c4, n5, n)
        self.reduce4 = _conv(n5, n4, 1, act="relu")
        self.up4 = nn.ConvTranspose2d(n4, n4, 2, 2)
        self.out3 = rep_block(n4 + c3, n4, n)
        self.down3 = _conv(n4, n4, 3, 2, act="relu")
        self.out4 = rep_block(2 * n4, n5, n)
        self.down4 = _conv(n5, n5, 3, 2, act="relu")
        self.out5 = rep_block(2 * n5, n6, n)
        self.channels = (n4, n5, n6)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        r5 = self.reduce5(p5)  # (B, n5, H/32, W/32)
        r4 = self.reduce4(self.td4(torch.cat([self.up5(r5), p4], 1)))  # (B, n4, H/16, W/16)
        o3 = self.out3(torch.cat([self.up4(r4), p3], 1))  # (B, n4, H/8, W/8)
        o4 = self.out4(torch.cat([self.down3(o3), r4], 1))  # (B, n5, H/16, W/16)
        o5 = self.out5(torch.cat([self.down4(o4), r5], 1))  # (B, n6, H/32, W/32)
        return [o3, o4, o5]


def check_num_classes(name: str, num_classes: int) -> None:
    """Refuse a class count below 1 before any layer is built."""
    if num_classes < 1:
        raise ConfigError(f"{name} num_classes must be >= 1, got {num_classes}")


def yolo_family_init(
    model: YOLO, backbone: nn.Module, neck: nn.Module, head: _Head, num_classes: int,
    reg_max: int, loss_kw: dict[str, Any],
) -> None:  # fmt: skip
    """Attach the parts and the shared state :class:`YOLO`'s forward/decode/loss expect, for
    YOLO-family detectors that bring their own backbone and neck (YOLOv6, YOLOv7)."""
    Detector.__init__(model)
    model.num_classes, model.reg_max, model.strides = num_classes, reg_max, STRIDES
    model.stride = STRIDES[-1]
    model.backbone, model.neck, model.head = backbone, neck, head
    head.init_bias(STRIDES)
    for m in model.modules():  # YOLO BN: small momentum for noisy small-batch statistics
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model.criterion = YoloLoss(num_classes, reg_max, **loss_kw)
    model._anchor_cache = {}


class YOLOv6(YOLO):
    """YOLOv6 detector; forward / decode / loss / postprocess are :class:`YOLO`'s.

    Call :func:`cvcraft.nn.repvgg.reparameterize_model` after training for the deploy form.
    """

    def __init__(
        self,
        scale: str = "n",
        num_classes: int = 80,
        in_chans: int = 3,
        reg_max: int = 16,
        loss_kw: dict[str, Any] | None = None,
    ) -> None:
        if scale not in SCALES:
            raise ConfigError(f"YOLOv6 scale {scale!r} unknown; use one of {sorted(SCALES)}")
        check_num_classes("YOLOv6", num_classes)
        sc = SCALES[scale]
        backbone = EfficientRep(sc, in_chans)
        neck = RepPAN(sc, backbone.channels)
        head = _Head(neck.channels, num_classes, reg_max, act="relu")
        loss_kw = {"box_kind": "siou", **(loss_kw or {})}
        yolo_family_init(self, backbone, neck, head, num_classes, reg_max, loss_kw)


def _yolov6(scale: str, num_classes: int, in_chans: int, **kw: Any) -> YOLOv6:
    loss_kw = pop_loss_options(kw)
    return YOLOv6(scale, num_classes, in_chans, loss_kw=loss_kw, **kw)


@register_model()
def yolov6_p(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv6:
    """YOLOv6 pico (depth 0.33, width 0.125): a CPU-demo size, not an official variant."""
    return _yolov6("p", num_classes, in_chans, **kw)


@register_model()
def yolov6_n(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv6:
    """YOLOv6 nano (depth 0.33, width 0.25): ultralytics' yolov6n topology, RepVGG blocks."""
    return _yolov6("n", num_classes, in_chans, **kw)


@register_model()
def yolov6_s(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv6:
    """YOLOv6 small (depth 0.33, width 0.50): ultralytics' yolov6s topology, RepVGG blocks."""
    return _yolov6("s", num_classes, in_chans, **kw)


@register_model()
def yolov6_m(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv6:
    """YOLOv6 medium (depth 0.67, width 0.75, max 768 channels): ultralytics' yolov6m topology."""
    return _yolov6("m", num_classes, in_chans, **kw)
