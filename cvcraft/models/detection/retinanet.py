"""RetinaNet with a ResNet + FPN backbone (Lin et al. 2017, "Focal Loss for Dense Object
Detection").

Key idea: a one-stage detector is as accurate as a two-stage one once the loss stops being
swamped by the ~100k easy background anchors. The focal loss ``FL = -alpha_t (1 - p_t)^gamma
log p_t`` (alpha 0.25, gamma 2) scales an anchor's cross-entropy down by how well it is
already classified, and the class logits start at the prior p = 0.01 (bias -log(99)) so the
first steps are not dominated by background.

Pieces:

- Backbone: ResNet C3..C5 -> FPN P3..P5 (``cvcraft.models.necks.FPN``), then P6 = 3x3
  stride-2 conv on P5 and P7 = 3x3 stride-2 conv on ReLU(P6): five levels, strides 8..128.
- Anchors: on each level 3 sizes (x, x 2^(1/3), x 2^(2/3), truncated to integers as
  torchvision does) x ratios (0.5, 1, 2) = 9 per position, x = 32 .. 512 on P3..P7.
- Head, shared over levels: two towers of four 3x3 conv + ReLU (256 ch), then a 3x3 conv to
  A K class logits and one to 4 A deltas (``DeltaCoder((1, 1, 1, 1))``).
- Training: ``max_iou_assign`` at 0.5 / 0.4 (every gt keeps its best anchor; in-between
  anchors ignored); per image the focal loss summed over non-ignored anchors and the L1 loss
  of the positives' deltas, each divided by the number of positives, then averaged over
  images.
- Inference: per level, scores above ``conf``, the best 1000, decode, clip; class-aware NMS
  (0.5) over all levels; at most 300 per image.

Every constant is torchvision's ``retinanet_resnet50_fpn``, so ``from_torchvision_state_dict``
loads its weights and gives its anchors, detections and losses (tests). Class k is logit k
(no background class): torchvision's COCO weights have 91 logits indexed by COCO category
id, so ``num_classes=91`` takes them unchanged. Inputs are already-normalized images of one
size; the task does the resizing torchvision's ``GeneralizedRCNNTransform`` does inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import sigmoid_focal_loss
from cvcraft.models.detection.base import Detections, Target, imagenet_input_norm, valid_targets
from cvcraft.models.detection.dense import (
    DenseDetector,
    level_topk_nms,
    torchvision_fpn_rules,
    with_bn_counters,
)
from cvcraft.models.detection.faster_rcnn import DEPTHS
from cvcraft.models.necks.fpn import FPN
from cvcraft.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, register_model
from cvcraft.models.weights import rename_keys
from cvcraft.ops.anchors import generate_anchors, grid_anchors
from cvcraft.ops.assigners import IGNORE, max_iou_assign
from cvcraft.ops.coders import DeltaCoder

__all__ = [
    "RetinaNet",
    "RetinaNetHead",
    "from_torchvision_state_dict",
    "retinanet_anchor_sizes",
    "retinanet_resnet18_fpn",
    "retinanet_resnet50_fpn",
]


def retinanet_anchor_sizes(base: Sequence[int] = (32, 64, 128, 256, 512)) -> list[list[int]]:
    """Per level (x, int(x 2^(1/3)), int(x 2^(2/3))): three octave scales, truncated like
    torchvision's (32 -> 32, 40, 50)."""
    return [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in base]


class ResNetFPNP3P7(nn.Module):
    """ResNet trunk (``body``) + FPN on layer2..layer4 (P3..P5) + P6/P7 convs."""

    def __init__(self, depth: int, in_chans: int, ch: int, **resnet_kw: Any) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"RetinaNet: ResNet depth must be one of {DEPTHS}, got {depth}")
        self.body = MODELS.get(f"resnet{depth}")(num_classes=0, in_chans=in_chans, **resnet_kw)
        chans = [f["num_chs"] for f in self.body.feature_info[2:5]]  # layer2..layer4
        self.fpn = FPN(chans, ch, extra_pool=False)
        self.p6 = nn.Conv2d(ch, ch, 3, 2, 1)
        self.p7 = nn.Conv2d(ch, ch, 3, 2, 1)
        for m in (self.p6, self.p7):
            nn.init.kaiming_uniform_(m.weight, a=1)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> [P3 .. P7], strides 8 .. 128, each (B, ch, ., .)."""
        p = self.fpn(self.body.forward_intermediates(x, (2, 3, 4)))  # C3..C5 -> P3..P5
        p6 = self.p6(p[-1])
        return [*p, p6, self.p7(F.relu(p6))]


class RetinaNetHead(nn.Module):
    """Class and box towers (4 x conv3x3 + ReLU each), shared by all levels."""

    def __init__(self, ch: int, num_anchors: int, num_classes: int, prior: float = 0.01) -> None:
        super().__init__()
        self.cls_convs = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in range(4))
        self.reg_convs = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in range(4))
        self.cls_logits = nn.Conv2d(ch, num_anchors * num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(ch, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))
        self.num_classes = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels [(B, ch, H_l, W_l)] -> logits (B, N, K), deltas (B, N, 4); anchor order:
        level, then row-major cell, then anchor (``grid_anchors``' order)."""
        logits, deltas = [], []
        for f in feats:
            c, r = f, f
            for cc, rc in zip(self.cls_convs, self.reg_convs):
                c, r = F.relu(cc(c)), F.relu(rc(r))
            b, _, h, w = f.shape
            # (B, A*K, H, W) -> (B, H, W, A, K) -> (B, H*W*A, K)
            logits.append(self.cls_logits(c).view(b, -1, self.num_classes, h, w)
                          .permute(0, 3, 4, 1, 2).reshape(b, -1, self.num_classes))  # fmt: skip
            deltas.append(self.bbox_reg(r).view(b, -1, 4, h, w)
                          .permute(0, 3, 4, 1, 2).reshape(b, -1, 4))  # fmt: skip
        return torch.cat(logits, 1), torch.cat(deltas, 1)


class RetinaNet(DenseDetector):
    """RetinaNet + FPN P3..P7 (module docstring: every stage and its constants).

    Args:
        depth: ResNet depth of the trunk; backbone_kw: extra ``ResNet`` options.
        fpn_channels: FPN and head width (256).
        anchor_sizes: 5 lists of sizes (P3..P7); anchor_ratios: h / w.
        fg_iou, bg_iou: assignment thresholds (0.5 / 0.4); alpha, gamma: focal loss.
        topk_candidates: per-level candidates kept before NMS (1000).
        input_size: side of ``default_input_size``.
        norm_eval: keep the trunk's BatchNorm statistics fixed while training (torchvision's
            FrozenBatchNorm with pretrained trunks; off from scratch).
        normalize_input: map the 0-1 input with the ImageNet mean/std first (what
            torchvision's transform does for its weights); False: inputs come normalized.

    ``forward`` returns a dict: ``cls_logits`` (B, N, K), ``bbox_regression`` (B, N, 4),
    ``anchors`` (N, 4), ``level_sizes`` (anchors per level), ``image_size`` (H, W).
    """

    head_names = ("head.cls_logits",)

    def __init__(
        self,
        num_classes: int = 91,
        in_chans: int = 3,
        depth: int = 50,
        backbone_kw: dict[str, Any] | None = None,
        fpn_channels: int = 256,
        anchor_sizes: Sequence[Sequence[float]] | None = None,
        anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        fg_iou: float = 0.5,
        bg_iou: float = 0.4,
        alpha: float = 0.25,
        gamma: float = 2.0,
        topk_candidates: int = 1000,
        input_size: int = 800,
        norm_eval: bool = False,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        sizes = retinanet_anchor_sizes() if anchor_sizes is None else anchor_sizes
        if len(sizes) != 5:
            raise ConfigError(f"RetinaNet needs 5 anchor size lists (P3..P7), got {sizes}")
        if num_classes < 1:
            raise ConfigError(f"RetinaNet num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.stride = 128  # P7: input sides should be multiples of it for exact level sizes
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = ResNetFPNP3P7(depth, in_chans, fpn_channels, **(backbone_kw or {}))
        self.normalize = imagenet_input_norm(normalize_input, in_chans, "RetinaNet")
        self.base_anchors = [generate_anchors(s, anchor_ratios) for s in sizes]
        self.head = RetinaNetHead(fpn_channels, len(self.base_anchors[0]), num_classes)
        self.coder = DeltaCoder((1.0, 1.0, 1.0, 1.0))
        self.fg_iou, self.bg_iou, self.alpha, self.gamma = fg_iou, bg_iou, alpha, gamma
        self.topk_candidates = topk_candidates
        self.norm_eval = norm_eval

    def anchors(self, feats: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """All anchors (N, 4); a level's stride = image side // feature side (torchvision's)."""
        sizes = [tuple(f.shape[-2:]) for f in feats]
        strides = [(image_size[0] // h, image_size[1] // w) for h, w in sizes]
        return torch.cat(grid_anchors(sizes, strides, [b.to(feats[0]) for b in self.base_anchors]))

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = self.backbone(self.normalize(images))  # P3..P7
        logits, deltas = self.head(feats)
        a = len(self.base_anchors[0])
        return {
            "cls_logits": logits, "bbox_regression": deltas, "anchors": self.anchors(feats, size),
            "level_sizes": [f.shape[-2] * f.shape[-1] * a for f in feats], "image_size": size,
        }  # fmt: skip

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """Focal classification + L1 box loss, each per image / its positives, mean over images."""
        targets = valid_targets(targets)
        logits, deltas = outputs["cls_logits"], outputs["bbox_regression"]  # (B, N, K), (B, N, 4)
        anchors = outputs["anchors"]
        if len(targets) != len(logits):
            raise ConfigError(f"RetinaNet loss got {len(targets)} targets for {len(logits)} images")
        cls_l, box_l = logits.new_zeros(()), logits.new_zeros(())
        for lg, dl, t in zip(logits, deltas, targets):  # assignment is per image
            gt = t["boxes"].to(anchors)
            labels = t["labels"].to(lg.device).long()
            if len(labels) and int(labels.max()) >= self.num_classes:
                raise ConfigError(
                    f"a target label is {int(labels.max())} but RetinaNet has "
                    f"{self.num_classes} classes; set num_classes to the dataset's class count"
                )
            a = max_iou_assign(anchors, gt, self.fg_iou, self.bg_iou, allow_low_quality=True)
            pos = a.pos_mask
            n_pos = max(int(pos.sum()), 1)
            target = torch.zeros_like(lg)  # (N, K)
            target[pos, labels[a.gt_index[pos]]] = 1.0
            valid = a.gt_index != IGNORE
            fl = sigmoid_focal_loss(lg[valid], target[valid], self.alpha, self.gamma, "sum")
            cls_l = cls_l + fl / n_pos
            if pos.any():
                reg_t = self.coder.encode(gt[a.gt_index[pos]], anchors[pos])
                box_l = box_l + F.l1_loss(dl[pos], reg_t, reduction="sum") / n_pos
        n = max(len(targets), 1)
        parts = {"cls": cls_l / n, "box": box_l / n}
        return parts["cls"] + parts["box"], {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.05, iou: float = 0.5, max_det: int = 300
    ) -> Detections:
        """Per level: scores above ``conf``, the best ``topk_candidates``, decode, clip; then
        class-aware NMS over the levels (the method ``postprocess_nms`` selects; greedy
        otherwise) and the best ``max_det``. Defaults are torchvision's."""
        anchors, split = outputs["anchors"], outputs["level_sizes"]
        return [
            level_topk_nms(
                torch.sigmoid(lg),
                lambda a, d=dl: self.coder.decode(d[a], anchors[a]),
                split,
                outputs["image_size"],
                conf,
                iou,
                max_det,
                self.topk_candidates,
            )
            for lg, dl in zip(outputs["cls_logits"], outputs["bbox_regression"])
        ]


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``RetinaNet`` (ResNet-FPN, P6/P7 from P5) state dict to ours.

    Head towers in both torchvision layouts (``conv.{i}.0.`` and the older ``conv.{2i}.``, in
    which its COCO weights are stored). Trunk BatchNorm statistics saved from a
    ``FrozenBatchNorm2d`` have no ``num_batches_tracked``; a zero one is added.
    """
    rules = [
        *torchvision_fpn_rules(),
        (r"^head\.classification_head\.conv\.(\d)\.0\.", r"head.cls_convs.\1."),
        (r"^head\.regression_head\.conv\.(\d)\.0\.", r"head.reg_convs.\1."),
        (r"^head\.classification_head\.cls_logits\.", "head.cls_logits."),
        (r"^head\.regression_head\.bbox_reg\.", "head.bbox_reg."),
    ]
    for i in range(4):  # the version-1 layout: conv.0, conv.2, conv.4, conv.6 (ReLUs between)
        rules.append((rf"^head\.classification_head\.conv\.{2 * i}\.(weight|bias)$",
                      rf"head.cls_convs.{i}.\1"))  # fmt: skip
        rules.append((rf"^head\.regression_head\.conv\.{2 * i}\.(weight|bias)$",
                      rf"head.reg_convs.{i}.\1"))  # fmt: skip
    return with_bn_counters(rename_keys(sd, rules))


# torchvision's detection reference for RetinaNet: SGD lr 0.01 at batch 16, weight decay 1e-4;
# inputs normalized with the ImageNet statistics of its trunk.
_CFG = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "optimizer": "sgd", "lr": 0.01,
        "weight_decay": 1e-4}  # fmt: skip


@register_model(
    tv_twin="retinanet_resnet50_fpn",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def retinanet_resnet50_fpn(num_classes: int = 91, in_chans: int = 3, **kw: Any) -> RetinaNet:
    """RetinaNet, ResNet-50-FPN (P3-P7), torchvision's layout and defaults: 34.07M params at
    K=91 (torchvision's 34.01M keeps the trunk's frozen BN affine values as buffers);
    ``weights=`` takes torchvision's state_dict files."""
    return RetinaNet(num_classes=num_classes, in_chans=in_chans, depth=50, **kw)


@register_model(default_cfg=_CFG)
def retinanet_resnet18_fpn(num_classes: int = 91, in_chans: int = 3, **kw: Any) -> RetinaNet:
    """CPU-sized RetinaNet: ResNet-18 trunk, 128-channel FPN and head, 512 input."""
    kw.setdefault("fpn_channels", 128)
    kw.setdefault("input_size", 512)
    return RetinaNet(num_classes=num_classes, in_chans=in_chans, depth=18, **kw)
