"""CenterNet (Zhou, Wang & Krähenbühl 2019, "Objects as Points"), the ResNet variant.

An object is its centre point: a ResNet trunk (stride 32) and three up-convolution stages
(3x3 conv-BN-ReLU, then a 4x4 stride-2 transposed conv-BN-ReLU, widths 256/128/64 scaled by
``width``) give one stride-4 map; three heads (3x3 conv + ReLU + 1x1) predict

- a heatmap per class (B, C, h, w), trained with the penalty-reduced focal loss against
  Gaussian-splatted centres (:mod:`cvcraft.ops.centre_heatmap`, radius from IoU >= 0.7 by
  the reference code's formula, ``radius_rule="exact"`` for the quadratics' true roots);
- the box size (w, h) in heatmap cells (L1, weight 0.1, at the centre cells only);
- the sub-cell offset of the centre lost to the stride (L1, weight 1).

Decoding needs no NMS: 3x3 max-pool peaks of the sigmoid heatmap, top 100, box =
(x + ox -+ w/2, y + oy -+ h/2) * 4. Simplified: the paper's deformable 3x3 convs before each
up-convolution are plain 3x3 convs here (its ResNet-18 ablation without DCN does the same).
Inputs (N, 3, H, W) float 0-1 (the BN after the trunk's first conv absorbs the scale); H, W
multiples of 32. No pretrained weights here: the trunk starts from scratch unless the detect
task's ``backbone_weights=`` gives a classification checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.heatmap_focal import heatmap_focal_loss
from cvcraft.models.detection.base import Detections, Detector, Target, valid_targets
from cvcraft.models.registry import MODELS, register_model
from cvcraft.nn.conv import ConvBNAct
from cvcraft.ops.centre_heatmap import RADIUS_RULES, centre_targets, heatmap_peaks

__all__ = ["CenterNet"]

STRIDE = 4
HEAT_PRIOR_BIAS = -2.19  # sigmoid(-2.19) = 0.1: the paper's heatmap bias init


class _UpStage(nn.Sequential):
    """3x3 conv-BN-ReLU, then 4x4 stride-2 transposed conv-BN-ReLU: (B, c_in, h, w) ->
    (B, c_out, 2h, 2w)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            ConvBNAct(c_in, c_out, 3),
            nn.ConvTranspose2d(c_out, c_out, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


def _head(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_mid, c_out, 1))  # fmt: skip


class CenterNet(Detector):
    """CenterNet detector (module docstring). ``forward`` returns ``heat`` (B, C, h, w)
    logits, ``wh`` (B, 2, h, w) and ``offset`` (B, 2, h, w), h = H / 4."""

    def __init__(
        self,
        num_classes: int = 80,
        in_chans: int = 3,
        depth: int = 18,
        width: float = 1.0,
        backbone_kw: dict[str, Any] | None = None,
        wh_weight: float = 0.1,
        offset_weight: float = 1.0,
        min_overlap: float = 0.7,
        radius_rule: str = "reference",
        max_det: int = 100,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"CenterNet num_classes must be >= 1, got {num_classes}")
        if depth not in (18, 34, 50, 101):
            raise ConfigError(f"CenterNet ResNet depth must be 18, 34, 50 or 101, got {depth}")
        self.num_classes, self.stride, self.max_det = num_classes, 32, max_det
        self.weights, self.min_overlap = (wh_weight, offset_weight), min_overlap
        if radius_rule not in RADIUS_RULES:
            raise ConfigError(f"CenterNet radius_rule {radius_rule!r}; use one of {RADIUS_RULES}")
        self.radius_rule = radius_rule
        self.backbone = MODELS.get(f"resnet{depth}")(
            num_classes=0, in_chans=in_chans, **(backbone_kw or {})
        )
        chans = [self.backbone.feature_info[-1]["num_chs"]]
        chans += [max(8, int(round(c * width))) for c in (256, 128, 64)]
        self.up = nn.Sequential(*(_UpStage(a, b) for a, b in zip(chans, chans[1:])))
        c = chans[-1]
        self.heat = _head(c, c, num_classes)
        self.wh = _head(c, c, 2)
        self.offset = _head(c, c, 2)
        nn.init.constant_(self.heat[-1].bias, HEAT_PRIOR_BIAS)

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ConfigError(f"CenterNet input sides must be multiples of 32, got {h}x{w}")
        f = self.up(self.backbone.forward_features(images))  # (B, 64w, H/4, W/4)
        return {"heat": self.heat(f), "wh": self.wh(f), "offset": self.offset(f)}

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: list[Target]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Focal heatmap loss + 0.1 L1 size + 1.0 L1 offset, both L1 averaged over objects."""
        heat = outputs["heat"]
        b, c, h, w = heat.shape
        if len(targets) != b:
            raise ConfigError(f"CenterNet loss got {len(targets)} targets for {b} images")
        targets = valid_targets(targets)
        maps, img, cells, sizes, offs = [], [], [], [], []
        for i, t in enumerate(targets):  # target drawing is per image; the loss is batched
            labels = t["labels"].to(heat.device)
            if len(labels) and int(labels.max()) >= c:
                raise ConfigError(
                    f"a target label is {int(labels.max())} but CenterNet has {c} classes; "
                    "set num_classes to the dataset's class count"
                )
            hm, cell, wh, off = centre_targets(
                t["boxes"].to(heat.device),
                labels,
                c,
                (h, w),
                STRIDE,
                self.min_overlap,
                self.radius_rule,
            )
            maps.append(hm)
            img.append(torch.full((len(cell),), i, device=heat.device))
            cells.append(cell), sizes.append(wh), offs.append(off)
        target = torch.stack(maps)  # (B, C, h, w)
        loss_heat = heatmap_focal_loss(heat.float(), target)
        idx = torch.cat(img)
        cell = torch.cat(cells)
        n = max(len(idx), 1)
        # (M, 2) predictions at the objects' centre cells
        pred_wh = outputs["wh"].permute(0, 2, 3, 1)[idx, cell[:, 1], cell[:, 0]]
        pred_off = outputs["offset"].permute(0, 2, 3, 1)[idx, cell[:, 1], cell[:, 0]]
        loss_wh = F.l1_loss(pred_wh, torch.cat(sizes), reduction="sum") / n
        loss_off = F.l1_loss(pred_off, torch.cat(offs), reduction="sum") / n
        parts = {"heat": loss_heat, "wh": self.weights[0] * loss_wh,
                 "offset": self.weights[1] * loss_off}  # fmt: skip
        return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
    ) -> Detections:
        """Top-``min(max_det, self.max_det)`` 3x3 peaks above ``conf`` -> boxes in input
        pixels; no NMS (``iou`` is unused: the max-pool is CenterNet's suppression)."""
        heat = outputs["heat"].sigmoid()
        scores, classes, ys, xs = heatmap_peaks(heat, min(max_det, self.max_det))
        bi = torch.arange(len(heat), device=heat.device)[:, None]
        wh = outputs["wh"].permute(0, 2, 3, 1)[bi, ys, xs]  # (B, k, 2)
        off = outputs["offset"].permute(0, 2, 3, 1)[bi, ys, xs]
        cx, cy = xs + off[..., 0], ys + off[..., 1]
        half_w, half_h = wh[..., 0].clamp(min=0) / 2, wh[..., 1].clamp(min=0) / 2
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1) * STRIDE
        out = []
        for s, c, bx in zip(scores, classes, boxes):  # one dict per image
            keep = s > conf
            out.append({"boxes": bx[keep], "scores": s[keep], "labels": c[keep].long()})
        return out


@register_model()
def centernet_resnet18(num_classes: int = 80, in_chans: int = 3, **kw: Any) -> CenterNet:
    """CenterNet, ResNet-18 + 3 up-convolutions (256/128/64), stride-4 output."""
    return CenterNet(num_classes=num_classes, in_chans=in_chans, depth=18, **kw)
