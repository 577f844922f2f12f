"""What the dense one-stage detectors on a ResNet-FPN (RetinaNet, FCOS) share: the frozen-BN
training switch, the per-level top-k + NMS post-processing, and the torchvision key rules.

Post-processing is torchvision's for both: per pyramid level, every (location, class) score
above ``conf``, the best ``topk`` of them, their boxes decoded and clipped; then one
class-aware NMS over all levels and the best ``max_det``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cvcraft.models.detection.base import Detector
from cvcraft.ops.boxes import clip_boxes
from cvcraft.ops.nms import batched_nms, postprocess_method

__all__ = [
    "DenseDetector",
    "class_nms",
    "level_topk_nms",
    "torchvision_fpn_rules",
    "with_bn_counters",
]


class DenseDetector(Detector):
    """A Detector whose ``backbone.body`` is a classification trunk; ``norm_eval`` keeps its
    BatchNorm statistics fixed while training (torchvision's FrozenBatchNorm, for fine-tuning
    a pretrained trunk with detection-sized batches)."""

    norm_eval: bool = False

    def train(self, mode: bool = True) -> DenseDetector:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.backbone.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def backbone_parameters_prefix(self) -> str:
        """Only the ResNet trunk comes from a classifier; FPN and head start from scratch."""
        return "backbone.body"


def level_topk_nms(
    scores: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    level_sizes: Sequence[int],
    image_size: tuple[int, int],
    conf: float,
    iou: float,
    max_det: int,
    topk: int,
) -> dict[str, torch.Tensor]:
    """One image: ``scores`` (N, K) probabilities of N locations x K classes, ``decode``
    (P,) location indices -> (P, 4) boxes -> ``{"boxes", "scores", "labels"}`` best first.

    NMS: :func:`class_nms`.
    """
    k = scores.shape[1]
    picked, top_scores = [], []
    start = 0
    for n in level_sizes:  # five levels: one threshold + top-k each
        s = scores[start : start + n].flatten()  # (n K,) location-major
        idx = torch.nonzero(s > conf).squeeze(1)
        s, order = s[idx].topk(min(topk, len(idx)))
        picked.append(idx[order] + start * k)
        top_scores.append(s)
        start += n
    flat, s = torch.cat(picked), torch.cat(top_scores)
    loc, labels = torch.div(flat, k, rounding_mode="floor"), flat % k
    boxes = clip_boxes(decode(loc), *image_size)
    return class_nms(boxes, s, labels, conf, iou, max_det)


def class_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
) -> dict[str, torch.Tensor]:
    """Class-aware NMS of (P, 4) boxes by the method ``ops.nms.postprocess_nms`` selected
    (greedy outside one); Soft- and Matrix-NMS drop boxes decayed to ``conf`` or below.
    -> ``{"boxes", "scores", "labels"}``, best first, at most ``max_det``."""
    method = postprocess_method()
    res = batched_nms(boxes, scores, labels, iou, method, max_det=max_det)
    keep, out_s, out_b = res.keep, res.scores, res.boxes  # boxes merged if weighted
    if method.startswith("soft") or method == "matrix":
        above = out_s > conf
        keep, out_s, out_b = keep[above], out_s[above], out_b[above]
    return {"boxes": out_b, "scores": out_s, "labels": labels[keep]}


def torchvision_fpn_rules() -> list[tuple[str, str]]:
    """Key renames of torchvision's ResNet-FPN with P6/P7 extra blocks to ``ResNetFPNP3P7``."""
    return [
        (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"backbone.fpn.lateral.\1."),
        (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"backbone.fpn.output.\1."),
        (r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.", r"backbone.\1."),
    ]


def with_bn_counters(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Trunk BatchNorm statistics saved from torchvision's ``FrozenBatchNorm2d`` have no
    ``num_batches_tracked``; add a zero one where it is missing."""
    for key in [k for k in sd if k.startswith("backbone.body.") and k.endswith(".running_var")]:
        sd.setdefault(key[: -len("running_var")] + "num_batches_tracked",
                      torch.zeros((), dtype=torch.int64))  # fmt: skip
    return sd
