"""Box coding of the anchor-based YOLO grids (YOLOv2/v3, v4, v5).

Each level l (stride s) predicts, per cell (cx, cy) and each of its A anchors (pw, ph)
pixels, ``(tx, ty, tw, th, objectness, C class logits)``. Box parameterisations
(``BOX_PARAMS``), centre in pixels and size:

- ``v2`` (YOLOv2/v3): ``((sigmoid(t_xy) + c) s, p exp(t_wh))``: the centre stays in its cell.
- ``v4`` (YOLOv4's "eliminate grid sensitivity"): ``((k sigmoid(t_xy) - (k - 1)/2 + c) s,
  p exp(t_wh))`` with k = ``scale_xy`` > 1 per level (1.2, 1.1, 1.05), so a centre on a cell
  border is reachable without an infinite logit.
- ``v5`` (YOLOv5): ``((2 sigmoid(t_xy) - 0.5 + c) s, p (2 sigmoid(t_wh))^2)``: the centre
  may fall half a cell outside (so neighbour cells can be positives) and the size is bounded
  at 4 p, which keeps early training stable (no exp overflow).
"""

from __future__ import annotations

import torch

from cvcraft.errors import ConfigError

__all__ = ["BOX_PARAMS", "MAX_EXP", "cell_grid", "grid_boxes"]

BOX_PARAMS = ("v2", "v4", "v5")
MAX_EXP = 8.0  # exp(t_wh) is clamped here (about 3000x the anchor): no overflow early on


def grid_boxes(
    t: torch.Tensor,
    cells: torch.Tensor,
    anchors: torch.Tensor,
    stride: float,
    param: str = "v5",
    scale_xy: float = 1.0,
) -> torch.Tensor:
    """Raw ``(tx, ty, tw, th)`` -> xyxy pixels under parameterisation ``param`` (module doc).

    ``t`` (..., 4), ``cells`` (..., 2) as (cx, cy), ``anchors`` (..., 2) pixels, all
    broadcastable -> (..., 4).
    """
    sig = torch.sigmoid(t)
    if param == "v5":
        xy = (2 * sig[..., :2] - 0.5 + cells) * stride
        wh = (2 * sig[..., 2:]) ** 2 * anchors
    elif param in ("v2", "v4"):
        k = scale_xy if param == "v4" else 1.0
        xy = (k * sig[..., :2] - (k - 1) / 2 + cells) * stride
        twh = t[..., 2:]
        # clamp the value (no overflow) but pass the gradient straight through, so a size
        # that overshot still gets pulled back instead of sitting at a zero-gradient clamp
        twh = twh - (twh - twh.clamp(max=MAX_EXP)).detach()
        wh = torch.exp(twh) * anchors
    else:
        raise ConfigError(f"box parameterisation {param!r}; use one of {BOX_PARAMS}")
    return torch.cat([xy - wh / 2, xy + wh / 2], -1)


def cell_grid(h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) cell indices (cx, cy), in ``ref``'s dtype and device."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=ref.device, dtype=ref.dtype),
        torch.arange(w, device=ref.device, dtype=ref.dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys], -1)
