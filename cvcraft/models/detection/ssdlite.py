"""SSDLite (Sandler et al. 2018, "MobileNetV2", section 6.2): SSD with depthwise-separable
extra layers and prediction heads on a mobile trunk.

Key idea: SSD's heads and extra layers are most of its cost on a mobile trunk; replacing
every 3x3 conv there with a depthwise 3x3 (+ BN + ReLU6) followed by a 1x1 keeps the
detector's structure at a fraction of the multiply-adds.

Pieces (torchvision's ``ssdlite320_mobilenet_v3_large``):

- Trunk: MobileNetV3-Large with the reduced tail (last stage / 2). The first map is the
  1x1 *expansion* inside the last stride-2 block (C4, 672 ch at /16: tapped before the
  depthwise conv that downsamples), the second the trunk's output (480 ch at /32); four
  extra blocks (1x1 to half width, depthwise 3x3 stride 2, 1x1; BN + ReLU6 each) give /64 ..
  /512 (512, 256, 256, 128 ch). Six maps: 20, 10, 5, 3, 2, 1 at 320.
- Default boxes: scales 0.2 .. 0.95 evenly (+1.0), ratios {2, 3} on every map (6 per cell),
  centres on the feature cells.
- Heads: per map depthwise 3x3 + BN + ReLU6, then a 1x1 conv to A (K + 1) logits / 4 A deltas.
- Loss, matching and post-processing: ``SSD``'s; post-processing defaults 0.001 / 0.55 / 300
  with 300 candidates per class. BatchNorm eps 1e-3, momentum 0.03.

``ssdlite320_mobilenet_v2`` is the paper's own trunk (MobileNetV2; C4 = block 14's expansion,
576 ch, and the 1280-wide last conv); torchvision has no twin for it.
Inputs are 0-1 images, mapped to torchvision's [-1, 1] (mean 0.5, std 0.5) in ``forward``;
``normalize_input=False`` takes already-normalized inputs (``ssd``'s module docstring).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.mobilenetv2 import ConvNormAct, MobileNetV2
from cvcraft.models.classification.mobilenetv3 import MobileNetV3
from cvcraft.models.detection.base import channel_norm
from cvcraft.models.detection.ssd import SSD
from cvcraft.models.registry import register_model
from cvcraft.ops.default_boxes import ssd_scales

__all__ = [
    "SSDLiteTrunk",
    "from_torchvision_state_dict",
    "last_stride2_block",
    "prediction_heads",
    "ssdlite320_mobilenet_v2",
    "ssdlite320_mobilenet_v3_large",
]

_BN_EPS, _BN_MOMENTUM = 1e-3, 0.03


def _extra_block(c_in: int, c_out: int) -> nn.Sequential:
    """1x1 to c_out / 2, depthwise 3x3 stride 2, 1x1 to c_out; each + BN + ReLU6."""
    mid = c_out // 2
    return nn.Sequential(
        ConvNormAct(c_in, mid, 1, eps=_BN_EPS),
        ConvNormAct(mid, mid, 3, 2, groups=mid, eps=_BN_EPS),
        ConvNormAct(mid, c_out, 1, eps=_BN_EPS),
    )


class SSDLiteTrunk(nn.Module):
    """A mobile trunk's ``features`` split inside its last stride-2 block + four extra blocks.

    ``body``: the trunk's layer sequence; ``c4``: index of its last stride-2 block, whose
    first layer (``block[0]`` / ``conv[0]``) is the 1x1 expansion the first map is taken at.
    (B, C, 320, 320) -> six maps 20, 10, 5, 3, 2, 1 (``out_channels``).
    """

    def __init__(self, body: nn.Sequential, c4: int, extra_channels: Sequence[int]) -> None:
        super().__init__()
        inner = self._inner(body[c4])
        if getattr(body[c4], "use_res_connect", False) or len(inner) < 2:
            raise ConfigError(f"SSDLiteTrunk: body[{c4}] must be a stride-2 expanding block")
        self.body, self.c4 = body, c4
        c_c4 = inner[0][0].out_channels
        c_out = next(m.out_channels for m in reversed(list(body[-1].modules()))
                     if isinstance(m, nn.Conv2d))  # fmt: skip
        chans = [c_c4, c_out]
        blocks = []
        for c in extra_channels:
            blocks.append(_extra_block(chans[-1], c))
            chans.append(c)
        self.extras = nn.ModuleList(blocks)
        self.out_channels = chans
        self.min_size = 1  # every stride-2 conv is padded: a map never empties

    @staticmethod
    def _inner(block: nn.Module) -> nn.Sequential:
        return block.block if hasattr(block, "block") else block.conv

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        inner = self._inner(self.body[self.c4])
        x = inner[0](self.body[: self.c4](x))  # C4 expansion, (B, 672, H/16, W/16)
        out = [x]
        x = self.body[self.c4 + 1 :](inner[1:](x))  # (B, 480, H/32, W/32)
        out.append(x)
        for block in self.extras:
            x = block(x)
            out.append(x)
        return out


def last_stride2_block(body: nn.Sequential) -> int:
    """Index of the last block of ``body`` with a stride-2 conv (the C4 block)."""

    def strided(block: nn.Module) -> bool:
        return any(isinstance(m, nn.Conv2d) and m.stride[0] == 2 for m in block.modules())

    return max(i for i, b in enumerate(body) if strided(b))


def prediction_heads(
    in_channels: Sequence[int], num_anchors: Sequence[int], columns: int
) -> nn.ModuleList:
    """Per map: depthwise 3x3 + BN + ReLU6, then a 1x1 conv to ``A_k x columns``."""
    return nn.ModuleList(
        nn.Sequential(ConvNormAct(c, c, 3, groups=c, eps=_BN_EPS), nn.Conv2d(c, a * columns, 1))
        for c, a in zip(in_channels, num_anchors)
    )


def _ssdlite(
    trunk: SSDLiteTrunk, num_classes: int, in_chans: int, normalize_input: bool = True, **kw: Any
) -> SSD:
    if normalize_input:
        kw.setdefault("input_norm", channel_norm(_CFG["mean"], _CFG["std"], in_chans))
    ratios = [[2, 3]] * 6
    anchors = [2 + 2 * len(r) for r in ratios]
    cls = prediction_heads(trunk.out_channels, anchors, num_classes + 1)
    box = prediction_heads(trunk.out_channels, anchors, 4)
    for m in [*trunk.modules(), *cls.modules(), *box.modules()]:  # torchvision's init
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.03)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = _BN_EPS, _BN_MOMENTUM
    defaults = {"conf": 0.001, "iou": 0.55, "max_det": 300, "topk_candidates": 300}
    return SSD(trunk, cls, box, num_classes, ratios, ssd_scales(6, 0.2, 0.95), None,
               input_size=320, in_chans=in_chans, stride=32, **{**defaults, **kw})  # fmt: skip


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``ssdlite320_mobilenet_v3_large`` state dict to ours. Its trunk is
    ``features.0`` (layers 0..c4-1, then the C4 expansion as ``features.0.<c4>``) and
    ``features.1`` (the rest of the C4 block as ``features.1.0.<j>``, j >= 1, then the later
    layers); ours is the trunk's own ``body.<i>``."""
    first = [int(m[1]) for k in sd if (m := re.match(r"^backbone\.features\.0\.(\d+)\.", k))]
    c4 = max(first, default=-1)  # -1: not a torchvision file, trunk keys left as they are
    out = {}
    for key, v in sd.items():
        if m := re.match(r"^backbone\.features\.0\.(\d+)\.(.*)$", key):
            i = int(m[1])
            key = f"backbone.body.{i}.{m[2]}" if i < c4 else f"backbone.body.{c4}.block.0.{m[2]}"
        elif m := re.match(r"^backbone\.features\.1\.0\.(\d+)\.(.*)$", key):
            key = f"backbone.body.{c4}.block.{m[1]}.{m[2]}"  # slicing keeps names
        elif m := re.match(r"^backbone\.features\.1\.(\d+)\.(.*)$", key):
            key = f"backbone.body.{c4 + int(m[1])}.{m[2]}"
        key = re.sub(r"^backbone\.extra\.", "backbone.extras.", key)
        key = re.sub(r"^head\.classification_head\.module_list\.", "cls_head.", key)
        key = re.sub(r"^head\.regression_head\.module_list\.", "box_head.", key)
        out[key] = v
    return out


# torchvision's detection reference for SSDLite: SGD lr 0.15, weight decay 4e-5, 600 epochs;
# inputs scaled to [-1, 1].
_CFG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": (3, 320, 320),
        "optimizer": "sgd", "lr": 0.15, "weight_decay": 4e-5}  # fmt: skip


@register_model(tv_twin="ssdlite320_mobilenet_v3_large", tv_converter=from_torchvision_state_dict,
                default_cfg=_CFG)  # fmt: skip
def ssdlite320_mobilenet_v3_large(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> SSD:
    """SSDLite320 on MobileNetV3-Large (reduced tail), torchvision's layout and defaults:
    3.44M params at K=90 (91 logits); ``weights=`` takes torchvision's state_dict files."""
    width = kw.pop("width_mult", 1.0)
    body = MobileNetV3("large", num_classes=0, in_chans=in_chans, width_mult=width,
                       reduced_tail=True).features  # fmt: skip
    c4 = last_stride2_block(body)
    extra = [max(16, int(c * width)) for c in (512, 256, 256, 128)]
    return _ssdlite(SSDLiteTrunk(body, c4, extra), num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def ssdlite320_mobilenet_v2(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> SSD:
    """SSDLite320 on MobileNetV2 (the paper's), the same extras, heads and boxes as the V3 one."""
    width = kw.pop("width_mult", 1.0)
    body = MobileNetV2(num_classes=0, in_chans=in_chans, width_mult=width).features
    c4 = last_stride2_block(body)
    extra = [max(16, int(c * width)) for c in (512, 256, 256, 128)]
    return _ssdlite(SSDLiteTrunk(body, c4, extra), num_classes, in_chans, **kw)
