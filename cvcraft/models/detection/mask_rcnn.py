"""Mask R-CNN: Faster R-CNN + a small FCN mask head per RoI (He et al. 2017).

Key idea: the second stage gets a third branch. Each RoI's 14x14 RoIAlign patch (P2..P5,
sampling ratio 2) goes through four 3x3 conv + ReLU layers, a 2x2 stride-2 transposed conv +
ReLU (-> 28x28) and a 1x1 conv to one mask logit map per class; a detection keeps the map of
its own class (``sigmoid``), which is pasted into the image inside its box.

Training (``mask_loss``): on the positive sampled RoIs, the target is the matched gt mask
RoIAligned to 28x28 over the RoI, scored by per-pixel BCE on the RoI's true class's map.
Layers and constants are torchvision's ``maskrcnn_resnet50_fpn``; ``from_torchvision_state_dict``
renames its weights, so its proposals, boxes and masks are reproduced (see the tests).

Shapes: ``mask_head(feats, boxes)`` -> (R, C + 1, 28, 28) logits; ``postprocess`` adds to each
image's detections ``masks`` (N, H, W) float probabilities at the input's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.models.detection.base import Detections, Target, valid_targets
from cvcraft.models.detection.faster_rcnn import _CFG, FasterRCNN
from cvcraft.models.detection.faster_rcnn import (
    from_torchvision_state_dict as _faster_rcnn_keys,
)
from cvcraft.models.registry import register_model
from cvcraft.models.weights import rename_keys
from cvcraft.ops.assigners import max_iou_assign
from cvcraft.ops.masks import paste_masks
from cvcraft.ops.roi import multiscale_roi_align, roi_align

__all__ = ["MaskRCNN", "from_torchvision_state_dict", "maskrcnn_resnet50_fpn"]


class MaskRCNN(FasterRCNN):
    """Faster R-CNN with a mask branch; ``mask_layers`` are the conv widths before the 2x
    upsampling, ``mask_dim`` the transposed conv's width (torchvision: 4 x 256, 256)."""

    head_names = (*FasterRCNN.head_names, "mask_logits")

    def __init__(
        self,
        num_classes: int = 90,
        in_chans: int = 3,
        mask_layers: Sequence[int] = (256, 256, 256, 256),
        mask_dim: int = 256,
        **kw: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, **kw)
        ch = kw.get("fpn_channels", 256)
        layers: list[nn.Module] = []
        for width in mask_layers:
            layers += [nn.Conv2d(ch, width, 3, padding=1), nn.ReLU(inplace=True)]
            ch = width
        self.mask_convs = nn.Sequential(*layers)
        self.mask_upsample = nn.ConvTranspose2d(ch, mask_dim, 2, stride=2)
        self.mask_logits = nn.Conv2d(mask_dim, num_classes + 1, 1)

    def mask_head(self, feats: Sequence[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """RoIAlign 14x14 on P2..P5 -> 4 conv -> 2x up -> (R, C + 1, 28, 28) logits."""
        x = multiscale_roi_align(feats[:4], boxes, 14, sampling_ratio=2, strides=(4, 8, 16, 32))
        x = self.mask_convs(x)  # (R, 256, 14, 14)
        return self.mask_logits(F.relu(self.mask_upsample(x)))  # (R, C + 1, 28, 28)

    def forward(self, images: torch.Tensor, targets: list[Target] | None = None) -> dict:
        """Faster R-CNN's outputs plus ``features`` (P2..P5, for the mask head at
        postprocess) or, when training with targets, the positive RoIs' true-class mask
        logits and targets (``mask_logits_pos``, ``mask_targets``)."""
        out, feats = self.forward_with_features(images, targets)
        if self.training and targets is not None:
            out["mask_logits_pos"], out["mask_targets"] = self._mask_train(
                feats, out["proposals"], out["roi_labels"], valid_targets(targets)
            )
        else:
            out["features"] = feats[:4]
        return out

    def _mask_train(
        self,
        feats: Sequence[torch.Tensor],
        rois: list[torch.Tensor],
        labels: torch.Tensor,
        targets: list[Target],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive RoIs' true-class logits (P, 28, 28) and their gt-mask targets (P, 28, 28)."""
        pos_rois, pos_labels, mask_t = [], [], []
        for r, lab, t in zip(rois, labels.split([len(r) for r in rois]), targets):
            pos = lab > 0
            p = r[pos]
            gt = t["boxes"].to(p)
            # the sampled positives' gt: the same assignment sample_rois made
            idx = max_iou_assign(p, gt, self.roi_iou, self.roi_iou, allow_low_quality=False)
            gi = idx.gt_index.clamp(min=0)
            masks = t["masks"].to(p)[:, None]  # (G, 1, H, W)
            rois_b = torch.cat([gi[:, None].to(p), p], 1)
            mask_t.append(roi_align(masks, rois_b, (28, 28), 1.0)[:, 0])
            pos_rois.append(p)
            pos_labels.append(lab[pos])
        logits = self.mask_head(feats, pos_rois)  # (P, C + 1, 28, 28)
        lab = torch.cat(pos_labels)
        return logits[torch.arange(len(lab), device=lab.device), lab], torch.cat(mask_t)

    def loss(self, outputs: dict, targets: list[Target]) -> tuple[torch.Tensor, dict[str, float]]:
        """Faster R-CNN's four terms + the mask BCE (training outputs only)."""
        total, parts = super().loss(outputs, targets)
        if "mask_targets" in outputs:
            logits, tgt = outputs["mask_logits_pos"], outputs["mask_targets"]
            mask = F.binary_cross_entropy_with_logits(logits, tgt) if len(tgt) else logits.sum() * 0
            total = total + mask
            parts["mask"] = float(mask.detach())
        return total, parts

    @torch.no_grad()
    def postprocess(
        self, outputs: dict, conf: float = 0.05, iou: float = 0.5, max_det: int = 100
    ) -> Detections:
        """Faster R-CNN's detections, each with ``mask_probs`` (N, 28, 28) of its class and
        ``masks`` (N, H, W) pasted into the image (probabilities; > 0.5 is the mask)."""
        dets = super().postprocess(outputs, conf, iou, max_det)
        logits = self.mask_head(outputs["features"], [d["boxes"] for d in dets])
        labels = torch.cat([d["labels"] for d in dets]) + 1  # channel 0 is background
        probs = logits[torch.arange(len(labels), device=labels.device), labels].sigmoid()
        for d, p in zip(dets, probs.split([len(d["boxes"]) for d in dets])):
            d["mask_probs"] = p
            d["masks"] = paste_masks(p, d["boxes"], outputs["image_size"])
        return dets


def from_torchvision_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``MaskRCNN`` (ResNet-FPN) state dict to this module's keys."""
    rules = [
        (r"^roi_heads\.mask_head\.(\d+)\.0\.", lambda m: f"mask_convs.{2 * int(m.group(1))}."),
        (r"^roi_heads\.mask_predictor\.conv5_mask\.", "mask_upsample."),
        (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "mask_logits."),
    ]
    return _faster_rcnn_keys(rename_keys(sd, rules))


@register_model(
    tv_twin="maskrcnn_resnet50_fpn",
    tv_converter=from_torchvision_state_dict,
    default_cfg=_CFG,
)
def maskrcnn_resnet50_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> MaskRCNN:
    """Mask R-CNN, ResNet-50-FPN, torchvision's layout and defaults."""
    return MaskRCNN(num_classes=num_classes, in_chans=in_chans, depth=50, **kw)


@register_model(default_cfg=_CFG)
def maskrcnn_resnet18_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> MaskRCNN:
    """CPU-sized Mask R-CNN: ResNet-18 trunk, 128-channel FPN and mask head, 512 input."""
    kw.setdefault("fpn_channels", 128)
    kw.setdefault("representation", 512)
    kw.setdefault("input_size", 512)
    kw.setdefault("mask_layers", (128,) * 4)
    kw.setdefault("mask_dim", 128)
    kw.setdefault("rpn_pre_nms_top_n", (1000, 500))
    kw.setdefault("rpn_post_nms_top_n", (1000, 500))
    return MaskRCNN(num_classes=num_classes, in_chans=in_chans, depth=18, **kw)
