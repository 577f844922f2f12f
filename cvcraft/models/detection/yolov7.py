"""YOLOv7 (Wang, Bochkovskiy & Liao 2022, "YOLOv7: Trainable bag-of-freebies sets new
state-of-the-art for real-time object detectors"), the P5 model, anchor-free head.

Why it is built this way, part by part:

- **ELAN backbone**: a 4-conv stem (strides 1, 2, 1, 2), then stages of ELAN blocks
  (:mod:`cvcraft.nn.elan`: 1x1 split, chain of four 3x3, every second output concatenated);
  between stages **MP downsampling** (:mod:`cvcraft.nn.mp_downsample`: max-pool branch +
  strided-conv branch, concatenated). ``cardinality=2`` turns every ELAN into E-ELAN.
- **SPPCSPC** (:mod:`cvcraft.nn.sppcspc`) on the stride-32 map, then a PAN whose fusion
  blocks are ELAN-W (all four chain outputs kept), top-down with 1x1 laterals + nearest
  upsampling, bottom-up with MP downsampling.
- **RepConv** before each output: a 3x3 + 1x1 re-parameterisable block (no identity branch,
  SiLU; :class:`cvcraft.nn.repvgg.RepVGGBlock` with ``act="silu", identity=False``), fused to
  one 3x3 conv by :func:`cvcraft.nn.repvgg.reparameterize_model`.
- **Auxiliary head with lead-guided assignment** (training only): a second head on the
  ELAN-W outputs *before* the RepConvs. Both heads' targets are assigned from the **lead**
  head's predictions: fine labels for the lead (SimOTA, centre radius 2.5 strides, dynamic k
  from the top-10 IoUs) and coarse labels for the auxiliary head (radius 5, top-20: more
  positives, so the shallower head learns recall), its loss weighted 0.25.

Simplified against the paper (documented choices): the detection head is the anchor-free
decoupled DFL head of ``yolo.py`` (YOLOv7 predicts 3 anchors per cell with objectness);
the coarse/fine label split is the SimOTA candidate radius and top-k above (YOLOv7 uses 3
vs 5 neighbouring cells of YOLOv5's anchor matching); the implicit-knowledge layers
(ImplicitA/M of IDetect, folded away at deploy) are left out; the auxiliary head is
attached to the P5 model (the paper uses it on the P6 models). Losses are
:class:`YoloLoss`'s (BCE on IoU-aware targets, CIoU, DFL). ``assigner=tal`` swaps SimOTA
for task-aligned assignment (coarse = 2x top-k). The backbone and neck equal the paper's
``yolov7`` layer for layer: with the paper's anchor head (1x1 convs to 3 x 85 outputs) the
fused count is the paper's 36.9M (tested). ``yolov7_n`` (width 0.25) is a CPU size, not an
official variant. Inputs are float 0-1 (N, 3, H, W) with H, W multiples of 32.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.detection.base import Target
from cvcraft.models.detection.yolo import YOLO, _conv, _Head, pop_loss_options
from cvcraft.models.detection.yolo_loss import YoloLoss
from cvcraft.models.detection.yolov6 import check_num_classes, yolo_family_init
from cvcraft.models.registry import register_model
from cvcraft.nn.elan import ELAN
from cvcraft.nn.mp_downsample import MPDownsample
from cvcraft.nn.repvgg import RepVGGBlock
from cvcraft.nn.sppcspc import SPPCSPC

__all__ = ["YOLOv7"]

AUX_WEIGHT = 0.25  # YOLOv7's auxiliary-head loss weight


class _Width:
    """Channel scaling: ``c * width`` rounded up to a multiple of 8."""

    def __init__(self, width: float) -> None:
        self.width = width

    def __call__(self, c: int) -> int:
        return int(math.ceil(c * self.width / 8) * 8)


class ELANBackbone(nn.Module):
    """YOLOv7 backbone: stem, ELAN stages with MP downsampling; returns P3, P4, P5."""

    def __init__(self, ch: _Width, in_chans: int, cardinality: int = 1) -> None:
        super().__init__()
        k = cardinality
        self.stem = nn.Sequential(
            _conv(in_chans, ch(32), 3, 1), _conv(ch(32), ch(64), 3, 2),
            _conv(ch(64), ch(64), 3, 1), _conv(ch(64), ch(128), 3, 2),
        )  # fmt: skip  # /4
        self.stage2 = ELAN(ch(128), ch(256), ch(64), ch(64), cardinality=k)
        self.stage3 = nn.Sequential(
            MPDownsample(ch(256), ch(256)), ELAN(ch(256), ch(512), ch(128), ch(128), cardinality=k)
        )  # /8
        self.stage4 = nn.Sequential(
            MPDownsample(ch(512), ch(512)),
            ELAN(ch(512), ch(1024), ch(256), ch(256), cardinality=k),
        )  # /16
        self.stage5 = nn.Sequential(
            MPDownsample(ch(1024), ch(1024)),
            ELAN(ch(1024), ch(1024), ch(256), ch(256), cardinality=k),
        )  # /32
        self.channels = (ch(512), ch(1024), ch(1024))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return p3, p4, self.stage5(p4)


class YOLOv7Neck(nn.Module):
    """SPPCSPC + ELAN-W PAN + RepConvs. Returns the three lead maps; the pre-RepConv maps
    (the auxiliary head's inputs) are left in ``aux_feats`` during training."""

    def __init__(self, ch: _Width, chans: tuple[int, int, int], cardinality: int = 1) -> None:
        super().__init__()
        c3, c4, c5 = chans
        k = cardinality
        self.sppcspc = SPPCSPC(c5, ch(512))
        self.lat5 = _conv(ch(512), ch(256), 1)
        self.lat4 = _conv(c4, ch(256), 1)
        self.td4 = ELAN(ch(512), ch(256), ch(256), ch(128), step=1, cardinality=k)
        self.lat_t4 = _conv(ch(256), ch(128), 1)
        self.lat3 = _conv(c3, ch(128), 1)
        self.out3 = ELAN(ch(256), ch(128), ch(128), ch(64), step=1, cardinality=k)
        self.down3 = MPDownsample(ch(128), ch(256))
        self.out4 = ELAN(ch(512), ch(256), ch(256), ch(128), step=1, cardinality=k)
        self.down4 = MPDownsample(ch(256), ch(512))
        self.out5 = ELAN(ch(1024), ch(512), ch(512), ch(256), step=1, cardinality=k)
        self.rep = nn.ModuleList(
            RepVGGBlock(ch(c), ch(2 * c), act="silu", identity=False) for c in (128, 256, 512)
        )
        self.aux_channels = (ch(128), ch(256), ch(512))
        self.channels = (ch(256), ch(512), ch(1024))
        self.aux_feats: list[torch.Tensor] | None = None

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        s5 = self.sppcspc(p5)  # (B, 512w, H/32, W/32)
        up = F.interpolate(self.lat5(s5), scale_factor=2.0, mode="nearest")
        t4 = self.td4(torch.cat([self.lat4(p4), up], 1))  # (B, 256w, H/16, W/16)
        up = F.interpolate(self.lat_t4(t4), scale_factor=2.0, mode="nearest")
        o3 = self.out3(torch.cat([self.lat3(p3), up], 1))  # (B, 128w, H/8, W/8)
        o4 = self.out4(torch.cat([self.down3(o3), t4], 1))  # (B, 256w, H/16, W/16)
        o5 = self.out5(torch.cat([self.down4(o4), s5], 1))  # (B, 512w, H/32, W/32)
        # the aux head reads these; kept only while training (no graph held at inference)
        self.aux_feats = [o3, o4, o5] if self.training else None
        return [rep(o) for rep, o in zip(self.rep, (o3, o4, o5))]  # (B, 2x the channels, ...)


class YOLOv7(YOLO):
    """YOLOv7 detector (module docstring); forward adds ``aux_box``/``aux_cls`` in training.

    Args: ``width`` channel multiplier (1.0 = the paper), ``cardinality`` 2 for E-ELAN
    blocks, ``aux`` the auxiliary head (training only; absent from inference and export).
    """

    def __init__(
        self,
        width: float = 1.0,
        num_classes: int = 80,
        in_chans: int = 3,
        reg_max: int = 16,
        cardinality: int = 1,
        aux: bool = True,
        loss_kw: dict[str, Any] | None = None,
    ) -> None:
        if not width > 0:
            raise ConfigError(f"YOLOv7 width must be > 0, got {width}")
        check_num_classes("YOLOv7", num_classes)
        ch = _Width(width)
        backbone = ELANBackbone(ch, in_chans, cardinality)
        neck = YOLOv7Neck(ch, backbone.channels, cardinality)
        head = _Head(neck.channels, num_classes, reg_max)
        loss_kw = {"assigner": "simota", **(loss_kw or {})}
        yolo_family_init(self, backbone, neck, head, num_classes, reg_max, loss_kw)
        self.aux_head: _Head | None = None
        if aux:
            self.aux_head = _Head(neck.aux_channels, num_classes, reg_max)
            self.aux_head.init_bias(self.strides)
            coarse = dict(loss_kw, center_radius=5.0, candidate_topk=20)
            coarse["topk"] = 2 * loss_kw.get("topk", 10)  # TAL's coarse labels
            self.aux_criterion = YoloLoss(num_classes, reg_max, **coarse)

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor]:
        out = super().forward(images, targets)
        aux_feats, self.neck.aux_feats = self.neck.aux_feats, None
        if self.training and self.aux_head is not None and aux_feats is not None:
            out["aux_box"], out["aux_cls"] = self.aux_head(aux_feats)
        return out

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Lead loss on fine labels + 0.25 x aux loss on coarse labels, both assigned from the
        lead head's predictions (lead-guided)."""
        total, items = self.criterion(outputs, targets)
        if "aux_box" in outputs:
            aux = {"box": outputs["aux_box"], "cls": outputs["aux_cls"],
                   "anchors": outputs["anchors"], "strides": outputs["strides"]}  # fmt: skip
            aux_total, _ = self.aux_criterion(aux, targets, guide=outputs)
            total = total + AUX_WEIGHT * aux_total
            items["aux"] = float(AUX_WEIGHT * aux_total.detach())
        return total, items


def _yolov7(num_classes: int, in_chans: int, width: float, **kw: Any) -> YOLOv7:
    return YOLOv7(width, num_classes, in_chans, loss_kw=pop_loss_options(kw), **kw)


@register_model()
def yolov7(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv7:
    """YOLOv7 (P5, width 1.0): the paper's backbone and neck, anchor-free head, aux head."""
    kw.setdefault("width", 1.0)
    return _yolov7(num_classes, in_chans, **kw)


@register_model()
def yolov7_n(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> YOLOv7:
    """YOLOv7 at width 0.25 (``width=`` overrides): the same graph, CPU-sized (not official)."""
    kw.setdefault("width", 0.25)
    return _yolov7(num_classes, in_chans, **kw)
