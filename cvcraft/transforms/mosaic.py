"""Multi-sample augmentations for detection/segmentation: Mosaic (4 or 9 images) and MixUp.

Both are ``MultiSampleTransform``s (``transforms/multi_sample.py``): ``n_inputs`` Samples in,
one out, partners drawn from the item's own generator.

Mosaic (YOLOv4/v5) layout chosen here: the s x s output is cut into a g x g grid (g = 2 for
n = 4, g = 3 for n = 9) by cut lines drawn at ``s * (k + u) / g``, u ~ U(-j, j) with
``j = center_jitter`` (default 0.5 for 4 images: the centre anywhere in the middle half;
0.25 for 9). Each input is resized (keeping its aspect) so its long side is
``image_scale * s`` (default 2s/g: s for 4 images, as YOLOv5 loads them) and anchored in its
cell towards the grid's interior: a 2x2 mosaic puts the four images' inner corners at the
random centre. That is YOLOv5's 2s x 2s canvas seen through the middle s x s window its
affine step crops, so the output is already s x s (follow it with a plain RandomAffine, no
border crop); jitter 0.5 keeps the centre in the middle half so no image is a sliver.
Pixels a cell's image does not cover are ``fill`` (114 grey); the semantic mask there is
255 (ignore), because grey padding is neither background nor any class.
Boxes are moved by the placement, clipped to their cell and filtered with
``functional.filter_boxes`` (``min_area``, ``min_visibility``); instance masks are resized
(nearest), cropped to the cell and dropped together with their boxes. With instance masks,
each kept box is the tight box of its placed mask (an object with no visible pixel left is
dropped): a clipped object's visible part can be smaller than its clipped box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.multi_sample import MULTI_SAMPLE, MultiSampleTransform, Params


def _carried(samples: Sequence[Sample], attr: str) -> bool:
    """Whether every sample has ``attr`` (True), none has (False); a mix is an error."""
    have = [getattr(s, attr) is not None for s in samples]
    if any(have) and not all(have):
        missing = [s.meta.get("path", s.meta.get("index", i)) for i, s in enumerate(samples)
                   if getattr(s, attr) is None]  # fmt: skip
        raise DataError(
            f"some samples have {attr} and some do not (missing in {missing}); a multi-sample "
            f"transform needs {attr} on all of them or none"
        )
    return all(have)


class Mosaic(MultiSampleTransform):
    """Tile ``n`` (4 or 9) samples into one ``size`` x ``size`` sample (layout: module doc).

    ``meta["mosaic"]`` records each input's placement: ``scale`` (sy, sx), ``offset``
    (ox, oy) of its resized image on the canvas and its ``cell`` (x0, y0, x1, y1), so a box
    b of input k lands at ``clip(b * (sx, sy, sx, sy) + (ox, oy, ox, oy), cell)``.
    """

    def __init__(
        self,
        size: int,
        n: int = 4,
        fill: F.Fill = 114,
        *,
        center_jitter: float | None = None,
        image_scale: float | None = None,
        interpolation: str = "linear",
        min_area: float = 1.0,
        min_visibility: float = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        if n not in (4, 9):
            raise ConfigError(f"Mosaic: n must be 4 or 9, got {n}")
        if center_jitter is None:  # 9 images: keep the middle column/row at least s/6 wide
            center_jitter = 0.5 if n == 4 else 0.25
        if size < 2 or not 0.0 <= center_jitter <= 0.5:
            raise ConfigError(
                f"Mosaic: need size >= 2 and 0 <= center_jitter <= 0.5, got {size}, {center_jitter}"
            )
        self.size, self.n, self.fill = int(size), int(n), fill
        self.grid = 2 if n == 4 else 3
        self.center_jitter = float(center_jitter)
        self.image_scale = 2.0 / self.grid if image_scale is None else float(image_scale)
        if self.image_scale <= 0:
            raise ConfigError(f"Mosaic: image_scale must be > 0, got {image_scale}")
        self.interpolation = interpolation
        self.min_area, self.min_visibility = float(min_area), float(min_visibility)

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        return self.n

    def make_params(self, samples: Sequence[Sample], rng: np.random.Generator) -> Params:
        g, s, j = self.grid, self.size, self.center_jitter
        k = np.arange(1, g)
        cuts = s * (k[None, :] + rng.uniform(-j, j, size=(2, g - 1))) / g  # (2, g-1): x, y
        cuts = np.round(cuts).astype(int).clip(1, s - 1)
        return {"cuts_x": [0, *cuts[0].tolist(), s], "cuts_y": [0, *cuts[1].tolist(), s]}

    def _anchor(self, i: int, lo: int, hi: int, extent: int) -> int:
        """Offset of an image of ``extent`` px in cell [lo, hi), pushed toward the interior."""
        if i == 0:
            return hi - extent  # first row/column: touch the inner edge
        if i == self.grid - 1:
            return lo
        return (lo + hi - extent) // 2

    def apply(self, samples: Sequence[Sample], params: Params) -> Sample:
        s, g = self.size, self.grid
        xs, ys = params["cuts_x"], params["cuts_y"]
        has_masks = _carried(samples, "masks")
        has_sem = _carried(samples, "semantic_mask")
        has_kp = _carried(samples, "keypoints")
        has_boxes = any(x.boxes is not None for x in samples)
        channels = samples[0].image.shape[2]
        canvas = np.empty((s, s, channels), dtype=samples[0].image.dtype)
        canvas[...] = np.broadcast_to(np.asarray(self.fill, dtype=np.float64), (channels,))
        semantic = np.full((s, s), 255, dtype=np.uint8) if has_sem else None
        boxes, labels, masks, kps, placements = [], [], [], [], []
        for k, smp in enumerate(samples):
            row, col = divmod(k, g)
            x0, x1, y0, y1 = xs[col], xs[col + 1], ys[row], ys[row + 1]
            ch, cw = y1 - y0, x1 - x0
            h, w = smp.height, smp.width
            r = self.image_scale * s / max(h, w)
            nh, nw = max(1, round(h * r)), max(1, round(w * r))
            ox, oy = self._anchor(col, x0, x1, nw), self._anchor(row, y0, y1, nh)
            top, left = y0 - oy, x0 - ox  # the cell's window in resized-image pixels
            img = F.resize_image(smp.image, (nh, nw), self.interpolation)
            canvas[y0:y1, x0:x1] = F.crop_image(img, top, left, ch, cw, self.fill)
            placements.append({
                "index": smp.meta.get("index"),
                "scale": (nh / h, nw / w),
                "offset": (ox, oy),
                "cell": (x0, y0, x1, y1),
            })  # fmt: skip
            if has_sem:
                sem = F.resize_image(smp.semantic_mask[..., None], (nh, nw), "nearest")
                semantic[y0:y1, x0:x1] = F.crop_image(sem, top, left, ch, cw, 255)[..., 0]

            def to_cell(xy: np.ndarray, h=h, w=w, nh=nh, nw=nw, top=top, left=left) -> np.ndarray:
                return F.crop_points(F.resize_points(xy, (h, w), (nh, nw)), top, left)

            keep, m = None, None
            if has_masks:  # (N, ch, cw): the part of each resized mask inside the cell
                m = F.resize_masks(np.asarray(smp.masks, bool), (nh, nw))
                m = F.crop_masks(m, top, left, ch, cw)
            if has_boxes:
                b = np.zeros((0, 4), np.float32) if smp.boxes is None else smp.boxes
                lab = np.zeros(0, np.int64) if smp.box_labels is None else smp.box_labels
                clipped, keep = F.filter_boxes(
                    F.map_boxes(b, to_cell),
                    (ch, cw),
                    min_area=self.min_area,
                    min_visibility=self.min_visibility,
                )
                if m is not None and len(m) == len(keep):
                    # the visible part of a clipped object can be smaller than its clipped
                    # box (a triangle's tip cut off), so boxes come from the placed masks
                    keep &= m.any((1, 2))
                    clipped = masks_to_boxes(m)
                boxes.append(clipped[keep] + np.array([x0, y0, x0, y0], np.float32))
                labels.append(lab[keep])
            if m is not None:
                m = m[keep] if keep is not None and len(keep) == len(m) else m
                full = np.zeros((len(m), s, s), dtype=bool)
                full[:, y0:y1, x0:x1] = m
                masks.append(full)
            if has_kp:
                kp = F.map_keypoints(smp.keypoints, to_cell, (ch, cw))
                if keep is not None and len(keep) == len(kp):
                    kp = kp[keep]
                kp[..., 0] += x0
                kp[..., 1] += y0
                kps.append(kp)
        meta = dict(samples[0].meta)
        meta["mosaic"] = placements
        return Sample(
            image=canvas,
            boxes=np.concatenate(boxes) if has_boxes else None,
            box_labels=np.concatenate(labels) if has_boxes else None,
            masks=np.concatenate(masks) if has_masks else None,
            semantic_mask=semantic,
            keypoints=np.concatenate(kps) if has_kp else None,
            meta=meta,
        )


def fit_into(sample: Sample, height: int, width: int, fill: F.Fill = 114) -> Sample:
    """Resize (keeping aspect) to fit ``height`` x ``width``, placed top-left, padded with
    ``fill`` (instance masks False, semantic 255); boxes/keypoints scaled alike."""
    h, w = sample.height, sample.width
    if (h, w) == (height, width):
        return sample
    r = min(height / h, width / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))

    def pts(xy: np.ndarray) -> np.ndarray:
        return F.resize_points(xy, (h, w), (nh, nw))

    image = F.crop_image(F.resize_image(sample.image, (nh, nw)), 0, 0, height, width, fill)
    changes: dict[str, Any] = {"image": image}
    if sample.boxes is not None:
        changes["boxes"] = F.map_boxes(sample.boxes, pts)
    if sample.masks is not None:
        m = F.resize_masks(np.asarray(sample.masks, bool), (nh, nw))
        changes["masks"] = F.crop_masks(m, 0, 0, height, width)
    if sample.semantic_mask is not None:
        sem = F.resize_image(sample.semantic_mask[..., None], (nh, nw), "nearest")
        changes["semantic_mask"] = F.crop_image(sem, 0, 0, height, width, 255)[..., 0]
    if sample.keypoints is not None:
        changes["keypoints"] = F.map_keypoints(sample.keypoints, pts, (height, width))
    return sample.replace(**changes)


class DetectionMixUp(MultiSampleTransform):
    """MixUp for detection (Zhang et al. 2019, "Bag of Freebies"; as in YOLOv5/YOLOX).

    image = lam * a + (1 - lam) * b with lam ~ Beta(alpha, alpha) (alpha = 32 keeps lam near
    0.5); both images' boxes, labels, instance masks and keypoints are kept (objects stay
    whole targets, only their contrast halves). ``b`` is fitted into ``a``'s size first
    (``fit_into``). The semantic mask is dropped: a blended pixel has no single class.
    ``meta["mixup_lam"]`` records lam.
    """

    n_inputs = 2

    def __init__(self, alpha: float = 32.0, fill: F.Fill = 114, p: float = 1.0) -> None:
        super().__init__(p)
        if alpha <= 0:
            raise ConfigError(f"DetectionMixUp: alpha must be > 0, got {alpha}")
        self.alpha, self.fill = float(alpha), fill

    def make_params(self, samples: Sequence[Sample], rng: np.random.Generator) -> Params:
        return {"lam": float(rng.beta(self.alpha, self.alpha))}

    def apply(self, samples: Sequence[Sample], params: Params) -> Sample:
        a = samples[0]
        b = fit_into(samples[1], a.height, a.width, self.fill)
        lam = params["lam"]
        mixed = a.image.astype(np.float32) * lam + b.image.astype(np.float32) * (1.0 - lam)
        if a.image.dtype == np.uint8:
            mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        changes: dict[str, Any] = {"image": mixed, "semantic_mask": None, "label": None}
        if a.boxes is not None or b.boxes is not None:
            parts = [x for x in (a, b) if x.boxes is not None]
            changes["boxes"] = np.concatenate([x.boxes for x in parts])
            changes["box_labels"] = np.concatenate([x.box_labels for x in parts])
            if _carried(parts, "masks"):
                changes["masks"] = np.concatenate([np.asarray(x.masks, bool) for x in parts])
            if _carried(parts, "keypoints"):
                changes["keypoints"] = np.concatenate([x.keypoints for x in parts])
        out = a.replace(**changes)
        out.meta["mixup_lam"] = lam
        return out


MULTI_SAMPLE.register("mosaic", Mosaic)
MULTI_SAMPLE.register("mixup", DetectionMixUp)
