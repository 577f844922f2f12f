"""Collate driven by the Sample fields a task needs.

``Collate(fields, extras=(), pad=False)`` turns a list of Samples into a batch dict with one
entry per field: ``image`` -> ``images`` uint8 (N, C, H, W) (stacked; or padded bottom/right
to the largest with ``pad=True``), ``label`` -> ``labels`` int64 (N,) (-1 where None),
``boxes`` -> the boxes of all images packed as ``boxes`` float32 (M, 4), ``labels`` int64
(M,) and ``counts`` int64 (N,), ``masks`` (instance, with ``boxes``) -> ``instance_masks``
bool (M, H, W) packed in the same order as the boxes, ``semantic_mask`` -> ``masks`` int64
(N, H, W) (padding 255) and ``sizes`` (N, 2), ``meta`` -> the samples' meta dicts;
``index`` (N,) always. An extra target (``Sample.extras``) is collated by its registered
kind: images and masks stacked like the main ones, labels stacked as a tensor, points as a
list of (N_i, K, 3) tensors.

Images stay uint8 (a quarter of float32's bytes through worker pipes); conversion to float
and normalization happen on the device. Detection boxes are packed because a loader worker
hands every tensor to the main process as its own shared-memory file descriptor: two
tensors per image cost the detection demo ~6 % of its time; five per batch do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cvcraft.errors import DataError
from cvcraft.structures import Sample, target_kind

IGNORE_INDEX = 255
FIELDS = ("image", "label", "boxes", "masks", "semantic_mask", "meta")


def _same_size(samples: Sequence[Sample]) -> None:
    shape = samples[0].image.shape
    for s in samples:
        if s.image.shape != shape:
            raise DataError(
                f"images in a batch differ in size: {shape} ({samples[0].meta.get('path')}) vs "
                f"{s.image.shape} ({s.meta.get('path')}); add a resize/crop (or letterbox) "
                "transform so every image has the same size"
            )


def _stack_hwc(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W[, C]) arrays of one size -> (N, C, H, W), contiguous."""
    x = np.stack([a if a.ndim == 3 else a[..., None] for a in arrays])
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def _padded(arrays: Sequence[np.ndarray], fill: int, dtype: Any) -> np.ndarray:
    """Arrays (H_i, W_i, ...) -> (N, H, W, ...) padded bottom/right with ``fill``."""
    h = max(a.shape[0] for a in arrays)
    w = max(a.shape[1] for a in arrays)
    out = np.full((len(arrays), h, w, *arrays[0].shape[2:]), fill, dtype)
    for i, a in enumerate(arrays):  # one slice copy per array
        out[i, : a.shape[0], : a.shape[1]] = a
    return out


class Collate:
    """A picklable collate function for the given Sample ``fields`` and ``extras``."""

    def __init__(self, fields: Sequence[str], extras: Sequence[str] = (), *, pad: bool = False):
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"collate fields {unknown} unknown; use some of {FIELDS}")
        if "label" in fields and "boxes" in fields:
            raise ValueError("collate: 'label' and 'boxes' both fill 'labels'; pick one")
        self.fields, self.extras, self.pad = tuple(fields), tuple(extras), pad

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        if not samples:
            raise DataError("collate got an empty batch")
        out: dict[str, Any] = {}
        if "image" in self.fields:
            if self.pad:
                imgs = _padded([s.image for s in samples], 0, np.uint8)
                out["images"] = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
            else:
                _same_size(samples)
                out["images"] = _stack_hwc([s.image for s in samples])
        if "label" in self.fields:
            labels = [-1 if s.label is None else s.label for s in samples]
            out["labels"] = torch.tensor(labels, dtype=torch.int64)
        if "boxes" in self.fields:
            out.update(pack_boxes(samples))
        if "masks" in self.fields:
            out["instance_masks"] = pack_instance_masks(samples)
        if "semantic_mask" in self.fields:
            masks = [
                s.semantic_mask
                if s.semantic_mask is not None
                else np.full((s.height, s.width), IGNORE_INDEX, np.uint8)
                for s in samples
            ]
            out["masks"] = torch.from_numpy(_padded(masks, IGNORE_INDEX, np.uint8)).long()
            out["sizes"] = torch.tensor([[s.height, s.width] for s in samples], dtype=torch.int64)
        index = [s.meta.get("index", -1) for s in samples]
        out["index"] = torch.tensor(index, dtype=torch.int64)
        if "meta" in self.fields:
            out["meta"] = [s.meta for s in samples]
        for name in self.extras:
            out[name] = collate_extra(name, [s.extras.get(name) for s in samples])
        return out

    def __repr__(self) -> str:
        return f"Collate({self.fields}, extras={self.extras}, pad={self.pad})"


def pack_boxes(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Every image's boxes in one (M, 4) tensor, labels (M,), per-image counts (N,)."""
    boxes = [s.boxes if s.boxes is not None else np.zeros((0, 4), np.float32) for s in samples]
    labels = [s.box_labels if s.box_labels is not None else np.zeros(0, np.int64) for s in samples]
    return {
        "boxes": torch.from_numpy(np.concatenate(boxes).astype(np.float32).reshape(-1, 4)),
        "labels": torch.from_numpy(np.concatenate(labels).astype(np.int64)),
        "counts": torch.tensor([len(b) for b in boxes], dtype=torch.int64),
    }


def pack_instance_masks(samples: Sequence[Sample]) -> torch.Tensor:
    """Every image's instance masks in one bool (M, H, W), aligned with ``pack_boxes``'s
    boxes; a sample whose mask count differs from its box count is a DataError naming it."""
    _same_size(samples)
    h, w = samples[0].image.shape[:2]
    masks = []
    for s in samples:
        n = 0 if s.boxes is None else len(s.boxes)
        m = np.zeros((0, h, w), bool) if s.masks is None and n == 0 else s.masks
        if m is None or len(m) != n or np.asarray(m).shape[1:] != (h, w):
            shape = None if m is None else np.asarray(m).shape
            raise DataError(
                f"collate: {s.meta.get('path', 'a sample')} has {n} boxes but instance masks "
                f"of shape {shape}; every box needs one (H, W) = ({h}, {w}) mask (load the data "
                "with masks and keep them through every transform)"
            )
        masks.append(np.asarray(m, bool))
    return torch.from_numpy(np.concatenate(masks))


def collate_extra(name: str, values: list[Any]) -> Any:
    """One extra target of every sample in a batch, by its registered kind."""
    if any(v is None for v in values):
        raise DataError(f"collate: some samples of the batch have no extras[{name!r}]")
    kind = target_kind(name)
    if kind == "image":
        return _stack_hwc([np.asarray(v) for v in values])
    if kind == "mask":
        return torch.from_numpy(np.stack([np.asarray(v) for v in values])).long()
    if kind == "points":
        return [torch.as_tensor(np.asarray(v, dtype=np.float32)) for v in values]
    return torch.as_tensor(np.stack([np.asarray(v) for v in values]))


collate_classify = Collate(("image", "label"))
collate_detect = Collate(("image", "boxes", "meta"))
collate_segment = Collate(("image", "semantic_mask"), pad=True)
collate_instance = Collate(("image", "boxes", "masks", "meta"))
