"""Copy-Paste for instance segmentation (Ghiasi et al. 2021, "Simple Copy-Paste").

Objects of a second image are pasted, pixels and masks, onto the first: out = src where the
union of the chosen source masks is set, else dst. Pasted objects lie on top, so every
existing mask loses the pasted pixels (m_i &= ~union); an existing object's box is then
recomputed as the tight box of what remains of its mask (untouched objects keep their
box), and objects with nothing (or less
than ``min_area`` pixels) left are dropped. The source is resized to the destination's size
(aspect not kept, as the paper's scale jitter is left to the geometric transforms around
it) and optionally mirrored, so the same image can also paste onto itself.
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


class CopyPaste(MultiSampleTransform):
    """Paste a random subset of sample 1's objects onto sample 0 (see the module doc).

    ``object_prob``: each source object is chosen independently with this probability.
    ``flip``: probability the source is mirrored left-right before pasting. Both samples need
    instance masks aligned with their boxes. ``meta["copy_paste"]`` lists the pasted source
    objects' indices. Semantic masks, when both have one, take the source's classes where
    pixels were pasted.
    """

    n_inputs = 2

    def __init__(
        self, object_prob: float = 0.5, flip: float = 0.5, min_area: float = 1.0, p: float = 1.0
    ) -> None:
        super().__init__(p)
        if not 0.0 <= object_prob <= 1.0 or not 0.0 <= flip <= 1.0 or min_area < 0:
            raise ConfigError(
                f"CopyPaste: need object_prob, flip in [0, 1] and min_area >= 0, got "
                f"{object_prob}, {flip}, {min_area}"
            )
        self.object_prob, self.flip, self.min_area = float(object_prob), float(flip), min_area

    def make_params(self, samples: Sequence[Sample], rng: np.random.Generator) -> Params:
        n_src = 0 if samples[1].boxes is None else len(samples[1].boxes)
        chosen = np.flatnonzero(rng.random(n_src) < self.object_prob)
        return {"chosen": chosen.tolist(), "flip": bool(rng.random() < self.flip)}

    def apply(self, samples: Sequence[Sample], params: Params) -> Sample:
        dst, src = samples
        for role, s in (("destination", dst), ("source", src)):
            if s.boxes is not None and s.masks is None:
                raise DataError(
                    f"CopyPaste: the {role} sample {s.meta.get('path', '')} has boxes but no "
                    "instance masks; load the dataset with masks (instance segmentation)"
                )
        h, w = dst.height, dst.width
        chosen = np.asarray(params["chosen"], dtype=np.int64)
        if len(chosen) == 0:
            out = dst.replace()
            out.meta["copy_paste"] = []
            return out
        src_masks = np.asarray(src.masks, bool)[chosen]  # (M, h_s, w_s)
        src_image, src_sem = src.image, src.semantic_mask
        if (src.height, src.width) != (h, w):
            src_masks = F.resize_masks(src_masks, (h, w))
            src_image = F.resize_image(src_image, (h, w))
            if src_sem is not None:
                src_sem = F.resize_image(src_sem[..., None], (h, w), "nearest")[..., 0]
        if params["flip"]:
            src_masks = F.hflip_masks(src_masks)
            src_image = F.hflip_image(src_image)
            src_sem = None if src_sem is None else F.hflip_image(src_sem)
        # the pasted masks themselves: later pasted objects occlude earlier ones too
        later = np.logical_or.accumulate(src_masks[::-1], axis=0)[::-1]  # (M, H, W)
        covered = np.concatenate([later[1:], np.zeros((1, h, w), bool)])
        pasted = src_masks & ~covered
        union = later[0]  # (H, W)

        image = np.where(union[..., None], src_image, dst.image)
        old_masks = np.zeros((0, h, w), bool) if dst.masks is None else np.asarray(dst.masks, bool)
        touched = (old_masks & union).any((1, 2))  # (N,) objects that lost pixels
        old_masks = old_masks & ~union
        masks = np.concatenate([old_masks, pasted])
        boxes = np.concatenate([
            np.zeros((0, 4), np.float32) if dst.boxes is None else dst.boxes,
            np.zeros((len(pasted), 4), np.float32),
        ])  # fmt: skip
        # only occluded and pasted objects get mask-derived boxes; the others keep theirs
        redo = np.concatenate([touched, np.ones(len(pasted), bool)])
        boxes[redo] = masks_to_boxes(masks[redo])
        labels = np.concatenate([
            np.zeros(0, np.int64) if dst.box_labels is None else dst.box_labels,
            src.box_labels[chosen],
        ])  # fmt: skip
        keep = masks.sum((1, 2)) >= max(self.min_area, 1)  # fully occluded objects go
        changes: dict[str, Any] = {
            "image": image,
            "masks": masks[keep],
            "boxes": boxes[keep],
            "box_labels": labels[keep],
        }
        if dst.semantic_mask is not None and src_sem is not None:
            changes["semantic_mask"] = np.where(union, src_sem, dst.semantic_mask)
        if dst.keypoints is not None:  # only the destination has them: drop the gone objects
            changes["keypoints"] = None
        out = dst.replace(**changes)
        out.meta["copy_paste"] = chosen.tolist()
        return out


MULTI_SAMPLE.register("copy_paste", CopyPaste)
