"""YOLOv5 (ultralytics 2020, v6.0 architecture): CSP (C3) backbone, SPPF, PANet, and its
anchor-based head -- plus the anchor-free "v5u" variant under the YOLOv8 head.

Part by part:

- **Stem**: a 6x6 stride-2 conv (v6.0+), or ``stem="focus"``: space-to-depth + 3x3 conv
  (``nn.Focus``, v1-v5), the same receptive field and output shape.
- **Backbone**: strided 3x3 convs between C3 stages (``nn.CSPBlock``: two 1x1 partial paths,
  residual bottlenecks on one, 1x1 fuse) with (3, 6, 9, 3) x depth bottlenecks, then SPPF
  (three chained 5x5 max-pools = SPP(5, 9, 13)).
- **Neck (PANet)**: 1x1 lateral + upsample + concat top-down to stride 8, then strided 3x3 +
  concat bottom-up; C3 blocks without shortcuts.
- **Head** (``yolo_anchor_head``): a 1x1 conv per level to 3 anchors x (5 + C), the ``v5``
  box coding ``xy = (2 sig - 0.5 + c) s``, ``wh = p (2 sig)^2``; anchors (P3 10x13 ...) are
  YOLOv5's COCO k-means anchors at 640, in pixels whatever the input size (as YOLOv5; use
  ``autoanchor=true`` to refit them to a dataset and size).
- **Loss**: ratio matching (``w / p_w`` within 4x) at the gt cell and its two nearest
  neighbours, CIoU box loss, IoU-valued objectness balanced (4, 1, 0.4) over levels, BCE
  classes with optional label smoothing (``yolo_anchor_loss``).

Scales equal ultralytics' yolov5 table (depth, width): n (0.33, 0.25), s (0.33, 0.50),
m (0.67, 0.75); ``yolov5n`` has YOLOv5's 1,872,157 parameters at 80 classes (1,867,405
fused). ``yolov5nu`` /
``yolov5su`` put the same backbone and neck under cvcraft's YOLOv8 head (decoupled,
anchor-free, DFL, task-aligned assignment): ultralytics' ``yolov5n.yaml`` / ``yolov5s.yaml``
in ultralytics 8.x, equal parameter counts. ``convert_ultralytics_v5`` maps an ultralytics
state dict to ours, so their weights load. Inputs float 0-1 (B, 3, H, W), sides multiples of 32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.yolo import YOLO, YoloScale, _Head
from cvcraft.models.detection.yolo_anchor_head import AnchorYOLO
from cvcraft.models.registry import register_model
from cvcraft.nn.blocks import CSPBlock
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.focus import Focus
from cvcraft.nn.pool import SPPF

__all__ = [
    "V5_ANCHORS",
    "V5_SCALES",
    "YOLOv5",
    "YOLOv5Backbone",
    "YOLOv5PAN",
    "convert_ultralytics_v5",
    "yolov5_anchor_free",
]

# YOLOv5's COCO anchors (w, h) pixels at 640, for strides 8, 16, 32
V5_ANCHORS = (
    (10, 13), (16, 30), (33, 23),
    (30, 61), (62, 45), (59, 119),
    (116, 90), (156, 198), (373, 326),
)  # fmt: skip
V5_SCALES: dict[str, YoloScale] = {
    "n": YoloScale(0.33, 0.25, 1024),
    "s": YoloScale(0.33, 0.50, 1024),
    "m": YoloScale(0.67, 0.75, 1024),
}
STRIDES = (8, 16, 32)
STEMS = ("conv6", "focus")


def _conv(c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None) -> ConvBNAct:
    return ConvBNAct(c_in, c_out, k, s, p, act="silu")


def _c3(c_in: int, c_out: int, n: int, shortcut: bool = True) -> CSPBlock:
    return CSPBlock(c_in, c_out, n=n, shortcut=shortcut, act="silu")


class YOLOv5Backbone(nn.Module):
    """Stem + four (strided conv, C3) stages + SPPF: (B, 3, H, W) -> P3, P4, P5 at strides
    8, 16, 32 with (256, 512, 1024) x width channels."""

    def __init__(self, sc: YoloScale, in_chans: int = 3, stem: str = "conv6") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ConfigError(f"YOLOv5 stem={stem!r}; use one of {STEMS}")
        c1, c2, c3, c4, c5 = (sc.ch(c) for c in (64, 128, 256, 512, 1024))
        if stem == "conv6":
            self.stem: nn.Module = _conv(in_chans, c1, 6, 2, 2)  # /2
        else:
            self.stem = Focus(in_chans, c1, 3)  # /2
        self.stage2 = nn.Sequential(_conv(c1, c2, 3, 2), _c3(c2, c2, sc.n(3)))  # /4
        self.stage3 = nn.Sequential(_conv(c2, c3, 3, 2), _c3(c3, c3, sc.n(6)))  # /8
        self.stage4 = nn.Sequential(_conv(c3, c4, 3, 2), _c3(c4, c4, sc.n(9)))  # /16
        self.stage5 = nn.Sequential(
            _conv(c4, c5, 3, 2), _c3(c5, c5, sc.n(3)), SPPF(c5, c5, 5, act="silu")
        )  # /32
        self.channels = (c3, c4, c5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))  # (B, c3, H/8, W/8)
        p4 = self.stage4(p3)  # (B, c4, H/16, W/16)
        return p3, p4, self.stage5(p4)  # ..., (B, c5, H/32, W/32)


class YOLOv5PAN(nn.Module):
    """YOLOv5's PANet: lateral 1x1 convs on the way down (their outputs are reused on the way
    up), C3 (no shortcut) after every concat. P3, P4, P5 -> outputs with the same channels."""

    def __init__(self, sc: YoloScale, chans: tuple[int, int, int]) -> None:
        super().__init__()
        c3, c4, c5 = chans
        n = sc.n(3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lat5 = _conv(c5, c4)  # 1x1
        self.td4 = _c3(2 * c4, c4, n, False)
        self.lat4 = _conv(c4, c3)
        self.td3 = _c3(2 * c3, c3, n, False)  # -> P3 out
        self.down3 = _conv(c3, c3, 3, 2)
        self.bu4 = _c3(2 * c3, c4, n, False)  # -> P4 out
        self.down4 = _conv(c4, c4, 3, 2)
        self.bu5 = _c3(2 * c4, c5, n, False)  # -> P5 out
        self.channels = chans

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        l5 = self.lat5(p5)  # (B, c4, H/32, W/32)
        l4 = self.lat4(self.td4(torch.cat([self.up(l5), p4], 1)))  # (B, c3, H/16, W/16)
        o3 = self.td3(torch.cat([self.up(l4), p3], 1))  # (B, c3, H/8, W/8)
        o4 = self.bu4(torch.cat([self.down3(o3), l4], 1))  # (B, c4, H/16, W/16)
        o5 = self.bu5(torch.cat([self.down4(o4), l5], 1))  # (B, c5, H/32, W/32)
        return [o3, o4, o5]


def _yolo_bn(model: nn.Module) -> None:
    for m in model.modules():  # YOLOv5's BN: small momentum for noisy small-batch statistics
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03


class YOLOv5(AnchorYOLO):
    """YOLOv5 with its anchor-based head (module docstring).

    Args:
        scale: ``n``, ``s`` or ``m``.
        stem: ``conv6`` (6x6 stride-2 conv) or ``focus``.
        anchors: 9 (w, h) pixel anchors (default ``V5_ANCHORS``).
        input_size: the training side the objectness prior and loss gains assume (640).
        loss_kw: ``AnchorYoloLoss`` options (``label_smoothing``, ``anchor_t``, gains).

    ``forward`` returns 3 tensors (B, 3, H/s, W/s, 5 + C) for s = 8, 16, 32.
    """

    def __init__(
        self,
        scale: str = "n",
        num_classes: int = 80,
        in_chans: int = 3,
        stem: str = "conv6",
        anchors: Any = None,
        input_size: int = 640,
        **loss_kw: Any,
    ) -> None:
        super().__init__()
        if scale not in V5_SCALES:
            raise ConfigError(f"YOLOv5 scale {scale!r}; use one of {sorted(V5_SCALES)}")
        sc = V5_SCALES[scale]
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = YOLOv5Backbone(sc, in_chans, stem)
        self.neck = YOLOv5PAN(sc, self.backbone.channels)
        self.setup_head(
            self.backbone.channels, num_classes, V5_ANCHORS if anchors is None else anchors,
            STRIDES, input_size, "v5", match="ratio", box_loss="ciou", **loss_kw,
        )  # fmt: skip
        _yolo_bn(self)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.backbone(images))


def yolov5_anchor_free(
    scale: str, num_classes: int = 80, in_chans: int = 3, stem: str = "conv6", **kw: Any
) -> YOLO:
    """YOLOv5 backbone and neck under the anchor-free YOLOv8 head and loss (ultralytics'
    "v5u"): the ``YOLO`` detector with its backbone, neck and head replaced."""
    if scale not in V5_SCALES:
        raise ConfigError(f"YOLOv5 scale {scale!r}; use one of {sorted(V5_SCALES)}")
    loss_kw = dict(kw.pop("loss_kw", None) or {})
    for k in ("assigner", "label_smoothing"):  # the detect task's keys for the YOLO loss
        if k in kw:
            loss_kw[k] = kw.pop(k)
    model = YOLO("n", num_classes, in_chans, loss_kw=loss_kw, **kw)
    sc = V5_SCALES[scale]
    model.backbone = YOLOv5Backbone(sc, in_chans, stem)
    model.neck = YOLOv5PAN(sc, model.backbone.channels)
    model.head = _Head(model.backbone.channels, num_classes, model.reg_max)
    model.head.init_bias(model.strides)
    _yolo_bn(model)
    return model


# ultralytics' yolov5.yaml layer index -> our module (layers 11, 12, 15, 16, 19, 22 are
# Upsample/Concat and hold no weights); 24 is the head.
ULTRALYTICS_V5_LAYERS = {
    0: "backbone.stem", 1: "backbone.stage2.0", 2: "backbone.stage2.1",
    3: "backbone.stage3.0", 4: "backbone.stage3.1", 5: "backbone.stage4.0",
    6: "backbone.stage4.1", 7: "backbone.stage5.0", 8: "backbone.stage5.1",
    9: "backbone.stage5.2", 10: "neck.lat5", 13: "neck.td4", 14: "neck.lat4", 17: "neck.td3",
    18: "neck.down3", 20: "neck.bu4", 21: "neck.down4", 23: "neck.bu5",
}  # fmt: skip


def convert_ultralytics_v5(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ultralytics ``yolov5{n,s,m}.yaml`` DetectionModel state dict -> our key names
    (``model.<i>.`` -> ``ULTRALYTICS_V5_LAYERS[i]``; their anchor-free Detect's ``cv2`` box
    and ``cv3`` class branches -> ``head.box`` / ``head.cls``; the fixed DFL conv is
    dropped). Load the result into ``yolov5_anchor_free``'s model (``yolov5nu`` ...)."""
    out = {}
    for key, v in state.items():
        parts = key.split(".")
        if parts[0] != "model" or not parts[1].isdigit():
            raise ConfigError(f"convert_ultralytics_v5: unexpected key {key!r}")
        i, rest = int(parts[1]), parts[2:]
        if i in ULTRALYTICS_V5_LAYERS:
            out[".".join([ULTRALYTICS_V5_LAYERS[i], *rest])] = v
        elif rest[0] in ("cv2", "cv3"):
            out[".".join(["head", "box" if rest[0] == "cv2" else "cls", *rest[1:]])] = v
        elif rest[0] not in ("dfl", "stride", "anchors", "strides"):
            raise ConfigError(f"convert_ultralytics_v5: no place for {key!r}")
    return out


@register_model()
def yolov5n(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv5:
    """YOLOv5n (depth 0.33, width 0.25), anchor-based: 1,872,157 params at 80 classes
    (1,867,405 conv-BN fused), as YOLOv5's model summary."""
    return YOLOv5("n", num_classes, in_chans, **kw)


@register_model()
def yolov5s(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv5:
    """YOLOv5s (depth 0.33, width 0.50), anchor-based: 7,235,389 params at 80 classes
    (7,225,885 conv-BN fused)."""
    return YOLOv5("s", num_classes, in_chans, **kw)


@register_model()
def yolov5m(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv5:
    """YOLOv5m (depth 0.67, width 0.75), anchor-based: 21,190,557 params at 80 classes."""
    return YOLOv5("m", num_classes, in_chans, **kw)


@register_model()
def yolov5nu(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLOv5n backbone/neck, YOLOv8 anchor-free head (ultralytics' yolov5nu): 2,654,816
    params at 80 classes."""
    return yolov5_anchor_free("n", num_classes, in_chans, **kw)


@register_model()
def yolov5su(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLO:
    """YOLOv5s backbone/neck, YOLOv8 anchor-free head (ultralytics' yolov5su)."""
    return yolov5_anchor_free("s", num_classes, in_chans, **kw)
