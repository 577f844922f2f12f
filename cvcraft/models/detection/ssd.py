"""SSD300 with a VGG-16 trunk (Liu et al. 2016, "SSD: Single Shot MultiBox Detector").

Key idea: predict, from every cell of several feature maps of decreasing resolution, class
scores and box offsets for a fixed set of *default boxes* (one scale per map, several aspect
ratios), so small objects are found on the fine maps and large ones on the coarse maps, in
one pass with no proposal stage.

Pieces:

- Trunk: VGG-16 conv1_1 .. conv4_3 (pool3 in ceil mode, so 300 -> 38), conv4_3's map
  L2-normalised per position and rescaled by a learned per-channel weight (init 20; conv4_3's
  activations are much larger than the deeper maps'); pool4, conv5_x, pool5 as 3x3 stride 1,
  fc6 as a 3x3 conv with dilation 6 and fc7 as a 1x1 (1024 ch); four extra blocks
  (1x1 reduce + 3x3, two with stride 2, two unpadded). Six maps: 38, 19, 10, 5, 3, 1 at 300.
- Default boxes (``ops.default_boxes``): scales 0.07 .. 0.87 (+1.05), ratios {2} or {2, 3},
  4 or 6 per cell, centres on steps 8, 16, 32, 64, 100, 300 px: 8732 boxes at 300.
- Head: per map a 3x3 conv to A (K + 1) class logits (index 0 = background) and one to 4 A
  deltas (``DeltaCoder((10, 10, 5, 5))``).
- Training: ``ssd_assign`` (IoU >= 0.5, plus every gt's best prior); softmax cross-entropy
  over the positives and the 3 x P hardest negatives (``hard_negative_mask``), smooth-L1
  (beta 1) on the positives' deltas; both summed over the batch and divided by its P.
- Inference: softmax, boxes decoded and clipped; per class the scores above ``conf``, the
  best ``topk_candidates``; class-aware NMS (0.45) and the best 200.

Every constant is torchvision's ``ssd300_vgg16``, so ``from_torchvision_state_dict`` loads its
weights and gives its default boxes, detections and losses (tests). Our labels 0..K-1 are
torchvision's 1..K (its class 0 is background): COCO's 91 logits are ``num_classes=90``.
Inputs are 0-1 images, as for every detector here (``detection.base``); the model maps them
to torchvision's convention itself (``input_norm``: the per-channel mean subtracted in 0-255
units, mean (0.48235, 0.45882, 0.40784), std 1/255). That matters: VGG has no BatchNorm,
so its Xavier-initialised layers see 255x smaller, uncentred activations on raw 0-1 inputs,
and the deeper maps barely move from their biases (on 32 shapes scenes the width-1/16 model
did not learn at all in 300 steps, see BENCHMARKS.md). ``normalize_input=False`` (the
factory) takes already-normalized inputs, as torchvision's ``backbone`` does. At the 300 px
it was designed for the default boxes sit on torchvision's steps, at any other size on the
feature cells.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.classification.vgg import CFGS
from cvcraft.models.detection.base import (
    Detections,
    Detector,
    InputNorm,
    Target,
    channel_norm,
    valid_targets,
)
from cvcraft.models.detection.dense import class_nms
from cvcraft.models.registry import register_model
from cvcraft.ops.assigners import ssd_assign
from cvcraft.ops.boxes import clip_boxes
from cvcraft.ops.coders import DeltaCoder
from cvcraft.ops.default_boxes import default_box_shapes, default_boxes
from cvcraft.ops.hard_negatives import hard_negative_mask

__all__ = [
    "SSD",
    "L2Norm",
    "VGG16SSDTrunk",
    "from_torchvision_state_dict",
    "scoring_heads",
    "ssd300_vgg16",
]


class L2Norm(nn.Module):
    """``weight_c * x_c / ||x||_2`` over channels at each position (ParseNet); the learned
    per-channel weight starts at ``scale``. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)


def _extra(c_in: int, mid: int, c_out: int, stride: int, padding: int) -> nn.Sequential:
    """1x1 reduce + ReLU, 3x3 (stride, padding) + ReLU: one of SSD's extra feature layers."""
    reduce, conv = nn.Conv2d(c_in, mid, 1), nn.Conv2d(mid, c_out, 3, stride, padding)
    return nn.Sequential(reduce, nn.ReLU(inplace=True), conv, nn.ReLU(inplace=True))


class VGG16SSDTrunk(nn.Module):
    """VGG-16 up to conv5_3, dilated fc6/fc7 and four extra blocks -> six maps.

    ``width`` scales every channel count (1.0 is the paper's; smaller for CPU experiments).
    (B, C, 300, 300) -> [(B, 512w, 38, 38) L2-normed, (B, 1024w, 19, 19), (B, 512w, 10, 10),
    (B, 256w, 5, 5), (B, 256w, 3, 3), (B, 256w, 1, 1)].
    """

    def __init__(self, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ConfigError(f"VGG16SSDTrunk width must be > 0, got {width}")

        def c(n: int) -> int:
            return max(8, int(n * width))

        layers: list[nn.Module] = []
        ch, pools = in_chans, 0
        for v in CFGS["D"][:-5]:  # conv1_1 .. conv4_3 (+ ReLU) with pool1..pool3
            if v == "M":
                pools += 1
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=pools == 3))  # pool3: 75 -> 38
                continue
            layers += [nn.Conv2d(ch, c(int(v)), 3, padding=1), nn.ReLU(inplace=True)]
            ch = c(int(v))
        self.features = nn.Sequential(*layers)  # torchvision's ``features.0 .. 22``
        self.l2norm = L2Norm(ch)
        conv5: list[nn.Module] = [nn.MaxPool2d(2, 2)]  # pool4
        for _ in range(3):
            conv5 += [nn.Conv2d(ch, c(512), 3, padding=1), nn.ReLU(inplace=True)]
            ch = c(512)
        self.conv5 = nn.Sequential(*conv5)
        self.pool5 = nn.MaxPool2d(3, 1, 1)
        self.fc6 = nn.Conv2d(ch, c(1024), 3, padding=6, dilation=6)
        self.fc7 = nn.Conv2d(c(1024), c(1024), 1)
        self.extras = nn.ModuleList([
            _extra(c(1024), c(256), c(512), 2, 1),  # conv8_2: 19 -> 10
            _extra(c(512), c(128), c(256), 2, 1),  # conv9_2: 10 -> 5
            _extra(c(256), c(128), c(256), 1, 0),  # conv10_2: 5 -> 3
            _extra(c(256), c(128), c(256), 1, 0),  # conv11_2: 3 -> 1
        ])  # fmt: skip
        self.out_channels = [ch, c(1024), c(512), c(256), c(256), c(256)]
        self.min_size = next(s for s in range(1, 4096) if self.level_sizes(s)[-1] >= 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def level_sizes(side: int) -> list[int]:
        """The six map sides for an input side (pool3 ceil, pool4 floor, two stride-2 and two
        unpadded 3x3 convs)."""
        s3 = math.ceil(side // 2 // 2 / 2)
        s4 = s3 // 2
        s5 = (s4 - 1) // 2 + 1
        s6 = (s5 - 1) // 2 + 1
        return [s3, s4, s5, s6, s6 - 2, s6 - 4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.features(x)  # conv4_3: (B, 512, 38, 38)
        out = [self.l2norm(x)]
        x = F.relu(self.fc6(self.pool5(self.conv5(x))))
        x = F.relu(self.fc7(x))  # (B, 1024, 19, 19)
        out.append(x)
        for block in self.extras:
            x = block(x)
            out.append(x)
        return out


def scoring_heads(
    in_channels: Sequence[int], num_anchors: Sequence[int], columns: int
) -> nn.ModuleList:
    """One 3x3 conv per map to ``A_k x columns`` outputs, Xavier-initialised."""
    convs = nn.ModuleList(nn.Conv2d(c, a * columns, 3, padding=1)
                          for c, a in zip(in_channels, num_anchors))  # fmt: skip
    for m in convs:
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return convs


def _flatten_levels(heads: nn.ModuleList, feats: Sequence[torch.Tensor], cols: int) -> torch.Tensor:
    """Per map (B, A cols, H, W) -> (B, H W A, cols), concatenated over maps: the default boxes'
    order (map, row-major cell, shape)."""
    out = []
    for head, f in zip(heads, feats):
        y = head(f)
        b, _, h, w = y.shape
        out.append(y.view(b, -1, cols, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, cols))
    return torch.cat(out, 1)


class SSD(Detector):
    """A single-shot detector: a trunk giving several maps, per-map class and box heads, and
    default boxes (module docstring: every stage and its constants). SSDLite reuses it with
    another trunk and heads.

    Args:
        backbone: a module returning a list of maps, with ``out_channels`` and ``min_size``.
        cls_head, box_head: per-map modules giving A_k (K + 1) and 4 A_k channels.
        aspect_ratios, scales: the default boxes (``ops.default_boxes``).
        steps: per-map pixel steps of the centres at ``input_size`` (None: the feature cells).
        iou_thr: matching threshold; neg_pos_ratio: hard negatives per positive.
        conf, iou, max_det, topk_candidates: post-processing defaults.
        input_norm: (mean, std) per channel applied to the 0-1 input in ``forward``
            (``(x - mean) / std``), or None for inputs already normalized.

    ``forward`` returns a dict: ``cls_logits`` (B, N, K + 1), ``bbox_regression`` (B, N, 4),
    ``anchors`` (N, 4) default boxes xyxy, ``image_size`` (H, W).
    """

    head_names = ("cls_head",)

    def __init__(
        self,
        backbone: nn.Module,
        cls_head: nn.Module,
        box_head: nn.Module,
        num_classes: int,
        aspect_ratios: Sequence[Sequence[float]],
        scales: Sequence[float],
        steps: Sequence[float] | None = None,
        input_size: int = 300,
        in_chans: int = 3,
        stride: int = 4,
        iou_thr: float = 0.5,
        neg_pos_ratio: float = 3.0,
        conf: float = 0.01,
        iou: float = 0.45,
        max_det: int = 200,
        topk_candidates: int = 400,
        input_norm: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"SSD num_classes must be >= 1, got {num_classes}")
        if len(aspect_ratios) != len(backbone.out_channels):
            raise ConfigError(
                f"SSD: {len(aspect_ratios)} aspect-ratio lists for "
                f"{len(backbone.out_channels)} feature maps"
            )
        if steps is not None and len(steps) != len(aspect_ratios):
            raise ConfigError(f"SSD: {len(steps)} steps for {len(aspect_ratios)} feature maps")
        self.num_classes = num_classes
        self.default_input_size = (in_chans, input_size, input_size)
        self.stride = stride
        self.backbone, self.cls_head, self.box_head = backbone, cls_head, box_head
        self.box_shapes = default_box_shapes(scales, aspect_ratios)
        self.steps = None if steps is None else [float(s) for s in steps]
        self.coder = DeltaCoder((10.0, 10.0, 5.0, 5.0))
        self.iou_thr, self.neg_pos_ratio = iou_thr, neg_pos_ratio
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.topk_candidates = topk_candidates
        # the 0-1 -> trunk scale map; not in the state dict (torchvision's files keep their keys)
        self.normalize = (
            nn.Identity() if input_norm is None else InputNorm(*input_norm, in_chans, "SSD")
        )

    def anchors(self, feats: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """Default boxes (N, 4); on ``steps`` at the designed input size, else on the cells."""
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
        cells = None
        if self.steps is not None and image_size == self.default_input_size[1:]:
            cells = [(image_size[0] / s, image_size[1] / s) for s in self.steps]
        return default_boxes(sizes, image_size, self.box_shapes, cells).to(feats[0])

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        least = self.backbone.min_size
        if min(size) < least:
            raise ConfigError(
                f"SSD: a {size[0]}x{size[1]} input is too small for this trunk's "
                f"{len(self.box_shapes)} feature maps (the last would be empty); use inputs of "
                f"at least {least}x{least} (designed for {self.default_input_size[1]})"
            )
        feats = self.backbone(self.normalize(images))
        return {
            "cls_logits": _flatten_levels(self.cls_head, feats, self.num_classes + 1),
            "bbox_regression": _flatten_levels(self.box_head, feats, 4),
            "anchors": self.anchors(feats, size), "image_size": size,
        }  # fmt: skip

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on positives + 3:1 hard negatives and smooth-L1 on positives, both
        summed over the batch / its number of positives."""
        targets = valid_targets(targets)
        logits, deltas = outputs["cls_logits"], outputs["bbox_regression"]  # (B, N, K+1), (B, N, 4)
        anchors = outputs["anchors"]
        if len(targets) != len(logits):
            raise ConfigError(f"SSD loss got {len(targets)} targets for {len(logits)} images")
        cls_t = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)  # (B, N)
        box_l = logits.new_zeros(())
        for i, t in enumerate(targets):  # matching is per image
            gt, labels = t["boxes"].to(anchors), t["labels"].to(logits.device).long()
            if len(labels) and int(labels.max()) >= self.num_classes:
                raise ConfigError(
                    f"a target label is {int(labels.max())} but SSD has {self.num_classes} "
                    "classes; set num_classes to the dataset's class count"
                )
            prior, gt_idx = ssd_assign(anchors, gt, self.iou_thr).pairs()
            cls_t[i, prior] = labels[gt_idx] + 1  # 0 = background
            reg_t = self.coder.encode(gt[gt_idx], anchors[prior])
            box_l = box_l + F.smooth_l1_loss(deltas[i, prior], reg_t, reduction="sum")
        ce = F.cross_entropy(logits.flatten(0, 1), cls_t.flatten(), reduction="none")
        ce = ce.view(cls_t.shape)  # (B, N)
        pos = cls_t > 0
        neg = hard_negative_mask(ce, pos, self.neg_pos_ratio)
        n_pos = max(int(pos.sum()), 1)
        parts = {"cls": (ce[pos].sum() + ce[neg].sum()) / n_pos, "box": box_l / n_pos}
        return parts["cls"] + parts["box"], {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def postprocess(
        self,
        outputs: dict,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
    ) -> Detections:
        """Softmax; per class the scores above ``conf`` and the best ``topk_candidates``;
        class-aware NMS (``class_nms``) and the best ``max_det``. None: the model's defaults
        (torchvision's: 0.01 / 0.45 / 200 for SSD300)."""
        conf = self.conf if conf is None else conf
        iou = self.iou if iou is None else iou
        max_det = self.max_det if max_det is None else max_det
        anchors, size = outputs["anchors"], outputs["image_size"]
        probs = F.softmax(outputs["cls_logits"], -1)[..., 1:]  # (B, N, K) background dropped
        k = min(self.topk_candidates, probs.shape[1])
        dets = []
        for p, d in zip(probs, outputs["bbox_regression"]):
            boxes = clip_boxes(self.coder.decode(d, anchors), *size)  # (N, 4)
            top, idx = p.T.topk(k, dim=1)  # (K, k) per class, best first
            keep = top > conf
            labels = torch.arange(len(top), device=p.device)[:, None].expand_as(top)[keep]
            dets.append(class_nms(boxes[idx[keep]], top[keep], labels, conf, iou, max_det))
        return dets


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``ssd300_vgg16`` state dict to ours: ``features`` keep their
    indices, ``scale_weight`` is the L2Norm weight, ``extra.0`` holds pool4 + conv5_x and
    fc6/fc7 (``extra.0.7.1``, ``.3``), ``extra.1..4`` are our ``extras.0..3``."""
    rules = [
        (r"^backbone\.scale_weight$", "backbone.l2norm.weight"),
        (r"^backbone\.extra\.0\.7\.1\.", "backbone.fc6."),
        (r"^backbone\.extra\.0\.7\.3\.", "backbone.fc7."),
        (r"^backbone\.extra\.0\.(\d)\.", r"backbone.conv5.\1."),
        (r"^head\.classification_head\.module_list\.", "cls_head."),
        (r"^head\.regression_head\.module_list\.", "box_head."),
    ]
    out = {}
    for key, v in sd.items():
        for pat, rep in rules:
            key = re.sub(pat, rep, key)
        m = re.match(r"^backbone\.extra\.(\d)\.(.*)$", key)
        if m:  # extra.1..4 -> extras.0..3
            key = f"backbone.extras.{int(m[1]) - 1}.{m[2]}"
        out[key] = v
    return out


# torchvision's detection reference for SSD300: SGD lr 0.002, weight decay 5e-4; its input
# normalization (mean in 0-1 units, std 1/255: mean-subtracted 0-255 pixels).
_CFG = {"mean": (0.48235, 0.45882, 0.40784), "std": (1 / 255, 1 / 255, 1 / 255),
        "input_size": (3, 300, 300), "optimizer": "sgd", "lr": 0.002,
        "weight_decay": 5e-4}  # fmt: skip

SSD300_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
SSD300_SCALES = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
SSD300_STEPS = [8, 16, 32, 64, 100, 300]


@register_model(tv_twin="ssd300_vgg16", tv_converter=from_torchvision_state_dict,
                default_cfg=_CFG)  # fmt: skip
def ssd300_vgg16(
    num_classes: int = 90,
    in_chans: int = 3,
    width: float = 1.0,
    normalize_input: bool = True,
    **kw: Any,
) -> SSD:
    """SSD300, VGG-16 trunk, torchvision's layout and defaults: 35.64M params at K=90 (91
    logits); ``width`` < 1 thins every layer for CPU runs; ``weights=`` takes torchvision's
    state_dict files. Takes 0-1 images (``normalize_input=False``: already normalized)."""
    if normalize_input:
        kw.setdefault("input_norm", channel_norm(_CFG["mean"], _CFG["std"], in_chans))
    trunk = VGG16SSDTrunk(in_chans, width)
    anchors = [2 + 2 * len(r) for r in SSD300_RATIOS]
    cls = scoring_heads(trunk.out_channels, anchors, num_classes + 1)
    box = scoring_heads(trunk.out_channels, anchors, 4)
    return SSD(trunk, cls, box, num_classes, SSD300_RATIOS, SSD300_SCALES, SSD300_STEPS,
               input_size=300, in_chans=in_chans, **kw)  # fmt: skip
