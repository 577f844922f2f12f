"""A modern anchor-free YOLO (the YOLOv5-v8 line of ideas) in pico/nano/small/medium widths.

Why it is built this way, part by part:

- **Stem**: a strided 3x3 conv (v6+ replaced v5's Focus slicing; same receptive field, faster).
- **Backbone**: strided convs between C2f stages. C2f (YOLOv8's CSP variant) splits the
  features in two, runs a chain of residual 3x3-3x3 bottlenecks on one half, and concatenates
  *every* intermediate output before a 1x1 fuse, so gradients reach each depth directly.
- **SPPF**: three chained 5x5 max-pools = receptive fields 5, 9, 13 at the cost of one SPP.
- **PAN neck**: top-down (upsample + concat) then bottom-up (strided conv + concat) paths,
  so P3/P4/P5 each see both fine detail and deep semantics.
- **Decoupled head**: separate conv branches for classification and box regression (YOLOX:
  the two tasks want different features). Anchor-free: each cell of strides 8/16/32
  predicts the distances (l, t, r, b) from its centre to the box edges, as a discrete
  distribution over ``reg_max`` bins (DFL, Generalized Focal Loss): the distance is the
  softmax expectation ``sum_i i * softmax(z)_i`` in stride units.
- **Training** (``yolo_loss.py``): task-aligned assignment (TOOD), BCE classification
  against the IoU-aware alignment targets, CIoU box loss and distribution focal loss.

Width/depth multipliers equal ultralytics' YOLOv8 scales, so ``yolo_n/s/m`` have the same
parameter counts as yolov8n/s/m; ``yolo_p`` (width 0.125) is an extra-small variant for CPU
demos. Inputs are float 0-1 (N, 3, H, W) with H, W multiples of 32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Detections, Detector, Target
from cvcraft.models.detection.yolo_coder import make_anchor_points, yolo_decode
from cvcraft.models.detection.yolo_loss import YoloLoss
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.pool import SPPF
from cvcraft.ops.nms import multiclass_nms

__all__ = ["C2f", "SCALES", "YOLO", "YoloScale"]

STRIDES = (8, 16, 32)


def _conv(c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "silu") -> ConvBNAct:
    return ConvBNAct(c_in, c_out, k, s, act=act, norm="batchnorm")


@dataclass(frozen=True)
class YoloScale:
    """Compound scaling: ``depth`` multiplies block repeats, ``width`` channels (capped at
    ``max_channels`` before scaling), exactly as YOLOv8's n/s/m/l/x table."""

    depth: float
    width: float
    max_channels: int

    def ch(self, c: int) -> int:
        """Scaled channel count, rounded up to a multiple of 8 (hardware-friendly)."""
        return int(math.ceil(min(c, self.max_channels) * self.width / 8) * 8)

    def n(self, repeats: int) -> int:
        """Scaled number of block repeats (at least 1)."""
        return max(round(repeats * self.depth), 1) if repeats > 1 else repeats


SCALES: dict[str, YoloScale] = {
    "p": YoloScale(0.33, 0.125, 1024),
    "n": YoloScale(0.33, 0.25, 1024),
    "s": YoloScale(0.33, 0.50, 1024),
    "m": YoloScale(0.67, 0.75, 768),
}


class _Bottleneck(nn.Module):
    """Residual 3x3 -> 3x3 block of C2f: ``x + cv2(cv1(x))`` (no shortcut in the neck)."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = _conv(c, c, 3)
        self.cv2 = _conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with 2 convs and all intermediate maps kept (YOLOv8's "C2f").

    ``cv1`` (1x1) -> split into halves a, b (c = out/2 each); b -> m_1 -> m_2 ... -> m_n;
    ``cv2`` (1x1) fuses cat[a, b, m_1(b), ..., m_n(...)] ((2 + n) c channels) -> out.
    (B, in_ch, H, W) -> (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.c = out_ch // 2
        self.cv1 = _conv(in_ch, 2 * self.c, 1)
        self.m = nn.ModuleList(_Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = _conv((2 + n) * self.c, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = list(self.cv1(x).split(self.c, dim=1))  # [a, b], each (B, c, H, W)
        for m in self.m:
            ys.append(m(ys[-1]))
        return self.cv2(torch.cat(ys, dim=1))


class _Backbone(nn.Module):
    """CSP backbone + SPPF: returns P3, P4, P5 (strides 8, 16, 32)."""

    def __init__(self, sc: YoloScale, in_chans: int) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (sc.ch(c) for c in (64, 128, 256, 512, 1024))
        self.stem = _conv(in_chans, c1, 3, 2)  # /2
        self.stage2 = nn.Sequential(_conv(c1, c2, 3, 2), C2f(c2, c2, sc.n(3), True))  # /4
        self.stage3 = nn.Sequential(_conv(c2, c3, 3, 2), C2f(c3, c3, sc.n(6), True))  # /8
        self.stage4 = nn.Sequential(_conv(c3, c4, 3, 2), C2f(c4, c4, sc.n(6), True))  # /16
        self.stage5 = nn.Sequential(_conv(c4, c5, 3, 2), C2f(c5, c5, sc.n(3), True))  # /32
        self.sppf = SPPF(c5, c5, 5, act="silu")
        self.channels = (c3, c4, c5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        p5 = self.sppf(self.stage5(p4))
        return p3, p4, p5


class _PAN(nn.Module):
    """PANet neck: top-down fusion P5 -> P4 -> P3, then bottom-up P3 -> P4 -> P5."""

    def __init__(self, sc: YoloScale, chans: tuple[int, int, int]) -> None:
        super().__init__()
        c3, c4, c5 = chans
        n = sc.n(3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C2f(c5 + c4, c4, n)  # top-down at stride 16
        self.td3 = C2f(c4 + c3, c3, n)  # top-down at stride 8 -> output P3
        self.down3 = _conv(c3, c3, 3, 2)
        self.bu4 = C2f(c3 + c4, c4, n)  # bottom-up at stride 16 -> output P4
        self.down4 = _conv(c4, c4, 3, 2)
        self.bu5 = C2f(c4 + c5, c5, n)  # bottom-up at stride 32 -> output P5

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat([self.up(p5), p4], 1))
        o3 = self.td3(torch.cat([self.up(t4), p3], 1))
        o4 = self.bu4(torch.cat([self.down3(o3), t4], 1))
        o5 = self.bu5(torch.cat([self.down4(o4), p5], 1))
        return [o3, o4, o5]


class _Head(nn.Module):
    """Decoupled anchor-free head: per level a box branch (-> 4 * reg_max DFL logits) and a
    class branch (-> num_classes logits), each two 3x3 convs and a 1x1 predictor."""

    def __init__(
        self, chans: tuple[int, ...], num_classes: int, reg_max: int, act: str = "silu"
    ) -> None:
        super().__init__()
        c_box = max(16, chans[0] // 4, reg_max * 4)
        c_cls = max(chans[0], min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(
                _conv(c, c_box, act=act),
                _conv(c_box, c_box, act=act),
                nn.Conv2d(c_box, 4 * reg_max, 1),
            )
            for c in chans
        )
        self.cls = nn.ModuleList(
            nn.Sequential(
                _conv(c, c_cls, act=act),
                _conv(c_cls, c_cls, act=act),
                nn.Conv2d(c_cls, num_classes, 1),
            )
            for c in chans
        )
        self.num_classes, self.reg_max = num_classes, reg_max

    def init_bias(self, strides: tuple[int, ...], image_size: int = 640) -> None:
        """Prior-probability bias init: box logits flat (1.0); class logits so that about 5
        objects per 640^2 image are predicted at start (RetinaNet's prior trick), which
        keeps the BCE over thousands of background cells from swamping early training."""
        for box, cls, s in zip(self.box, self.cls, strides):
            nn.init.constant_(box[-1].bias, 1.0)
            prior = 5 / self.num_classes / (image_size / s) ** 2
            nn.init.constant_(cls[-1].bias, math.log(prior))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        box, cls = [], []
        for f, bb, cb in zip(feats, self.box, self.cls):
            box.append(bb(f).flatten(2))  # (B, 4R, H*W)
            cls.append(cb(f).flatten(2))  # (B, C, H*W)
        # (B, N, 4R) and (B, N, C), N = sum of H*W over levels (row-major, P3 first)
        return torch.cat(box, 2).transpose(1, 2), torch.cat(cls, 2).transpose(1, 2)


class YOLO(Detector):
    """Anchor-free YOLO detector (see the module docstring); keeps the ``Detector`` contract.

    ``forward`` returns a dict: ``box`` (B, N, 4 reg_max) DFL logits, ``cls`` (B, N, C)
    class logits, ``anchors`` (N, 2) cell centres in pixels, ``strides`` (N, 1).
    """

    def __init__(
        self,
        scale: str = "n",
        num_classes: int = 80,
        in_chans: int = 3,
        reg_max: int = 16,
        loss_kw: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ConfigError(f"YOLO scale {scale!r} unknown; use one of {sorted(SCALES)}")
        if num_classes < 1:
            raise ConfigError(f"YOLO num_classes must be >= 1, got {num_classes}")
        sc = SCALES[scale]
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, STRIDES
        self.stride = STRIDES[-1]
        self.backbone = _Backbone(sc, in_chans)
        self.neck = _PAN(sc, self.backbone.channels)
        self.head = _Head(self.backbone.channels, num_classes, reg_max)
        self.head.init_bias(STRIDES)
        for m in self.modules():  # YOLOv5-v8 BN: small momentum for noisy small-batch stats
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
        self.criterion = YoloLoss(num_classes, reg_max, **(loss_kw or {}))
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _anchors(self, sizes: list[tuple[int, int]], ref: torch.Tensor):
        key = (tuple(sizes), ref.device, ref.dtype)
        if key not in self._anchor_cache:
            self._anchor_cache = {key: make_anchor_points(sizes, STRIDES, ref.device, ref.dtype)}
        return self._anchor_cache[key]

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ConfigError(
                f"YOLO input sides must be multiples of {self.stride}, got {h}x{w}; "
                f"resize or letterbox-pad the images (e.g. imgsz={(max(h, w) + 31) // 32 * 32})"
            )
        feats = self.neck(self.backbone(images))  # [(B, c3, H/8, W/8), ..., (B, c5, H/32, W/32)]
        box, cls = self.head(feats)
        anchors, strides = self._anchors([tuple(f.shape[-2:]) for f in feats], box)
        return {"box": box, "cls": cls, "anchors": anchors, "strides": strides}

    def decode(self, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (B, N, 4) xyxy pixels and class probabilities (B, N, C), before NMS."""
        boxes = yolo_decode(outputs["box"], outputs["anchors"], outputs["strides"])
        return boxes, outputs["cls"].sigmoid()

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.criterion(outputs, targets)

    @torch.no_grad()
    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        max_candidates: int = 30000,
    ) -> Detections:
        """Threshold every (cell, class) score at ``conf`` (multi-label: a cell may report
        several classes), keep the best ``max_candidates``, class-aware greedy NMS."""
        boxes, scores = self.decode(outputs)
        return [
            multiclass_nms(b, s, conf, iou, max_det, pre_nms_top_k=max_candidates)
            for b, s in zip(boxes, scores)  # one image at a time: NMS is per image
        ]


def pop_loss_options(kw: dict[str, Any]) -> dict[str, Any]:
    """Move the detect task's ``assigner=`` / ``label_smoothing=`` (loss options) and any
    ``loss_kw`` out of a model constructor's keyword arguments into one ``loss_kw`` dict."""
    loss_kw = dict(kw.pop("loss_kw", None) or {})
    for k in ("assigner", "label_smoothing"):
        if k in kw:
            loss_kw[k] = kw.pop(k)
    return loss_kw


def _yolo(scale: str, num_classes: int, in_chans: int, **kw: Any) -> YOLO:
    loss_kw = pop_loss_options(kw)
    return YOLO(scale, num_classes, in_chans, loss_kw=loss_kw, **kw)


@register_model()
def yolo_p(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLO pico (depth 0.33, width 0.125): ~1M params, for CPU demos at small image sizes."""
    return _yolo("p", num_classes, in_chans, **kw)


@register_model()
def yolo_n(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLO nano (depth 0.33, width 0.25): 3.16M params at 80 classes, as yolov8n."""
    return _yolo("n", num_classes, in_chans, **kw)


@register_model()
def yolo_s(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLO small (depth 0.33, width 0.50): 11.2M params at 80 classes, as yolov8s."""
    return _yolo("s", num_classes, in_chans, **kw)


@register_model()
def yolo_m(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLO medium (depth 0.67, width 0.75, max 768 channels): 25.9M params, as yolov8m."""
    return _yolo("m", num_classes, in_chans, **kw)
