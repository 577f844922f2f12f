"""Box coders: turn a box into the regression target a detector head predicts, and back.

Regressing offsets relative to a prior (anchor / grid cell) instead of raw coordinates keeps
targets small and scale-invariant. Two parameterisations:

- ``DeltaCoder`` -- R-CNN deltas (Girshick et al. 2014; Faster R-CNN): centre offset over
  prior size and log size ratio, scaled by per-coordinate weights. Same numbers as
  torchvision's ``BoxCoder``.
- ``YoloGridCoder`` -- YOLOv2/v3: centre = cell + sigmoid(t), size = anchor * exp(t), so a
  prediction can't leave its cell.

All boxes are absolute-pixel xyxy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cvcraft.errors import ConfigError

__all__ = ["DeltaCoder", "YoloGridCoder"]


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def _xyxy(cx: torch.Tensor, cy: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class DeltaCoder:
    """Faster R-CNN box deltas relative to a prior box.

    ``encode``: ``dx = wx (gx - px) / pw``, ``dy = wy (gy - py) / ph``, ``dw = ww log(gw / pw)``,
    ``dh = wh log(gh / ph)`` with (x, y) box centres. The weights (10, 10, 5, 5) scale targets
    to roughly unit variance. ``decode`` inverts it, clamping ``dw, dh`` at ``clamp`` so
    ``exp`` can't overflow on a bad prediction.
    """

    def __init__(
        self,
        weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        clamp: float = math.log(1000.0 / 16),
    ) -> None:
        if len(weights) != 4:
            raise ConfigError(f"DeltaCoder: weights needs 4 values (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def encode(self, boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Targets for ``boxes`` relative to ``priors``: (..., 4), (..., 4) -> (..., 4)."""
        gx, gy, gw, gh = _centre_size(boxes)
        px, py, pw, ph = _centre_size(priors.to(boxes.dtype))
        wx, wy, ww, wh = self.weights
        return torch.stack(
            [
                wx * (gx - px) / pw,
                wy * (gy - py) / ph,
                ww * torch.log(gw / pw),
                wh * torch.log(gh / ph),
            ],
            dim=-1,
        )

    def decode(self, deltas: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Boxes from deltas: (..., 4*C), priors (..., 4) -> (..., 4*C) xyxy.

        ``C > 1`` is the class-specific regression of Fast R-CNN (one box per class); every
        group of 4 is decoded against the same prior.
        """
        d = deltas.unflatten(-1, (-1, 4))  # (..., C, 4)
        px, py, pw, ph = (t.unsqueeze(-1) for t in _centre_size(priors.to(deltas.dtype)))
        wx, wy, ww, wh = self.weights
        cx = d[..., 0] / wx * pw + px
        cy = d[..., 1] / wy * ph + py
        w = torch.exp((d[..., 2] / ww).clamp(max=self.clamp)) * pw
        h = torch.exp((d[..., 3] / wh).clamp(max=self.clamp)) * ph
        return _xyxy(cx, cy, w, h).flatten(-2)


class YoloGridCoder:
    """YOLOv2/v3 grid parameterisation for one feature level.

    A prediction ``(tx, ty, tw, th)`` at cell (cx, cy) with anchor (pw, ph) (pixels) and
    ``stride`` decodes to centre ``((sigmoid(tx) + cx) * stride, (sigmoid(ty) + cy) * stride)``
    and size ``(pw * exp(tw), ph * exp(th))``. ``encode`` is the exact inverse (logit of the
    in-cell offset, log of the size ratio); the offset is clamped to ``[eps, 1 - eps]`` because
    a centre exactly on a cell border has an infinite logit.

    ``anchors``: (A, 2) (w, h) in pixels.
    """

    def __init__(
        self, anchors: torch.Tensor | Sequence[Sequence[float]], stride: float, eps: float = 1e-6
    ) -> None:
        self.anchors = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 2)
        if stride <= 0:
            raise ConfigError(f"YoloGridCoder: stride must be positive, got {stride}")
        self.stride = float(stride)
        self.eps = eps

    def cells(self, boxes: torch.Tensor) -> torch.Tensor:
        """Grid cell (cx, cy) holding each box centre: (K, 4) -> (K, 2) int64."""
        gx, gy, _, _ = _centre_size(boxes)
        return torch.stack([gx, gy], -1).div(self.stride).floor().long()

    def encode(
        self,
        boxes: torch.Tensor,
        anchor_index: torch.Tensor,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Targets (tx, ty, tw, th) for gt ``boxes`` (K, 4) with chosen anchors (K,) -> (K, 4).

        ``cells`` (K, 2) as (cx, cy) defaults to the cell containing each box centre.
        """
        if cells is None:
            cells = self.cells(boxes)
        gx, gy, gw, gh = _centre_size(boxes)
        anchors = self.anchors.to(boxes)[anchor_index]  # (K, 2)
        off = torch.stack([gx, gy], -1) / self.stride - cells.to(boxes.dtype)  # in-cell, (K, 2)
        txy = torch.logit(off.clamp(self.eps, 1 - self.eps))
        twh = torch.log(torch.stack([gw, gh], -1) / anchors)
        return torch.cat([txy, twh], -1)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw head outputs (B, A, H, W, 4) -> xyxy pixel boxes (B, A, H, W, 4)."""
        if raw.shape[1] != len(self.anchors) or raw.shape[-1] != 4:
            raise ConfigError(
                f"YoloGridCoder.decode: expected (B, {len(self.anchors)}, H, W, 4), "
                f"got {tuple(raw.shape)}"
            )
        h, w = raw.shape[2], raw.shape[3]
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=raw.dtype, device=raw.device),
            torch.arange(w, dtype=raw.dtype, device=raw.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], -1)  # (H, W, 2) as (cx, cy)
        anchors = self.anchors.to(raw).reshape(1, -1, 1, 1, 2)  # (1, A, 1, 1, 2)
        centre = (torch.sigmoid(raw[..., :2]) + grid) * self.stride
        size = torch.exp(raw[..., 2:]) * anchors
        return _xyxy(centre[..., 0], centre[..., 1], size[..., 0], size[..., 1])
