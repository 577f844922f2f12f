"""Training objective of the anchor-based YOLOs (v2, v4, v5): target building + box,
objectness and class losses, vectorized over the batch's gts.

Matching (``match``), for every gt and anchor of a level:

- ``ratio`` (YOLOv5): the anchor is a positive if ``max(w/pw, pw/w, h/ph, ph/h) < anchor_t``
  (4.0), at the gt centre's cell *and* its two nearest neighbour cells (left/right and
  up/down, whichever side of the cell centre the gt centre lies): three times the
  positives, which the ``v5`` box coding can reach (centre offsets in (-0.5, 1.5)).
- ``iou`` (YOLOv4's "multiple anchors for a single ground truth"): every anchor (over all
  levels) whose shape IoU with the gt exceeds ``iou_t`` (0.213), and always the best one;
  centre cell only.
- ``best`` (YOLOv2/v3): only the best-shaped anchor over all levels, centre cell only.

Losses (means, so the total is per image as the Detector contract asks):

- box: ``mean(1 - CIoU(decoded pred, gt))`` over positives (YOLOv4 and v5), or YOLOv2's
  ``sum (sigmoid(t_xy) - off)^2 + (t_wh - log(wh / p))^2`` weighted by ``2 - w h / (W H)``
  per image (``box_loss="sse"``);
- obj: BCE(obj logit, target) over every cell and anchor, target = IoU(pred, gt) clamped at 0
  for positives (v5's and v2's "rescore"), 0 elsewhere; per level weighted by ``balance``
  (4, 1, 0.4 for strides 8/16/32). ``ignore_thr`` (YOLOv2: 0.6) drops the loss of
  background predictions already overlapping a gt that much;
- cls: BCE against one-hot (``label_smoothing`` eps: 1 - eps/2, eps/2) over positives, or
  cross-entropy for YOLOv2's softmax classifier; skipped with one class (sigmoid).

Gains: YOLOv5's, scaled as its train.py does: box 0.05 * 3/L, obj 1.0 * (imgsz/640)^2 * 3/L,
cls 0.5 * C/80 * 3/L. Unlike ultralytics the total is not multiplied by the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.losses.box import iou_loss
from cvcraft.models.detection.base import Target, valid_targets
from cvcraft.models.detection.yolo_grid_coder import cell_grid, grid_boxes
from cvcraft.ops.anchors import wh_iou
from cvcraft.ops.boxes import elementwise_iou, pairwise_iou

__all__ = ["MATCHES", "AnchorYoloLoss", "build_anchor_targets"]

MATCHES = ("ratio", "iou", "best")
BALANCE = {1: (1.0,), 3: (4.0, 1.0, 0.4), 4: (4.0, 1.0, 0.25, 0.06)}
# the 4 + 1 cells a v5 positive may sit in: centre, left, up, right, down (as (dx, dy))
_OFFSETS = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1))


def build_anchor_targets(
    targets: list[Target],
    level_anchors: Sequence[torch.Tensor],
    strides: Sequence[int],
    grid_sizes: Sequence[tuple[int, int]],
    match: str = "ratio",
    anchor_t: float = 4.0,
    iou_t: float = 0.213,
) -> list[dict[str, torch.Tensor]]:
    """The positives of each level (module docstring). ``level_anchors``: L tensors (A, 2)
    pixels. Returns per level ``img``, ``anchor``, ``gy``, ``gx`` (P,) indices into its
    (B, A, H, W) predictions, ``boxes`` (P, 4) xyxy pixels and ``labels`` (P,)."""
    if match not in MATCHES:
        raise ConfigError(f"anchor matching {match!r}; use one of {MATCHES}")
    dev = level_anchors[0].device
    boxes = torch.cat([t["boxes"].to(dev, torch.float32) for t in targets])  # (G, 4)
    labels = torch.cat([t["labels"].to(dev) for t in targets]).long()
    img = torch.repeat_interleave(
        torch.arange(len(targets), device=dev),
        torch.tensor([len(t["boxes"]) for t in targets], device=dev),
    )
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)  # (G, 2)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    a_all = torch.cat(list(level_anchors))  # (L*A, 2)
    na = len(level_anchors[0])
    if match != "ratio":
        shape_iou = wh_iou(wh, a_all).to(dev)  # (G, L*A)
        best = F.one_hot(shape_iou.argmax(1), len(a_all)).bool() if len(wh) else shape_iou > 2
        ok_all = best | (shape_iou > iou_t) if match == "iou" else best
    out = []
    for lvl, (anc, s, (h, w)) in enumerate(zip(level_anchors, strides, grid_sizes)):
        if match == "ratio":
            r = wh[:, None] / anc[None]  # (G, A, 2)
            ok = torch.max(r, 1 / r).amax(2) < anchor_t  # (G, A)
        else:
            ok = ok_all[:, lvl * na : (lvl + 1) * na]
        g, a = ok.nonzero(as_tuple=True)  # (P,) gt and anchor index
        gxy = centre[g] / s  # (P, 2) in cells
        offsets = [torch.zeros_like(gxy)]
        keep = [torch.ones_like(g, dtype=torch.bool)]
        if match == "ratio":  # the two neighbour cells nearest to the gt centre
            frac, inv = gxy % 1, torch.tensor([w, h], device=dev) - gxy
            for dx, dy in _OFFSETS[1:]:
                d = torch.tensor([dx, dy], device=dev, dtype=gxy.dtype)
                if dx + dy < 0:  # left / up: centre in the cell's first half, not at the edge
                    m = (frac < 0.5) & (gxy > 1)
                else:  # right / down
                    m = (frac > 0.5) & (inv > 1)
                keep.append(m[:, 0] if dx else m[:, 1])
                offsets.append(d.expand_as(gxy))
        g_all = torch.cat([g[k] for k in keep])
        cells = torch.cat([(gxy + o)[k] for o, k in zip(offsets, keep)]).floor().long()
        out.append({
            "img": img[g_all],
            "anchor": torch.cat([a[k] for k in keep]),
            "gx": cells[:, 0].clamp(0, w - 1),
            "gy": cells[:, 1].clamp(0, h - 1),
            "boxes": boxes[g_all],
            "labels": labels[g_all],
        })  # fmt: skip
    return out


class AnchorYoloLoss(nn.Module):
    """The loss in the module docstring; called with the raw outputs (L tensors (B, A, H, W,
    5 + C)), the targets, the per-level anchors, strides and centre scales."""

    def __init__(
        self,
        num_classes: int,
        param: str = "v5",
        match: str = "ratio",
        box_loss: str = "ciou",
        softmax: bool = False,
        anchor_t: float = 4.0,
        iou_t: float = 0.213,
        ignore_thr: float | None = None,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if match not in MATCHES:
            raise ConfigError(f"anchor matching {match!r}; use one of {MATCHES}")
        if box_loss not in ("ciou", "diou", "giou", "iou", "sse"):
            raise ConfigError(f"box_loss {box_loss!r}; use ciou, diou, giou, iou or sse")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes, self.param, self.match, self.box_loss = (
            num_classes, param, match, box_loss,
        )  # fmt: skip
        self.softmax, self.anchor_t, self.iou_t, self.ignore_thr = (
            softmax, anchor_t, iou_t, ignore_thr,
        )  # fmt: skip
        self.gains = (box_gain, obj_gain, cls_gain)
        self.label_smoothing = label_smoothing

    def forward(
        self,
        outputs: list[torch.Tensor],
        targets: list[Target],
        level_anchors: Sequence[torch.Tensor],
        strides: Sequence[int],
        scale_xy: Sequence[float],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        n, nl = outputs[0].shape[0], len(outputs)
        if len(targets) != n:
            raise ConfigError(f"YOLO loss got {len(targets)} targets for a batch of {n} images")
        targets = valid_targets(targets)
        c = self.num_classes
        for t in targets:
            if len(t["labels"]) and int(t["labels"].max()) >= c:
                raise ConfigError(
                    f"a target label is {int(t['labels'].max())} but the model has {c} classes; "
                    "set num_classes to the dataset's class count"
                )
        grids = [tuple(o.shape[2:4]) for o in outputs]
        img_h, img_w = grids[0][0] * strides[0], grids[0][1] * strides[0]
        asg_levels = build_anchor_targets(
            targets, level_anchors, strides, grids, self.match, self.anchor_t, self.iou_t
        )
        balance = BALANCE.get(nl, (1.0,) * nl)
        if self.ignore_thr is not None:
            gts = [t["boxes"].to(outputs[0]) for t in targets]
            pad = torch.nn.utils.rnn.pad_sequence(gts, True) if any(len(g) for g in gts) else None
        lbox = lobj = lcls = outputs[0].new_zeros(())
        for lvl, (out, asg) in enumerate(zip(outputs, asg_levels)):
            anc, s, k = level_anchors[lvl].to(out), strides[lvl], scale_xy[lvl]
            idx = (asg["img"], asg["anchor"], asg["gy"], asg["gx"])
            tobj = torch.zeros_like(out[..., 4])
            weight = torch.ones_like(tobj)
            if self.ignore_thr is not None and pad is not None:
                with torch.no_grad():  # background predictions already on a gt: no obj loss
                    b, a, h, w, _ = out.shape
                    cells = cell_grid(h, w, out)
                    pb = grid_boxes(out[..., :4], cells, anc.view(a, 1, 1, 2), s, self.param, k)
                    best = pairwise_iou(pb.view(b, -1, 4), pad).amax(-1).view_as(tobj)
                    weight[best > self.ignore_thr] = 0.0
                    weight[idx] = 1.0
            if len(asg["img"]):
                p = out[idx]  # (P, 5 + C)
                cells = torch.stack([asg["gx"], asg["gy"]], -1).to(p)
                pbox = grid_boxes(p[:, :4], cells, anc[asg["anchor"]], s, self.param, k)
                iou = elementwise_iou(pbox.detach(), asg["boxes"])  # (P,)
                if self.box_loss == "sse":
                    lbox = lbox + self._sse(p, asg, cells, anc, s, (img_h, img_w)) / n
                else:
                    lbox = lbox + iou_loss(pbox, asg["boxes"], self.box_loss, "mean")
                tobj[idx] = iou.clamp(min=0).to(tobj.dtype)
                if self.softmax:
                    lcls = lcls + F.cross_entropy(p[:, 5:], asg["labels"])
                elif c > 1:
                    t = F.one_hot(asg["labels"], c).to(p)
                    if self.label_smoothing:
                        t = t * (1 - self.label_smoothing) + self.label_smoothing / 2
                    lcls = lcls + F.binary_cross_entropy_with_logits(p[:, 5:], t)
            bce = F.binary_cross_entropy_with_logits(out[..., 4], tobj, reduction="none")
            lobj = lobj + (bce * weight).sum() / weight.sum().clamp(min=1) * balance[lvl]
        gb, go, gc = self.gains
        scale = 3 / nl
        parts = {
            "box": lbox * gb * scale,
            "obj": lobj * go * (max(img_h, img_w) / 640) ** 2 * scale,
            "cls": lcls * gc * (c / 80) * scale,
        }
        total = parts["box"] + parts["obj"] + parts["cls"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def _sse(self, p, asg, cells, anc, stride, size) -> torch.Tensor:
        """YOLOv2's coordinate loss: squared error on (sigmoid(t_xy), t_wh) against the
        in-cell offset and log size ratio, weighted by 2 - w h / (W H); summed."""
        box = asg["boxes"]
        centre, wh = (box[:, :2] + box[:, 2:]) / 2, (box[:, 2:] - box[:, :2])
        off = centre / stride - cells
        twh = torch.log(wh / anc[asg["anchor"]])
        err = (torch.sigmoid(p[:, :2]) - off) ** 2
        err = torch.cat([err, (p[:, 2:4] - twh) ** 2], 1).sum(1)  # (P,)
        scale = 2.0 - wh.prod(1) / (size[0] * size[1])
        return (err * scale).sum()
