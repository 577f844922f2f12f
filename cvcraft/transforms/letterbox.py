"""Letterbox: resize keeping the aspect ratio, then pad to the network's input size (YOLO).

Detection models want a fixed (or stride-multiple) input without distorting objects, so the
image is scaled by r = min(H'/H, W'/W) and the rest is padded with grey. The scale and
padding are written to ``sample.meta["letterbox"]`` so predictions made on the letterboxed
image map back to the original with ``unletterbox_boxes``. Registered: ``letterbox``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.base import TRANSFORMS, GeometricTransform, Params
from cvcraft.transforms.geometric import Size, _pair


def letterbox_params(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    *,
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
    center: bool = True,
) -> dict[str, Any]:
    """Scale and padding that letterbox an (h, w) image into ``out_size=(H', W')``.

    r = min(H'/h, W'/w) (capped at 1 without ``scaleup``); the resized image is
    (round(h r), round(w r)). ``auto`` keeps only the padding needed to reach a multiple of
    ``stride`` (YOLOv5's minimal rectangle for inference) instead of the full (H', W').
    Returns ``scale`` = (sx, sy) actually applied (rounding makes them differ slightly),
    ``pad`` = (left, top, right, bottom), ``resized`` = (h, w), ``orig_size`` = (h, w) and the
    final ``size``.
    """
    h, w = in_size
    r = min(out_size[0] / h, out_size[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    ph, pw = out_size[0] - nh, out_size[1] - nw
    if auto:
        ph, pw = ph % stride, pw % stride
    top, left = (ph // 2, pw // 2) if center else (0, 0)
    return {
        "scale": (nw / w, nh / h),
        "pad": (left, top, pw - left, ph - top),
        "resized": (nh, nw),
        "orig_size": (h, w),
        "size": (nh + ph, nw + pw),
    }


@TRANSFORMS.register("letterbox")
class Letterbox(GeometricTransform):
    """Aspect-preserving resize + pad to ``size`` (see ``letterbox_params``), fill 114 grey.

    Records ``meta["letterbox"] = {"scale", "pad", "orig_size", ...}`` for
    ``unletterbox_boxes``. Boxes, masks and keypoints follow; nothing is dropped.
    """

    can_drop_boxes = False

    def __init__(
        self,
        size: Size = 640,
        auto: bool = False,
        stride: int = 32,
        scaleup: bool = True,
        center: bool = True,
        fill: F.Fill = 114,
        interpolation: str = "auto",
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        if stride <= 0:
            raise ConfigError(f"Letterbox: stride must be > 0, got {stride}")
        self.size = _pair(size, "Letterbox")
        self.auto, self.stride, self.scaleup, self.center = auto, int(stride), scaleup, center
        self.fill, self.interpolation = fill, interpolation

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        return letterbox_params(
            (sample.height, sample.width),
            self.size,
            auto=self.auto,
            stride=self.stride,
            scaleup=self.scaleup,
            center=self.center,
        )

    def raster(self, x, params, *, interpolation, fill):
        left, top, right, bottom = params["pad"]
        out = F.resize_image(x, params["resized"], interpolation)
        if left or top or right or bottom:
            out = F.pad_image(out, (top, bottom, left, right), fill)
        return out

    def points(self, xy, params, in_size):
        sx, sy = params["scale"]
        left, top = params["pad"][:2]
        return np.asarray(xy, dtype=np.float64) * [sx, sy] + [left, top]

    def apply(self, sample: Sample, params: Params) -> Sample:
        out = super().apply(sample, params)
        out.meta["letterbox"] = {k: params[k] for k in ("scale", "pad", "orig_size")}
        return out


def unletterbox_boxes(boxes: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Map xyxy boxes (N, 4) predicted on a letterboxed image back to the original image.

    x = (x' - left) / sx, y = (y' - top) / sy, then clipped to the original (h, w). ``meta``
    is the sample's meta (holding ``"letterbox"``) or that dict itself. Works on numpy
    arrays and torch tensors alike.
    """
    lb = meta.get("letterbox", meta)
    try:
        sx, sy = lb["scale"]
        left, top = lb["pad"][:2]
        h, w = lb["orig_size"]
    except KeyError as e:
        raise ConfigError(
            f"unletterbox_boxes: meta has no letterbox {e.args[0]!r}; pass the meta of a "
            "sample that went through Letterbox"
        ) from None
    x1 = ((boxes[..., 0] - left) / sx).clip(0, w)
    y1 = ((boxes[..., 1] - top) / sy).clip(0, h)
    x2 = ((boxes[..., 2] - left) / sx).clip(0, w)
    y2 = ((boxes[..., 3] - top) / sy).clip(0, h)
    if isinstance(boxes, np.ndarray):
        return np.stack([x1, y1, x2, y2], -1).astype(boxes.dtype, copy=False)
    import torch

    return torch.stack([x1, y1, x2, y2], -1)


def unletterbox_masks(masks: Any, meta: Mapping[str, Any]) -> Any:
    """Map (N, H', W') mask probabilities (a torch tensor) predicted on a letterboxed image
    back to the original (N, h, w): the padding is cut off and the rest resized bilinearly
    (``align_corners=False``), the inverse of the letterbox's resize for the pixel grid."""
    import torch.nn.functional as F

    lb = meta.get("letterbox", meta)
    left, top, right, bottom = lb["pad"]
    h, w = lb["orig_size"]
    hh, ww = masks.shape[-2:]
    inner = masks[:, top : hh - bottom, left : ww - right]
    if len(inner) == 0:
        return masks.new_zeros((0, h, w))
    if tuple(inner.shape[-2:]) == (h, w):
        return inner
    return F.interpolate(inner[None].float(), size=(int(h), int(w)), mode="bilinear")[0]
