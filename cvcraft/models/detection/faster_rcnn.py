"""Faster R-CNN with a ResNet + FPN backbone (Ren et al. 2015; Lin et al. 2017, FPN).

Key idea: two stages. A Region Proposal Network slides a small head over every pyramid level
and, for each of A anchors per position, predicts "object or not" and deltas that refine the
anchor into a proposal; the best ~1000 proposals after NMS go to the second stage, which
RoIAligns a 7x7 feature patch for each from the pyramid level matching its size and
classifies it into C + 1 classes (0 = background) with class-specific box refinement.

Pieces, each reused from ``cvcraft.ops``:

- FPN (``cvcraft.models.necks.FPN``) on the trunk's ``layer1..layer4`` maps (its
  ``forward_intermediates``): 1x1 laterals, top-down nearest upsampling + add, 3x3 output
  convs, and P6 = stride-2 subsampling of P5 (for the RPN's largest anchors only).
- Anchors: one size per level (32, 64, 128, 256, 512 px on P2..P6) x ratios (0.5, 1, 2),
  ``generate_anchors`` + ``grid_anchors`` (torchvision's ``AnchorGenerator`` values/order).
- RPN training: ``max_iou_assign`` (IoU >= 0.7 positive, < 0.3 negative, every gt keeps its
  best anchor), a balanced sample of 256 anchors (half positive at most), BCE on objectness
  + smooth-L1 (beta 1/9) on ``DeltaCoder((1, 1, 1, 1))`` deltas, both over the sample.
- Proposals: per level the top 2000 (train) / 1000 (test) anchors by objectness, decode,
  clip, drop tiny boxes, NMS 0.7 per level, keep the best 2000 / 1000 per image.
- Box head training: gt boxes are added to the proposals, ``max_iou_assign`` at 0.5 (no
  low-quality matches), 512 sampled RoIs with up to 25 % positives, cross-entropy over
  C + 1 classes + smooth-L1 (beta 1/9) on ``DeltaCoder((10, 10, 5, 5))`` deltas of the
  positives' true class, divided by the number of sampled RoIs.
- RoI features: ``multiscale_roi_align`` (7x7, sampling ratio 2) on P2..P5, then two fc
  layers (1024) -> class logits and 4 (C + 1) deltas.
- ``sampler="ohem"`` swaps the random 25 %-positive sample for online hard example mining
  (Shrivastava et al. 2016): every candidate RoI is scored read-only, duplicates are removed by
  NMS on the loss (0.7) and the ``roi_batch`` hardest remain (``cvcraft.ops.ohem``).

Every constant above is torchvision's ``fasterrcnn_resnet50_fpn`` default, and the layers are
the same, so ``from_torchvision_state_dict`` loads its weights and gives its detections (see
the tests); inputs here are already-normalized images of one size -- the task does the
resizing that torchvision's ``GeneralizedRCNNTransform`` does inside the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import smooth_l1_loss
from cvcraft.models.classification.resnet import ResNet
from cvcraft.models.detection.base import (
    Detections,
    Detector,
    Target,
    imagenet_input_norm,
    valid_targets,
)
from cvcraft.models.necks.fpn import FPN
from cvcraft.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, register_model
from cvcraft.models.weights import rename_keys
from cvcraft.ops.anchors import generate_anchors, grid_anchors
from cvcraft.ops.assigners import max_iou_assign
from cvcraft.ops.boxes import clip_boxes
from cvcraft.ops.coders import DeltaCoder
from cvcraft.ops.nms import batched_nms, multiclass_nms
from cvcraft.ops.ohem import ohem_sample, roi_losses
from cvcraft.ops.roi import multiscale_roi_align

__all__ = [
    "FPN",
    "FasterRCNN",
    "RPNHead",
    "balanced_sample",
    "fasterrcnn_resnet18_fpn",
    "fasterrcnn_resnet50_fpn",
    "from_torchvision_state_dict",
]

DEPTHS = (18, 34, 50, 101, 152)  # the registered ImageNet ResNets
SAMPLERS = ("random", "ohem")  # the box head's RoI samplers


def balanced_sample(
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    batch_size: int,
    pos_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sample of at most ``batch_size`` priors, at most ``pos_fraction`` of them positive,
    the rest filled with negatives (Faster R-CNN's minibatch; torchvision's
    ``BalancedPositiveNegativeSampler``). (N,) bool masks -> (positive idx, negative idx)."""
    pos = torch.nonzero(pos_mask).squeeze(1)
    neg = torch.nonzero(neg_mask).squeeze(1)
    n_pos = min(len(pos), int(batch_size * pos_fraction))
    n_neg = min(len(neg), batch_size - n_pos)
    dev = pos_mask.device
    pos = pos[torch.randperm(len(pos), generator=generator, device=dev)[:n_pos]]
    neg = neg[torch.randperm(len(neg), generator=generator, device=dev)[:n_neg]]
    return pos, neg


class ResNetFPN(nn.Module):
    """ResNet trunk (``body``, a classifier without its fc) + ``FPN`` on layer1..layer4."""

    def __init__(self, depth: int, in_chans: int, fpn_channels: int, **resnet_kw: Any) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"Faster R-CNN: ResNet depth must be one of {DEPTHS}, got {depth}")
        body = MODELS.get(f"resnet{depth}")(num_classes=0, in_chans=in_chans, **resnet_kw)
        self.body: ResNet = body
        chans = [f["num_chs"] for f in self.body.feature_info[1:5]]  # layer1..layer4
        self.fpn = FPN(chans, fpn_channels)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [P2 .. P6], strides 4 .. 64, each (B, fpn_channels, ., .)."""
        return self.fpn(self.body.forward_intermediates(x, (1, 2, 3, 4)))  # C2..C5 -> P2..P6


class RPNHead(nn.Module):
    """3x3 conv + ReLU shared over levels, then 1x1 convs to A objectness logits and 4A deltas."""

    def __init__(self, ch: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.cls = nn.Conv2d(ch, num_anchors, 1)
        self.reg = nn.Conv2d(ch, 4 * num_anchors, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels [(B, ch, H_l, W_l)] -> objectness (B, sum H W A), deltas (B, sum H W A, 4),
        anchor order: level, then row-major cell, then anchor (``grid_anchors``' order)."""
        logits, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            b, _, h, w = t.shape
            logits.append(self.cls(t).permute(0, 2, 3, 1).reshape(b, -1))
            d = self.reg(t).view(b, -1, 4, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, A, 4)
            deltas.append(d.reshape(b, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)


class FasterRCNN(Detector):
    """Faster R-CNN + FPN (see the module docstring for every stage and its constants).

    Args:
        depth: ResNet depth of the trunk (18, 34, 50, 101).
        backbone_kw: extra ``ResNet`` options (e.g. ``widths`` for a tiny test model).
        fpn_channels, representation: FPN width and the box head's fc width (256 / 1024).
        anchor_sizes, anchor_ratios: one size per level P2..P6, ratios h/w.
        rpn_pre_nms_top_n, rpn_post_nms_top_n: (train, test) proposal counts.
        input_size: side of ``default_input_size``.
        sampler: how the box head picks its ``roi_batch`` training RoIs per image: ``random``
            (at most ``roi_pos_fraction`` positives) or ``ohem`` (the hardest by loss after
            NMS at ``ohem_nms``).
        norm_eval: keep the trunk's BatchNorm layers in eval mode (running statistics fixed,
            torchvision's FrozenBatchNorm in effect) -- what fine-tuning a pretrained trunk
            with detection-sized batches of 2-8 images wants; off when training from scratch.
        normalize_input: map the 0-1 input with the ImageNet mean/std first (what
            torchvision's transform does for its weights); False: inputs come normalized.

    ``forward`` returns a dict: ``rpn_logits`` (B, N_a), ``rpn_deltas`` (B, N_a, 4),
    ``anchors`` (N_a, 4), ``proposals`` [per image (R_i, 4)], ``cls_logits`` (sum R, C+1),
    ``box_deltas`` (sum R, 4 (C+1)), ``image_size`` (H, W) and, when it sampled RoIs against
    targets (training), ``roi_labels`` / ``roi_targets``.
    """

    # the class-count-dependent layers: re-initialised when weights come from another num_classes
    head_names = ("cls_score", "bbox_pred")

    def __init__(
        self,
        num_classes: int = 90,
        in_chans: int = 3,
        depth: int = 50,
        backbone_kw: dict[str, Any] | None = None,
        fpn_channels: int = 256,
        representation: int = 1024,
        anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
        anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_post_nms_top_n: tuple[int, int] = (2000, 1000),
        rpn_nms: float = 0.7,
        rpn_iou: tuple[float, float] = (0.3, 0.7),
        rpn_batch: int = 256,
        rpn_pos_fraction: float = 0.5,
        roi_iou: float = 0.5,
        roi_batch: int = 512,
        roi_pos_fraction: float = 0.25,
        input_size: int = 800,
        norm_eval: bool = False,
        sampler: str = "random",
        ohem_nms: float = 0.7,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ConfigError(f"Faster R-CNN: sampler={sampler!r}, use one of {SAMPLERS}")
        if len(anchor_sizes) != 5:
            raise ConfigError(f"Faster R-CNN needs 5 anchor sizes (P2..P6), got {anchor_sizes}")
        self.num_classes = num_classes
        self.stride = 32
        self.default_input_size = (in_chans, input_size, input_size)
        self.backbone = ResNetFPN(depth, in_chans, fpn_channels, **(backbone_kw or {}))
        self.normalize = imagenet_input_norm(normalize_input, in_chans, "Faster R-CNN")
        self.base_anchors = [generate_anchors([s], anchor_ratios) for s in anchor_sizes]
        self.rpn = RPNHead(fpn_channels, len(anchor_ratios))
        self.fc6 = nn.Linear(fpn_channels * 7 * 7, representation)
        self.fc7 = nn.Linear(representation, representation)
        self.cls_score = nn.Linear(representation, num_classes + 1)
        self.bbox_pred = nn.Linear(representation, 4 * (num_classes + 1))
        self.rpn_coder = DeltaCoder((1.0, 1.0, 1.0, 1.0))
        self.roi_coder = DeltaCoder((10.0, 10.0, 5.0, 5.0))
        self.pre_nms, self.post_nms, self.rpn_nms = rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_nms
        self.rpn_iou, self.rpn_batch, self.rpn_pos_fraction = rpn_iou, rpn_batch, rpn_pos_fraction
        self.roi_iou, self.roi_batch, self.roi_pos_fraction = roi_iou, roi_batch, roi_pos_fraction
        self.norm_eval = norm_eval
        self.sampler, self.ohem_nms = sampler, ohem_nms
        self.loss_weights: dict[str, float] = {}  # loss part -> weight in the total (default 1)

    def train(self, mode: bool = True) -> FasterRCNN:
        """``nn.Module.train``, except that ``norm_eval`` keeps the trunk's BN statistics fixed."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.backbone.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def backbone_parameters_prefix(self) -> str:
        """Only the ResNet trunk comes from a classifier; the FPN starts from scratch."""
        return "backbone.body"

    # ------------------------------------------------------------------ stage 1: RPN
    def anchors(self, feats: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """All anchors (N_a, 4) of the RPN levels; stride = image side // feature side."""
        sizes = [tuple(f.shape[-2:]) for f in feats]
        strides = [(image_size[0] // h, image_size[1] // w) for h, w in sizes]
        base = [b.to(feats[0]) for b in self.base_anchors]
        return torch.cat(grid_anchors(sizes, strides, base))

    def proposals(
        self,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        anchors: torch.Tensor,
        level_sizes: Sequence[int],
        image_size: tuple[int, int],
    ) -> list[torch.Tensor]:
        """Top-k per level, decode, clip, drop tiny, NMS per level -> [(R_i, 4)] per image."""
        mode = 0 if self.training else 1  # (train, test) settings
        pre, post = self.pre_nms[mode], self.post_nms[mode]
        logits, deltas = logits.detach(), deltas.detach()
        idx, lvl = [], []
        start = 0
        for i, n in enumerate(level_sizes):  # one topk per level, batched over images
            k = min(pre, n)
            idx.append(logits[:, start : start + n].topk(k, dim=1).indices + start)  # (B, k)
            lvl.append(torch.full((k,), i, device=logits.device))
            start += n
        top = torch.cat(idx, 1)  # (B, K)
        levels = torch.cat(lvl)
        scores = torch.sigmoid(logits.gather(1, top))  # (B, K)
        boxes = self.rpn_coder.decode(
            deltas[torch.arange(len(top), device=top.device)[:, None], top], anchors[top]
        )
        boxes = clip_boxes(boxes, *image_size)  # (B, K, 4)
        out = []
        for b, s in zip(boxes, scores):
            keep = ((b[:, 2:] - b[:, :2]) >= 1e-3).all(1)
            b, s, lv = b[keep], s[keep], levels[keep]
            res = batched_nms(b, s, lv, self.rpn_nms, max_det=post)
            out.append(res.boxes)
        return out

    def rpn_loss(
        self,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        anchors: torch.Tensor,
        targets: list[Target],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness BCE and smooth-L1 over a balanced sample of anchors per image."""
        neg_thr, pos_thr = self.rpn_iou
        obj_l, box_l, count = logits.new_zeros(()), logits.new_zeros(()), 0
        for lg, dl, t in zip(logits, deltas, targets):
            gt = t["boxes"].to(anchors)
            a = max_iou_assign(anchors, gt, pos_thr, neg_thr, allow_low_quality=True)
            pos, neg = balanced_sample(
                a.pos_mask, a.neg_mask, self.rpn_batch, self.rpn_pos_fraction
            )
            sampled = torch.cat([pos, neg])
            target = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(lg)
            obj_l = obj_l + F.binary_cross_entropy_with_logits(lg[sampled], target, reduction="sum")
            if len(pos):
                reg_t = self.rpn_coder.encode(gt[a.gt_index[pos]], anchors[pos])
                box_l = box_l + smooth_l1_loss(dl[pos], reg_t, beta=1 / 9, reduction="sum")
            count += len(sampled)
        count = max(count, 1)
        return obj_l / count, box_l / count

    # ------------------------------------------------------------------ stage 2: box head
    def sample_rois(
        self,
        proposals: list[torch.Tensor],
        targets: list[Target],
        iou: float | None = None,
        coder: DeltaCoder | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Add gts to the proposals, assign at ``iou`` (default ``roi_iou``) and sample
        ``roi_batch`` RoIs per image -> (RoIs per image, labels (R,) in 0..C with
        0 = background, ``coder`` (default ``roi_coder``) deltas (R, 4))."""
        iou = self.roi_iou if iou is None else iou
        coder = coder or self.roi_coder
        rois, labels, reg = [], [], []
        for p, t in zip(proposals, targets):
            gt = t["boxes"].to(p)
            cand = torch.cat([p, gt])
            a = max_iou_assign(cand, gt, iou, iou, allow_low_quality=False)
            pos, neg = balanced_sample(
                a.pos_mask, a.neg_mask, self.roi_batch, self.roi_pos_fraction
            )
            keep = torch.cat([pos, neg])
            lab = torch.zeros(len(keep), dtype=torch.int64, device=p.device)
            lab[: len(pos)] = t["labels"].to(p.device).long()[a.gt_index[pos]] + 1
            matched = gt[a.gt_index[keep].clamp(min=0)] if len(gt) else cand[keep]
            rois.append(cand[keep])
            labels.append(lab)
            reg.append(coder.encode(matched, cand[keep]))
        return rois, torch.cat(labels), torch.cat(reg)

    def ohem_rois(
        self, feats: Sequence[torch.Tensor], proposals: list[torch.Tensor], targets: list[Target]
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """OHEM's sample: proposals + gts of each image, all assigned at ``roi_iou`` and scored
        by the box head without gradients; per image the ``roi_batch`` hardest after NMS on the
        loss (``ohem_nms``) -> ``sample_rois``' (RoIs per image, labels (R,), deltas (R, 4))."""
        cands = [torch.cat([p, t["boxes"].to(p)]) for p, t in zip(proposals, targets)]
        labels, reg = self._assign_all(cands, targets)
        with torch.no_grad():  # the read-only copy of the head (the paper's)
            logits, deltas = self.box_head(feats, cands)
            losses = roi_losses(logits, deltas, labels, reg, beta=1 / 9)  # (sum R,)
        rois, lab, tgt, start = [], [], [], 0
        for c in cands:
            keep = ohem_sample(c, losses[start : start + len(c)], self.roi_batch, self.ohem_nms)
            rois.append(c[keep])
            lab.append(labels[start + keep])
            tgt.append(reg[start + keep])
            start += len(c)
        return rois, torch.cat(lab), torch.cat(tgt)

    def box_head(
        self, feats: Sequence[torch.Tensor], rois: list[torch.Tensor], head: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoIAlign 7x7 on P2..P5 + two fc -> class logits (R, C+1), deltas (R, 4 (C+1)).

        ``head`` is any module with ``fc6, fc7, cls_score, bbox_pred`` (a cascade stage's);
        default: this model's own layers."""
        head = self if head is None else head
        x = multiscale_roi_align(feats[:4], rois, 7, sampling_ratio=2, strides=(4, 8, 16, 32))
        x = F.relu(head.fc7(F.relu(head.fc6(x.flatten(1)))))  # (R, representation)
        return head.cls_score(x), head.bbox_pred(x)

    # ------------------------------------------------------------------ contract
    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        """Both stages. With ``targets`` in training mode the box head runs on sampled RoIs."""
        return self.forward_with_features(images, targets)[0]

    def forward_with_features(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> tuple[dict, list[torch.Tensor]]:
        """``forward``'s outputs and the pyramid P2..P6 (for further RoI heads: masks)."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = self.backbone(self.normalize(images))  # P2..P6
        out, props = self.first_stage(images, feats, size)
        self.roi_stage(feats, props, targets, out)
        return out, feats

    def first_stage(
        self, images: torch.Tensor, feats: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """The RPN: its outputs (for its loss) and the proposals [(R_i, 4)] per image."""
        logits, deltas = self.rpn(feats)
        anchors = self.anchors(feats, size)
        level_sizes = [f.shape[-2] * f.shape[-1] * self.rpn.cls.out_channels for f in feats]
        props = self.proposals(logits, deltas, anchors, level_sizes, size)
        out: dict[str, Any] = {
            "rpn_logits": logits, "rpn_deltas": deltas, "anchors": anchors, "image_size": size,
        }  # fmt: skip
        return out, props

    def roi_stage(
        self,
        feats: Sequence[torch.Tensor],
        props: list[torch.Tensor],
        targets: list[Target] | None,
        out: dict[str, Any],
    ) -> None:
        """The box head on the proposals (sampled against ``targets`` in training), into ``out``."""
        if self.training and targets is not None:
            targets = valid_targets(targets)
            if self.sampler == "ohem":
                sample = self.ohem_rois(feats, props, targets)
            else:
                sample = self.sample_rois(props, targets)
            props, out["roi_labels"], out["roi_targets"] = sample
        out["proposals"] = props
        out["cls_logits"], out["box_deltas"] = self.box_head(feats, props)

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """RPN objectness + box loss, then box-head CE + smooth-L1 (module docstring).

        Outputs computed without targets (evaluation) are scored against assignments of all
        their proposals, so a validation loss needs no second forward pass.
        """
        targets = valid_targets(targets)
        parts = {**self.first_stage_loss(outputs, targets), **self.roi_stage_loss(outputs, targets)}
        total = sum(self.loss_weights.get(k, 1.0) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def first_stage_loss(self, outputs: dict, targets: list[Target]) -> dict[str, torch.Tensor]:
        """The RPN's objectness and box terms."""
        rpn_cls, rpn_box = self.rpn_loss(
            outputs["rpn_logits"], outputs["rpn_deltas"], outputs["anchors"], targets
        )
        return {"rpn_cls": rpn_cls, "rpn_box": rpn_box}

    def roi_stage_loss(self, outputs: dict, targets: list[Target]) -> dict[str, torch.Tensor]:
        """The box head's CE and smooth-L1 on the sampled RoIs (or all proposals, in eval)."""
        if "roi_labels" in outputs:
            labels, reg_t = outputs["roi_labels"], outputs["roi_targets"]
        else:
            labels, reg_t = self._assign_all(outputs["proposals"], targets)
        cls, box = self.roi_loss(outputs["cls_logits"], outputs["box_deltas"], labels, reg_t)
        return {"cls": cls, "box": box}

    def roi_loss(
        self, logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, reg_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-head loss over R RoIs: CE of logits (R, C+1) against labels (R,), and smooth-L1
        of the true class's deltas (from (R, 4 (C+1))) against reg_t (R, 4) on positives,
        divided by R (torchvision's ``fastrcnn_loss``). Class-agnostic deltas (R, 4) are one
        box for every class."""
        cls = F.cross_entropy(logits, labels) if len(labels) else logits.sum() * 0
        pos = torch.nonzero(labels > 0).squeeze(1)
        d = deltas.view(len(deltas), -1, 4)
        d = d[pos, labels[pos] if d.shape[1] > 1 else 0]  # (P, 4) true-class deltas
        box = smooth_l1_loss(d, reg_t[pos], beta=1 / 9, reduction="sum") / max(len(labels), 1)
        return cls, box

    def _assign_all(
        self,
        proposals: list[torch.Tensor],
        targets: list[Target],
        iou: float | None = None,
        coder: DeltaCoder | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every proposal's label (R,) and ``coder`` deltas (R, 4) at IoU ``iou`` (no sampling;
        defaults: ``roi_iou``, ``roi_coder``)."""
        iou = self.roi_iou if iou is None else iou
        coder = coder or self.roi_coder
        labels, reg = [], []
        for p, t in zip(proposals, targets):
            gt = t["boxes"].to(p)
            a = max_iou_assign(p, gt, iou, iou, allow_low_quality=False)
            lab = torch.zeros(len(p), dtype=torch.int64, device=p.device)
            if len(gt):
                lab[a.pos_mask] = t["labels"].to(p.device).long()[a.gt_index[a.pos_mask]] + 1
                reg.append(coder.encode(gt[a.gt_index.clamp(min=0)], p))
            else:
                reg.append(torch.zeros_like(p))
            labels.append(lab)
        return torch.cat(labels), torch.cat(reg)

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.05, iou: float = 0.5, max_det: int = 100
    ) -> Detections:
        """Softmax scores, class-specific decoding, clip, per-class NMS; background dropped.

        Defaults are torchvision's box head (score 0.05, NMS 0.5, 100 per image)."""
        probs = F.softmax(outputs["cls_logits"], -1)  # (R, C+1)
        return self.detections(outputs, probs, self.roi_coder, conf, iou, max_det)

    def detections(
        self,
        outputs: dict,
        probs: torch.Tensor,
        coder: DeltaCoder,
        conf: float,
        iou: float,
        max_det: int,
    ) -> Detections:
        """Per image: ``probs`` (R, C+1) and the box deltas decoded on ``outputs["proposals"]``
        (class-specific (R, 4 (C+1)) or agnostic (R, 4)), clipped, per-class NMS."""
        props = outputs["proposals"]
        boxes = coder.decode(outputs["box_deltas"], torch.cat(props))
        boxes = boxes.view(len(boxes), -1, 4)  # (R, C+1, 4) or (R, 1, 4)
        boxes = boxes[:, 1:] if boxes.shape[1] > 1 else boxes[:, 0]  # background dropped
        dets = []
        sizes = [len(p) for p in props]
        for b, s in zip(boxes.split(sizes), probs.split(sizes)):
            dets.append(
                multiclass_nms(
                    b, s[:, 1:], conf, iou, max_det, outputs["image_size"], min_size=1e-2
                )
            )
        return dets


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``FasterRCNN`` (ResNet-FPN) state dict to this module's keys.

    ``backbone.body.*`` is kept (our ResNet matches torchvision's); FPN, RPN and box-head
    layers are renamed. Keys of the two names are all shape-identical.
    """
    rules = [
        (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"backbone.fpn.lateral.\1."),
        (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"backbone.fpn.output.\1."),
        (r"^rpn\.head\.conv\.0\.0\.", "rpn.conv."),
        (r"^rpn\.head\.cls_logits\.", "rpn.cls."),
        (r"^rpn\.head\.bbox_pred\.", "rpn.reg."),
        (r"^roi_heads\.box_head\.(fc6|fc7)\.", r"\1."),
        (r"^roi_heads\.box_predictor\.", ""),
    ]
    return rename_keys(sd, rules)


def _fasterrcnn(depth: int, num_classes: int, in_chans: int, **kw: Any) -> FasterRCNN:
    return FasterRCNN(num_classes=num_classes, in_chans=in_chans, depth=depth, **kw)


# the ``*_resnet18_fpn`` two-stage detectors' sizes (the ResNet-50 ones keep torchvision's)
CPU_SIZES: dict[str, Any] = {
    "fpn_channels": 128, "representation": 512, "input_size": 512,
    "rpn_pre_nms_top_n": (1000, 500), "rpn_post_nms_top_n": (1000, 500),
}  # fmt: skip

# torchvision's detection reference: SGD lr 0.02 at batch 16, weight decay 1e-4, inputs
# normalized with the ImageNet statistics its trunk was trained with.
_CFG = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "optimizer": "sgd", "lr": 0.02,
        "weight_decay": 1e-4}  # fmt: skip


@register_model(
    tv_twin="fasterrcnn_resnet50_fpn",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def fasterrcnn_resnet50_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> FasterRCNN:
    """Faster R-CNN, ResNet-50-FPN, torchvision's layout and defaults (41.3M params at C=90)."""
    return _fasterrcnn(50, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def fasterrcnn_resnet18_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> FasterRCNN:
    """CPU-sized Faster R-CNN: ResNet-18 trunk, 128-channel FPN, 512-wide head, 512 input."""
    return _fasterrcnn(18, num_classes, in_chans, **{**CPU_SIZES, **kw})
