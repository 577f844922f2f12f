"""FCOS with a ResNet + FPN backbone (Tian et al. 2019, "FCOS: Fully Convolutional One-Stage
Object Detection").

Key idea: no anchor boxes. Every feature-map location is a point that, if it falls inside
an object, regresses the distances (l, t, r, b) to that object's four edges; a third branch
predicts "centre-ness" sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)), which is
multiplied into the class score at test time so the low-quality boxes predicted far from an
object's centre rank low.

Pieces (torchvision's ``fcos_resnet50_fpn``, so its weights load and its numbers are ours):

- Backbone: the RetinaNet one (ResNet C3..C5 -> FPN P3..P5, P6/P7 convs), strides 8..128.
- Points: one per location, at (j s, i s) (torchvision's anchor of size s centred there).
- Head: two towers of four (3x3 conv, GroupNorm(32), ReLU); class logits (prior 0.01),
  ReLU'd distances in units of the level's stride, and a centre-ness logit.
- Assignment (``fcos_assign``): a point is a candidate for a gt if it lies inside the box,
  within 1.5 strides of its centre (centre sampling) and the largest of its four distances
  lies in the level's range (4 s, 8 s) (open at the first level's bottom and the last
  level's top); among candidate gts the smallest box wins.
- Loss, each summed over the batch and divided by the number of positives: sigmoid focal loss
  (0.25, 2) on every point, GIoU loss of the positives' boxes, BCE of their centre-ness.
- Inference: score = sqrt(sigmoid(cls) sigmoid(ctr)); per level above ``conf`` (0.2), the
  best 1000, decode, clip; class-aware NMS (0.6); at most 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import iou_loss, sigmoid_focal_loss
from cvcraft.models.detection.base import Detections, Target, imagenet_input_norm, valid_targets
from cvcraft.models.detection.dense import (
    DenseDetector,
    level_topk_nms,
    torchvision_fpn_rules,
    with_bn_counters,
)
from cvcraft.models.detection.retinanet import _CFG, ResNetFPNP3P7
from cvcraft.models.registry import register_model
from cvcraft.models.weights import rename_keys
from cvcraft.ops.anchors import generate_anchors, grid_anchors

__all__ = ["FCOS", "fcos_assign", "fcos_resnet18_fpn", "fcos_resnet50_fpn",
           "from_torchvision_state_dict"]  # fmt: skip


def _tower(ch: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(32, ch), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Class tower -> K logits; box tower -> 4 distances (ReLU) and 1 centre-ness logit."""

    def __init__(self, ch: int, num_classes: int, prior: float = 0.01) -> None:
        super().__init__()
        self.cls_tower, self.reg_tower = _tower(ch), _tower(ch)
        self.cls_logits = nn.Conv2d(ch, num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(ch, 4, 3, padding=1)
        self.bbox_ctrness = nn.Conv2d(ch, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))
        self.num_classes = num_classes

    def forward(
        self, feats: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Levels -> logits (B, N, K), distances (B, N, 4) in strides, centre-ness (B, N)."""
        cls, reg, ctr = [], [], []
        for f in feats:
            c, r = self.cls_tower(f), self.reg_tower(f)
            cls.append(self.cls_logits(c).flatten(2).transpose(1, 2))  # (B, H*W, K)
            reg.append(F.relu(self.bbox_reg(r)).flatten(2).transpose(1, 2))  # (B, H*W, 4)
            ctr.append(self.bbox_ctrness(r).flatten(2).squeeze(1))  # (B, H*W)
        return torch.cat(cls, 1), torch.cat(reg, 1), torch.cat(ctr, 1)


def fcos_assign(
    points: torch.Tensor,
    sizes: torch.Tensor,
    level_counts: Sequence[int],
    gts: torch.Tensor,
    radius: float = 1.5,
) -> torch.Tensor:
    """FCOS targets of one image: points (N, 2), their level's stride ``sizes`` (N,),
    ``level_counts`` points per level, gts (M, 4) -> gt index (N,), -1 for background
    (module doc: inside + centre sampling + scale range, smallest box wins)."""
    n = len(points)
    if len(gts) == 0:
        return torch.full((n,), -1, dtype=torch.int64, device=points.device)
    centres = (gts[:, :2] + gts[:, 2:]) / 2  # (M, 2)
    near = (points[:, None] - centres[None]).abs().amax(-1) < radius * sizes[:, None]  # (N, M)
    x, y = points[:, 0:1], points[:, 1:2]
    dist = torch.stack([x - gts[:, 0], y - gts[:, 1], gts[:, 2] - x, gts[:, 3] - y], -1)
    lo, hi = sizes * 4, sizes * 8
    lo[: level_counts[0]] = 0
    hi[-level_counts[-1] :] = float("inf")
    far = dist.amax(-1)  # (N, M)
    ok = near & (dist.amin(-1) > 0) & (far > lo[:, None]) & (far < hi[:, None])
    area = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
    # the smallest candidate box: max of (1e8 - area) over candidates (first on ties)
    best, idx = (ok.to(torch.float32) * (1e8 - area[None])).max(1)
    return torch.where(best < 1e-5, -1, idx)


class FCOS(DenseDetector):
    """FCOS + FPN P3..P7 (module docstring). ``forward`` returns a dict: ``cls_logits``
    (B, N, K), ``bbox_regression`` (B, N, 4) edge distances in strides, ``bbox_ctrness``
    (B, N), ``anchors`` (N, 4) stride-sized boxes at the points, ``level_sizes``,
    ``image_size``. ``normalize_input``: map the 0-1 input with the ImageNet mean/std first
    (what torchvision's transform does for its weights); False: inputs come normalized."""

    head_names = ("head.cls_logits",)

    def __init__(
        self,
        num_classes: int = 91,
        in_chans: int = 3,
        depth: int = 50,
        backbone_kw: dict[str, Any] | None = None,
        fpn_channels: int = 256,
        center_sampling_radius: float = 1.5,
        topk_candidates: int = 1000,
        input_size: int = 800,
        norm_eval: bool = False,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"FCOS num_classes must be >= 1, got {num_classes}")
        if fpn_channels % 32:
            raise ConfigError(f"FCOS fpn_channels={fpn_channels}: GroupNorm(32) needs a multiple")
        self.num_classes = num_classes
        self.stride = 128
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = ResNetFPNP3P7(depth, in_chans, fpn_channels, **(backbone_kw or {}))
        self.normalize = imagenet_input_norm(normalize_input, in_chans, "FCOS")
        self.base_anchors = [generate_anchors([s], [1.0]) for s in (8, 16, 32, 64, 128)]
        self.head = FCOSHead(fpn_channels, num_classes)
        self.radius, self.topk_candidates = center_sampling_radius, topk_candidates
        self.norm_eval = norm_eval

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = self.backbone(self.normalize(images))  # P3..P7
        cls, reg, ctr = self.head(feats)
        shapes = [tuple(f.shape[-2:]) for f in feats]
        strides = [(size[0] // h, size[1] // w) for h, w in shapes]
        anchors = grid_anchors(shapes, strides, [b.to(feats[0]) for b in self.base_anchors])
        return {"cls_logits": cls, "bbox_regression": reg, "bbox_ctrness": ctr,
                "anchors": torch.cat(anchors), "level_sizes": [len(a) for a in anchors],
                "image_size": size}  # fmt: skip

    @staticmethod
    def decode(dist: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Edge distances in units of the anchor side (..., 4) -> xyxy boxes (..., 4)."""
        ctr = (anchors[..., :2] + anchors[..., 2:]) / 2
        wh = (anchors[..., 2:] - anchors[..., :2]).repeat(*[1] * (anchors.ndim - 1), 2)
        d = dist * wh
        return torch.cat([ctr - d[..., :2], ctr + d[..., 2:]], -1)

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """Focal + GIoU + centre-ness BCE, each summed over the batch / number of positives."""
        targets = valid_targets(targets)
        cls, reg, ctr = outputs["cls_logits"], outputs["bbox_regression"], outputs["bbox_ctrness"]
        anchors = outputs["anchors"]
        if len(targets) != len(cls):
            raise ConfigError(f"FCOS loss got {len(targets)} targets for {len(cls)} images")
        points = (anchors[:, :2] + anchors[:, 2:]) / 2
        sizes = anchors[:, 2] - anchors[:, 0]
        idx, gt_boxes, gt_labels = [], [], []
        for t in targets:  # assignment is per image; the losses are batched
            gts = t["boxes"].to(anchors)
            labels = t["labels"].to(cls.device).long()
            if len(labels) and int(labels.max()) >= self.num_classes:
                raise ConfigError(
                    f"a target label is {int(labels.max())} but FCOS has {self.num_classes} "
                    "classes; set num_classes to the dataset's class count"
                )
            m = fcos_assign(points, sizes.clone(), outputs["level_sizes"], gts, self.radius)
            idx.append(m)
            safe = m.clamp(min=0)
            gt_boxes.append(gts[safe] if len(gts) else anchors.new_zeros(len(m), 4))
            gt_labels.append(labels[safe] if len(gts) else m)
        idx, gt_boxes, gt_labels = torch.stack(idx), torch.stack(gt_boxes), torch.stack(gt_labels)
        fg = idx >= 0  # (B, N)
        n_pos = max(int(fg.sum()), 1)
        target = torch.zeros_like(cls)
        target[fg, gt_labels[fg]] = 1.0
        loss_cls = sigmoid_focal_loss(cls, target, 0.25, 2.0, "sum") / n_pos
        anc = anchors.expand(len(cls), -1, -1)[fg]  # (P, 4)
        boxes = self.decode(reg[fg], anc)
        loss_box = iou_loss(boxes, gt_boxes[fg], "giou", reduction="sum") / n_pos
        # centre-ness target from the gt's edge distances at each positive point
        p = (anc[:, :2] + anc[:, 2:]) / 2
        g = gt_boxes[fg]
        lr = torch.stack([p[:, 0] - g[:, 0], g[:, 2] - p[:, 0]], -1)
        tb = torch.stack([p[:, 1] - g[:, 1], g[:, 3] - p[:, 1]], -1)
        ctr_t = torch.sqrt(lr.amin(-1) / lr.amax(-1) * (tb.amin(-1) / tb.amax(-1)))
        loss_ctr = F.binary_cross_entropy_with_logits(ctr[fg], ctr_t, reduction="sum") / n_pos
        parts = {"cls": loss_cls, "box": loss_box, "ctr": loss_ctr}
        return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.2, iou: float = 0.6, max_det: int = 100
    ) -> Detections:
        """Per level: sqrt(cls * ctr) scores above ``conf``, the best ``topk_candidates``,
        decode, clip; class-aware NMS over the levels (``postprocess_nms``'s method, greedy
        otherwise), the best ``max_det``. Defaults are torchvision's."""
        anchors, split = outputs["anchors"], outputs["level_sizes"]
        return [
            level_topk_nms(
                torch.sqrt(torch.sigmoid(cl) * torch.sigmoid(ct)[:, None]),
                lambda a, d=rg: self.decode(d[a], anchors[a]),
                split,
                outputs["image_size"],
                conf,
                iou,
                max_det,
                self.topk_candidates,
            )
            for cl, rg, ct in zip(
                outputs["cls_logits"], outputs["bbox_regression"], outputs["bbox_ctrness"]
            )
        ]


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``FCOS`` (ResNet-FPN, P6/P7 from P5) state dict to ours; trunk BN
    statistics saved from a ``FrozenBatchNorm2d`` get a zero ``num_batches_tracked``."""
    rules = [
        *torchvision_fpn_rules(),
        (r"^head\.classification_head\.conv\.", "head.cls_tower."),
        (r"^head\.regression_head\.conv\.", "head.reg_tower."),
        (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
        (r"^head\.regression_head\.(bbox_reg|bbox_ctrness)\.", r"head.\1."),
    ]
    return with_bn_counters(rename_keys(sd, rules))


@register_model(
    tv_twin="fcos_resnet50_fpn", tv_converter=from_torchvision_state_dict, default_cfg=_CFG
)
def fcos_resnet50_fpn(num_classes: int = 91, in_chans: int = 3, **kw: Any) -> FCOS:
    """FCOS, ResNet-50-FPN (P3-P7), torchvision's layout and defaults; ``weights=`` takes
    torchvision's state_dict files."""
    return FCOS(num_classes=num_classes, in_chans=in_chans, depth=50, **kw)


@register_model(default_cfg=_CFG)
def fcos_resnet18_fpn(num_classes: int = 91, in_chans: int = 3, **kw: Any) -> FCOS:
    """CPU-sized FCOS: ResNet-18 trunk, 128-channel FPN and head, 512 input."""
    kw.setdefault("fpn_channels", 128)
    kw.setdefault("input_size", 512)
    return FCOS(num_classes=num_classes, in_chans=in_chans, depth=18, **kw)
