"""YOLOv4 (Bochkovskiy, Wang & Liao 2020, "YOLOv4: Optimal Speed and Accuracy of Object
Detection"): CSPDarknet-53 + SPP + PANet + the YOLOv3 head, and its bags of freebies/specials.

Part by part (the released ``yolov4.cfg`` graph):

- **Backbone, CSPDarknet-53** (Mish): a 3x3 stem at 32 channels, then five stages, each a
  3x3 stride-2 conv and a Cross Stage Partial block: two 1x1 convs split the map into a
  cross-stage path and a main path of ``n`` = (1, 2, 8, 8, 4) Darknet residual units, a 1x1
  after the units, concat, 1x1 transition. The first stage keeps full width in both paths
  (units of 32 -> 64), the others halve it. Same layout and parameters as timm's
  ``cspdarknet53`` trunk.
- **Neck** (LeakyReLU 0.1): three convs, SPP (max-pools 5, 9, 13 concatenated with the map),
  three convs on P5; PANet: top-down (1x1 lateral on the trunk map, upsample, concat, five
  convs) to stride 8, then bottom-up (3x3 stride-2, concat, five convs) to stride 32.
- **Head**: a 3x3 conv and a 1x1 prediction per level, 3 anchors each (the paper's COCO
  anchors at 608, scaled to ``input_size``), box coding ``v4`` ("eliminate grid
  sensitivity": centre ``(k sig - (k-1)/2 + c) s``, k = 1.2, 1.1, 1.05).
- **Training**: CIoU box loss; "multiple anchors for a single ground truth" (every anchor of
  shape IoU > 0.213 is a positive); IoU-valued objectness; optional label smoothing
  (``label_smoothing=``); Mosaic is the detect task's ``mosaic=`` (on by default).
- **Scaled-YOLOv4's assignment** (``coding="v5", match="ratio"``, not the default): the
  bounded ``(2 sig)^2`` sizes and centre offsets in (-0.5, 1.5), so the two neighbour cells
  nearest a gt centre are positives too, with every anchor within 4x of its shape (YOLOv4-CSP
  took both from YOLOv5). The paper's recipe gives a gt only its centre cell and the anchors
  of shape IoU > 0.213, several times fewer positives, and learns far slower per step: on 32
  shapes scenes (96 px, 200 steps) it fits map50 0.16 where this one fits 0.82 with the same
  network (BENCHMARKS.md, "YOLOv2 / v4 / v5 recipes"). The ``exp`` size coding alone is not
  the cause: ``coding="v5"`` with the paper's matching fits 0.17.
- **Options**: ``drop_block`` p > 0 puts DropBlock (block 7, clipped to the map) after every
  backbone stage; ``sam=True`` gates every neck output with the point-wise (modified) SAM;
  ``norm="cmbn"`` uses Cross mini-Batch Normalization everywhere, its window
  ``cmbn_window`` = the trainer's gradient accumulation steps (on one device CmBN pools the
  statistics of the accumulated mini-batches, ``nn.cmbn``). Post-processing uses DIoU-NMS
  (the paper's) unless the task's ``nms=`` names another method.

``yolov4`` is the released network (64.36M parameters at 80 classes, 608 input);
``yolov4_small`` is the same graph at width 0.25 / depth 0.33 and 320 input, sized for a CPU
(not the official, different, YOLOv4-tiny graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.darknet import LEAKY, scale_channels
from cvcraft.models.detection.yolo_anchor_head import AnchorYOLO
from cvcraft.models.registry import register_model
from cvcraft.nn.conv import ConvBNAct
from cvcraft.nn.dropblock import DropBlock
from cvcraft.nn.sam import SpatialAttention

__all__ = [
    "V4_ANCHORS",
    "CSPDarknet53",
    "YOLOv4",
    "convert_timm_cspdarknet53",
    "yolov4",
    "yolov4_small",
]

# yolov4.cfg, COCO k-means at 608 x 608, (w, h) pixels for strides 8, 16, 32
V4_ANCHORS = (
    (12, 16), (19, 36), (40, 28),
    (36, 75), (76, 55), (72, 146),
    (142, 110), (192, 243), (459, 401),
)  # fmt: skip
V4_SCALE_XY = (1.2, 1.1, 1.05)
STRIDES = (8, 16, 32)
DEPTHS = (1, 2, 8, 8, 4)
WIDTHS = (64, 128, 256, 512, 1024)
SPP_KERNELS = (5, 9, 13)


class _Conv:
    """Conv factory carrying the norm choice (batchnorm / cmbn) through the network."""

    def __init__(self, norm: str, norm_kw: dict[str, Any]) -> None:
        self.norm, self.norm_kw = norm, norm_kw

    def __call__(
        self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: str = "mish"
    ) -> ConvBNAct:
        act_kw = LEAKY if act == "leaky_relu" else None
        return ConvBNAct(c_in, c_out, k, s, act=act, act_kw=act_kw, norm=self.norm,
                         norm_kw=self.norm_kw)  # fmt: skip


class _Residual(nn.Module):
    """Darknet residual unit ``x + conv3x3(conv1x1(x))`` (1x1 to ``hidden``)."""

    def __init__(self, conv: _Conv, c: int, hidden: int, act: str) -> None:
        super().__init__()
        self.cv1 = conv(c, hidden, 1, act=act)
        self.cv2 = conv(hidden, c, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class _CSPStage(nn.Module):
    """Downsample + CSP: ``fuse(cat[part(x), post(units(main(x)))])``, x = down(input).
    (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""

    def __init__(self, conv: _Conv, c_in: int, c_out: int, n: int, first: bool, act: str) -> None:
        super().__init__()
        h = c_out if first else c_out // 2  # the first stage keeps full width in both paths
        self.down = conv(c_in, c_out, 3, 2, act)
        self.part = conv(c_out, h, 1, act=act)
        self.main = conv(c_out, h, 1, act=act)
        self.units = nn.Sequential(*(_Residual(conv, h, c_out // 2 if first else h, act)
                                     for _ in range(n)))  # fmt: skip
        self.post = conv(h, h, 1, act=act)
        self.fuse = conv(2 * h, c_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.fuse(torch.cat([self.part(x), self.post(self.units(self.main(x)))], 1))


class CSPDarknet53(nn.Module):
    """YOLOv4's backbone (module docstring): (B, 3, H, W) -> C3, C4, C5 at strides 8, 16, 32
    with (256, 512, 1024) x width channels. ``drop_block`` > 0: DropBlock after each stage;
    ``act``: Mish (YOLOv4) or ``leaky_relu`` (slope 0.1, CSPNet's classifier)."""

    def __init__(
        self,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        drop_block: float = 0.0,
        norm: str = "batchnorm",
        norm_kw: dict[str, Any] | None = None,
        act: str = "mish",
    ) -> None:
        super().__init__()
        conv = _Conv(norm, norm_kw or {})
        widths = [scale_channels(w, width_mult) for w in WIDTHS]
        depths = [max(1, round(d * depth_mult)) for d in DEPTHS]
        self.stem = conv(in_chans, widths[0] // 2, 3, act=act)
        stages, c = [], widths[0] // 2
        for i, (n, w) in enumerate(zip(depths, widths)):
            stages.append(_CSPStage(conv, c, w, n, i == 0, act))
            c = w
        self.stages = nn.ModuleList(stages)
        self.drop = DropBlock(drop_block, 7) if drop_block > 0 else nn.Identity()
        self.channels = tuple(widths[-3:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, outs = self.stem(x), []
        for stage in self.stages:
            x = self.drop(stage(x))
            outs.append(x)
        return outs[-3:]


class _FiveConv(nn.Sequential):
    """1x1 (h), 3x3 (2h), 1x1, 3x3, 1x1 -> (B, h, H, W): the PANet fusion block."""

    def __init__(self, conv: _Conv, c_in: int, h: int) -> None:
        a = "leaky_relu"
        super().__init__(
            conv(c_in, h, 1, act=a), conv(h, 2 * h, 3, act=a), conv(2 * h, h, 1, act=a),
            conv(h, 2 * h, 3, act=a), conv(2 * h, h, 1, act=a),
        )  # fmt: skip


class YOLOv4(AnchorYOLO):
    """YOLOv4 (module docstring).

    Args:
        width_mult, depth_mult: scale channels and residual units (1.0 = the paper).
        anchors: 9 (w, h) pixel anchors at ``input_size`` (default ``V4_ANCHORS`` scaled).
        input_size: 608 for the paper.
        drop_block: DropBlock probability in the backbone (0 = off).
        sam: modified SAM on each neck output.
        norm: ``batchnorm`` or ``cmbn``; ``cmbn_window`` its accumulation window.
        nms: the default post-processing NMS (``diou``).
        coding: box coding, ``v4`` (the paper's) or ``v5`` (Scaled-YOLOv4's bounded sizes).
        match: ``iou`` (the paper's), ``ratio`` (Scaled-YOLOv4's; needs ``coding="v5"``, the
            only coding that reaches the neighbour cells) or ``best``.
        loss_kw: ``AnchorYoloLoss`` options (``label_smoothing``, ``iou_t``, gains).

    ``forward`` returns 3 tensors (B, 3, H/s, W/s, 5 + C) for s = 8, 16, 32.
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_chans: int = 3,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        anchors: Sequence[Sequence[float]] | None = None,
        input_size: int = 608,
        drop_block: float = 0.0,
        sam: bool = False,
        norm: str = "batchnorm",
        cmbn_window: int = 4,
        nms: str = "diou",
        coding: str = "v4",
        match: str = "iou",
        **loss_kw: Any,
    ) -> None:
        super().__init__()
        if norm not in ("batchnorm", "cmbn"):
            raise ConfigError(f"YOLOv4 norm={norm!r}; use batchnorm or cmbn")
        if coding not in ("v4", "v5"):
            raise ConfigError(f"YOLOv4 coding={coding!r}; use v4 (the paper's) or v5 (bounded)")
        if match == "ratio" and coding != "v5":
            raise ConfigError(
                "YOLOv4 match=ratio makes neighbour cells positives, which only coding=v5 "
                "reaches (centre offsets -0.5..1.5); set coding=v5 or match=iou"
            )
        norm_kw = {"window": cmbn_window} if norm == "cmbn" else {}
        conv = _Conv(norm, norm_kw)
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = CSPDarknet53(in_chans, width_mult, depth_mult, drop_block, norm, norm_kw)
        c3, c4, c5 = self.backbone.channels
        h3, h4, h5 = c3 // 2, c4 // 2, c5 // 2
        a = "leaky_relu"
        self.spp_pre = nn.Sequential(conv(c5, h5, 1, act=a), conv(h5, c5, 3, act=a),
                                     conv(c5, h5, 1, act=a))  # fmt: skip
        self.spp_post = nn.Sequential(conv(h5 * (1 + len(SPP_KERNELS)), h5, 1, act=a),
                                      conv(h5, c5, 3, act=a), conv(c5, h5, 1, act=a))  # fmt: skip
        self.lat5, self.in4 = conv(h5, h4, 1, act=a), conv(c4, h4, 1, act=a)
        self.td4 = _FiveConv(conv, 2 * h4, h4)
        self.lat4, self.in3 = conv(h4, h3, 1, act=a), conv(c3, h3, 1, act=a)
        self.td3 = _FiveConv(conv, 2 * h3, h3)
        self.down3 = conv(h3, h4, 3, 2, act=a)
        self.bu4 = _FiveConv(conv, 2 * h4, h4)
        self.down4 = conv(h4, h5, 3, 2, act=a)
        self.bu5 = _FiveConv(conv, 2 * h5, h5)
        self.out_convs = nn.ModuleList(conv(h, 2 * h, 3, act=a) for h in (h3, h4, h5))
        self.sam = (
            nn.ModuleList(SpatialAttention(h, norm=norm, norm_kw=norm_kw) for h in (h3, h4, h5))
            if sam
            else None
        )
        if anchors is None:
            anchors = np.asarray(V4_ANCHORS, dtype=np.float32) * (input_size / 608)
        self.setup_head(
            (c3, c4, c5), num_classes, anchors, STRIDES, input_size, coding,
            scale_xy=V4_SCALE_XY, nms=nms, match=match, box_loss="ciou", **loss_kw,
        )  # fmt: skip

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        c3, c4, c5 = self.backbone(images)
        p5 = self.spp_pre(c5)  # (B, h5, H/32, W/32)
        pooled = [F.max_pool2d(p5, k, 1, k // 2) for k in SPP_KERNELS]
        p5 = self.spp_post(torch.cat([*pooled[::-1], p5], 1))  # SPP: (B, 4 h5) -> (B, h5)
        up = F.interpolate(self.lat5(p5), scale_factor=2.0, mode="nearest")
        n4 = self.td4(torch.cat([self.in4(c4), up], 1))  # (B, h4, H/16, W/16)
        up = F.interpolate(self.lat4(n4), scale_factor=2.0, mode="nearest")
        n3 = self.td3(torch.cat([self.in3(c3), up], 1))  # (B, h3, H/8, W/8)
        m4 = self.bu4(torch.cat([self.down3(n3), n4], 1))  # (B, h4, H/16, W/16)
        m5 = self.bu5(torch.cat([self.down4(m4), p5], 1))  # (B, h5, H/32, W/32)
        outs = [n3, m4, m5]
        if self.sam is not None:
            outs = [sam(o) for sam, o in zip(self.sam, outs)]
        return [conv(o) for conv, o in zip(self.out_convs, outs)]  # (B, 2h, ...) per level


def convert_timm_cspdarknet53(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's ``cspdarknet53`` state dict -> ``CSPDarknet53`` keys (e.g. to start YOLOv4's
    backbone from ImageNet weights): timm's one ``conv_exp`` 1x1 to 2h channels, split in
    halves, is our ``part`` (first half) and ``main`` (second); ``conv_transition_b`` is
    ``post``, ``conv_transition`` ``fuse``, ``blocks.j.conv1/2`` ``units.j.cv1/2``. The
    classifier (``head.*``) is dropped."""
    names = {"conv_down": "down", "conv_transition_b": "post", "conv_transition": "fuse",
             "blocks": "units", "conv1": "cv1", "conv2": "cv2"}  # fmt: skip
    out = {}
    for key, v in state.items():
        if key.startswith("head."):
            continue
        if key.startswith("stem.conv1."):
            out["stem." + key[len("stem.conv1.") :]] = v
            continue
        parts = key.split(".")
        if parts[0] != "stages":
            raise ConfigError(f"convert_timm_cspdarknet53: unexpected key {key!r}")
        if parts[2] == "conv_exp":
            rest = ".".join(parts[3:])
            if v.ndim == 0:  # num_batches_tracked: one per BN
                out[f"stages.{parts[1]}.part.{rest}"] = out[f"stages.{parts[1]}.main.{rest}"] = v
                continue
            half = v.shape[0] // 2
            out[f"stages.{parts[1]}.part.{rest}"] = v[:half]
            out[f"stages.{parts[1]}.main.{rest}"] = v[half:]
            continue
        out[".".join(names.get(p, p) if i >= 2 else p for i, p in enumerate(parts))] = v
    return out


@register_model()
def yolov4(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv4:
    """YOLOv4 (CSPDarknet-53, SPP, PANet, 3 scales) at 608 input: 64.36M params at C=80."""
    return YOLOv4(num_classes=num_classes, in_chans=in_chans, **kw)


@register_model()
def yolov4_small(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv4:
    """YOLOv4 at width 0.25, depth 0.33 and 320 input: the same graph, CPU-sized."""
    kw.setdefault("width_mult", 0.25)
    kw.setdefault("depth_mult", 0.33)
    kw.setdefault("input_size", 320)
    return YOLOv4(num_classes=num_classes, in_chans=in_chans, **kw)
