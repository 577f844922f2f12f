"""Fast R-CNN (Girshick 2015): Faster R-CNN's second stage on proposals from outside.

Key idea: the network computes the feature map once per image and RoI-pools a fixed-size
patch for every externally proposed box (selective search in the paper), then classifies it
into C + 1 classes with class-specific box refinement. Faster R-CNN later replaced the
external proposals with its RPN; this model keeps the same trunk, FPN and box head
(``FasterRCNN``'s, so the sampling, losses and post-processing are shared) and has no RPN.

Proposals, per image in input pixels (``forward(images, targets, proposals=[(R_i, 4)])``
takes them explicitly; otherwise the model's ``proposals`` source is called on the images):

- a callable ``fn(images (B, C, H, W) float 0-1) -> [(R_i, 4)]``;
- ``"selective_search"``: ``cvcraft.classic.selective_search`` on each image (fast mode,
  our own implementation, seeded ranking);
- a JSON file ``{"<image file name>": [[x1, y1, x2, y2], ...], ...}``: ``ProposalFile`` loads
  it; pass ``proposal_file.for_images(names)`` as ``proposals=`` (boxes in the pixels of the
  images given to the model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.models.detection.base import Target
from cvcraft.models.detection.faster_rcnn import _CFG, CPU_SIZES, FasterRCNN
from cvcraft.models.registry import register_model
from cvcraft.ops.boxes import clip_boxes

__all__ = [
    "FastRCNN",
    "ProposalFile",
    "SelectiveSearchProposals",
    "fastrcnn_resnet18_fpn",
    "fastrcnn_resnet50_fpn",
]

ProposalFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]


class SelectiveSearchProposals:
    """Selective-search boxes (R_i, 4) for each image of a float 0-1 batch (B, C, H, W);
    a one-channel image is searched as grey RGB.

    The search costs ~0.6 s per 128 px image, so results are cached by the image's bytes
    (the paper computes proposals once, offline): an image seen again -- every epoch of a run
    without random geometry or colour, every validation -- is searched once."""

    def __init__(self, mode: str = "fast", max_boxes: int = 2000, cache: bool = True) -> None:
        self.mode, self.max_boxes = mode, max_boxes
        self.cache: dict[bytes, np.ndarray] | None = {} if cache else None

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        from cvcraft.classic.selective_search import selective_search

        u8 = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        u8 = u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8
        out = []
        for img in u8.permute(0, 2, 3, 1).numpy():  # one search per image
            img = np.ascontiguousarray(img)
            key = hashlib.sha1(img.tobytes()).digest() + bytes(str(img.shape), "ascii")
            boxes = None if self.cache is None else self.cache.get(key)
            if boxes is None:
                boxes = selective_search(img, self.mode, self.max_boxes)
                if self.cache is not None:
                    self.cache[key] = boxes
            out.append(torch.from_numpy(boxes).to(images.device))
        return out


class ProposalFile:
    """Per-image proposals from a JSON file ``{"name": [[x1, y1, x2, y2], ...]}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"proposals={self.path}: cannot read it as JSON ({e})") from None
        if not isinstance(raw, dict):
            raise DataError(f"proposals={self.path}: expected {{image name: [[x1, y1, x2, y2]]}}")
        self.boxes: dict[str, torch.Tensor] = {}
        for name, b in raw.items():
            try:
                t = torch.tensor(b, dtype=torch.float32).reshape(len(b), -1 if len(b) else 4)
            except (TypeError, ValueError, RuntimeError):
                t = torch.zeros(0, 0)
            if t.shape != (len(b), 4) or not torch.isfinite(t).all():
                raise DataError(
                    f"proposals={self.path}: {name!r} needs finite [x1, y1, x2, y2] rows"
                )
            self.boxes[name] = t

    def for_images(self, names: Sequence[str]) -> list[torch.Tensor]:
        """The boxes of each named image (by file name, without folders)."""
        missing = [n for n in names if Path(n).name not in self.boxes]
        if missing:
            raise DataError(f"proposals={self.path} has no boxes for {missing[:5]}")
        return [self.boxes[Path(n).name] for n in names]


def proposal_source(proposals: str | ProposalFn | None, max_boxes: int) -> ProposalFn | None:
    """The model's own proposal function from its ``proposals`` argument (a file has none:
    its boxes are looked up by name, so they are passed to ``forward``)."""
    if proposals is None or callable(proposals):
        return proposals
    if proposals == "selective_search":
        return SelectiveSearchProposals("fast", max_boxes)
    if str(proposals).endswith(".json"):
        return None
    raise ConfigError(
        f"Fast R-CNN: proposals={proposals!r}; use a callable, 'selective_search' or a .json file"
    )


class FastRCNN(FasterRCNN):
    """Faster R-CNN without its RPN: the box head on external proposals (module docstring).

    Args:
        proposals: a callable, ``"selective_search"`` or a JSON file path (then ``forward``
            needs ``proposals=``; ``self.proposal_file`` holds the loaded file).
        max_proposals: at most this many boxes per image from the built-in search.
        **kw: ``FasterRCNN``'s arguments (its RPN ones are unused).
    """

    def __init__(
        self,
        num_classes: int = 90,
        in_chans: int = 3,
        proposals: str | ProposalFn | None = "selective_search",
        max_proposals: int = 2000,
        **kw: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, **kw)
        self.rpn = None  # no first stage to learn
        self.proposal_fn = proposal_source(proposals, max_proposals)
        self.proposal_file = None
        if isinstance(proposals, (str, Path)) and str(proposals).endswith(".json"):
            self.proposal_file = ProposalFile(proposals)

    def forward(
        self,
        images: torch.Tensor,
        targets: list[Target] | None = None,
        proposals: Sequence[torch.Tensor] | None = None,
    ) -> dict:
        """The box head on ``proposals`` (or the model's source's) -> Faster R-CNN's RoI outputs."""
        return self.forward_with_features(images, targets, proposals)[0]

    def forward_with_features(
        self,
        images: torch.Tensor,
        targets: list[Target] | None = None,
        proposals: Sequence[torch.Tensor] | None = None,
    ) -> tuple[dict, list[torch.Tensor]]:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        if proposals is None:
            if self.proposal_fn is None:
                raise ConfigError(
                    "Fast R-CNN: this model's proposals come from a file; pass "
                    "forward(images, proposals=model.proposal_file.for_images(names))"
                )
            proposals = self.proposal_fn(images)
        if len(proposals) != len(images):
            raise ConfigError(
                f"Fast R-CNN: {len(proposals)} proposal sets for {len(images)} images"
            )
        props = []
        for p in proposals:
            p = torch.as_tensor(p).to(images).reshape(-1, 4)
            p = clip_boxes(p, *size)
            props.append(p[((p[:, 2:] - p[:, :2]) >= 1e-3).all(1)])  # drop empty boxes
        feats = self.backbone(self.normalize(images))  # proposals came from the 0-1 images
        out: dict[str, Any] = {"image_size": size}
        self.roi_stage(feats, props, targets, out)
        return out, feats

    def first_stage_loss(self, outputs: dict, targets: list[Target]) -> dict[str, torch.Tensor]:
        """No RPN, no first-stage loss."""
        return {}


def _fastrcnn(depth: int, num_classes: int, in_chans: int, **kw: Any) -> FastRCNN:
    for k in ("rpn_pre_nms_top_n", "rpn_post_nms_top_n"):
        kw.pop(k, None)  # CPU_SIZES' RPN settings mean nothing here
    return FastRCNN(num_classes=num_classes, in_chans=in_chans, depth=depth, **kw)


@register_model(default_cfg=_CFG)
def fastrcnn_resnet50_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> FastRCNN:
    """Fast R-CNN, ResNet-50-FPN box head on external (default: selective-search) proposals."""
    return _fastrcnn(50, num_classes, in_chans, **kw)


@register_model(default_cfg=_CFG)
def fastrcnn_resnet18_fpn(num_classes: int = 90, in_chans: int = 3, **kw: Any) -> FastRCNN:
    """CPU-sized Fast R-CNN: ``fasterrcnn_resnet18_fpn``'s trunk and head sizes, no RPN."""
    return _fastrcnn(18, num_classes, in_chans, **{**CPU_SIZES, **kw})
