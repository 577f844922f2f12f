"""Core data structures: the ``Sample`` every pipeline stage passes along, and box formats.

Inside the library boxes are float32 absolute-pixel ``xyxy``. The converters here are the
only place other formats (COCO ``xywh``, YOLO normalized ``cxcywh``) are translated, so a
reader or writer converts once, at the edge. Every converter accepts numpy arrays or torch
tensors of shape (..., 4) and returns the same type.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np


def _torch_tensor(x: Any) -> Any:
    """torch when ``x`` is a torch tensor, else None. A tensor means torch is loaded, so it
    is looked up, not imported: structures imports cheaply (data workers, check/convert)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


BoxArray = TypeVar("BoxArray")  # np.ndarray or torch.Tensor, shape (..., 4)

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _stack(arr: Any, cols: list[Any]) -> Any:
    if (torch := _torch_tensor(arr)) is not None:
        return torch.stack(cols, dim=-1)
    return np.stack(cols, axis=-1).astype(arr.dtype if arr.dtype.kind == "f" else np.float32)


def _unbind(arr: Any) -> list[Any]:
    if arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {tuple(arr.shape)}")
    return [arr[..., i] for i in range(4)]


def xyxy_to_xywh(boxes: BoxArray) -> BoxArray:
    """(x1, y1, x2, y2) -> (x, y, w, h) with (x, y) the top-left corner (COCO)."""
    x1, y1, x2, y2 = _unbind(boxes)
    return _stack(boxes, [x1, y1, x2 - x1, y2 - y1])


def xywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """(x, y, w, h) top-left + size (COCO) -> (x1, y1, x2, y2)."""
    x, y, w, h = _unbind(boxes)
    return _stack(boxes, [x, y, x + w, y + h])


def xyxy_to_cxcywh(boxes: BoxArray) -> BoxArray:
    """(x1, y1, x2, y2) -> (cx, cy, w, h) centre + size (YOLO, DETR)."""
    x1, y1, x2, y2 = _unbind(boxes)
    return _stack(boxes, [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def cxcywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """(cx, cy, w, h) centre + size -> (x1, y1, x2, y2)."""
    cx, cy, w, h = _unbind(boxes)
    return _stack(boxes, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def normalize_boxes(boxes: BoxArray, width: int, height: int) -> BoxArray:
    """Absolute pixels -> fractions of the image size (any of the three formats)."""
    x1, y1, x2, y2 = _unbind(boxes)
    return _stack(boxes, [x1 / width, y1 / height, x2 / width, y2 / height])


def denormalize_boxes(boxes: BoxArray, width: int, height: int) -> BoxArray:
    """Fractions of the image size -> absolute pixels (any of the three formats)."""
    x1, y1, x2, y2 = _unbind(boxes)
    return _stack(boxes, [x1 * width, y1 * height, x2 * width, y2 * height])


_TO_XYXY = {"xyxy": lambda b: b, "xywh": xywh_to_xyxy, "cxcywh": cxcywh_to_xyxy}
_FROM_XYXY = {"xyxy": lambda b: b, "xywh": xyxy_to_xywh, "cxcywh": xyxy_to_cxcywh}


def convert_boxes(
    boxes: BoxArray,
    src: str,
    dst: str,
    *,
    image_size: tuple[int, int] | None = None,
    src_normalized: bool = False,
    dst_normalized: bool = False,
) -> BoxArray:
    """Convert between ``xyxy``/``xywh``/``cxcywh``, optionally (de)normalized.

    ``image_size`` is (height, width) and is required when either side is normalized.
    Example: YOLO labels -> internal: ``convert_boxes(b, "cxcywh", "xyxy",
    image_size=(h, w), src_normalized=True)``.
    """
    for fmt in (src, dst):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; use one of {BOX_FORMATS}")
    if (src_normalized or dst_normalized) and image_size is None:
        raise ValueError("image_size=(height, width) is required for normalized boxes")
    if src_normalized:
        boxes = denormalize_boxes(boxes, image_size[1], image_size[0])  # type: ignore[index]
    out = _FROM_XYXY[dst](_TO_XYXY[src](boxes))
    if dst_normalized:
        out = normalize_boxes(out, image_size[1], image_size[0])  # type: ignore[index]
    return out


def box_area(boxes: BoxArray) -> BoxArray:
    """Area of xyxy boxes, (..., 4) -> (...); negative extents count as zero."""
    x1, y1, x2, y2 = _unbind(boxes)
    if _torch_tensor(boxes) is not None:
        return (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)


def clip_boxes(boxes: BoxArray, height: int, width: int) -> BoxArray:
    """Clip xyxy boxes to the image [0, width] x [0, height]."""
    x1, y1, x2, y2 = _unbind(boxes)
    if (torch := _torch_tensor(boxes)) is not None:
        return torch.stack(
            [x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], -1
        )
    return _stack(
        boxes,
        [
            np.clip(x1, 0, width),
            np.clip(y1, 0, height),
            np.clip(x2, 0, width),
            np.clip(y2, 0, height),
        ],
    )


# Extra targets a Sample may carry beyond its fixed fields (``Sample.extras``), by name, and
# how transforms treat each kind: "image" (warped like the image: a paired infrared image),
# "mask" (warped with nearest, fill 255: a second label map), "points" ((N, K, 3) moved like
# keypoints), "label" (unchanged by geometry: multi-hot labels, identity ids). A task
# registers the extras it uses; an unregistered extra is refused by the transforms rather
# than silently left behind.
TARGET_KINDS: dict[str, str] = {}
KINDS = ("image", "mask", "points", "label")


def register_target(name: str, kind: str) -> None:
    """Declare that ``Sample.extras[name]`` is a target of ``kind`` (see ``TARGET_KINDS``)."""
    if kind not in KINDS:
        raise ValueError(f"target kind {kind!r} unknown; use one of {KINDS}")
    if TARGET_KINDS.get(name, kind) != kind:
        raise ValueError(f"target {name!r} is already a {TARGET_KINDS[name]} target")
    TARGET_KINDS[name] = kind


def target_kind(name: str) -> str:
    """The registered kind of extra target ``name``; ValueError if it was never registered."""
    if name not in TARGET_KINDS:
        raise ValueError(
            f"Sample.extras[{name!r}] is not a registered target; call "
            f"cvcraft.structures.register_target({name!r}, kind) with kind in {KINDS}"
        )
    return TARGET_KINDS[name]


@dataclass
class Sample:
    """One image and all its targets, as the CPU data pipeline carries them.

    - ``image``: uint8 (H, W, 3) RGB (float32 accepted by transforms that say so).
    - ``label``: class index for classification (``None`` otherwise).
    - ``boxes``: float32 (N, 4) absolute xyxy; ``box_labels``: int64 (N,).
    - ``masks``: bool (N, H, W) instance masks aligned with ``boxes``.
    - ``semantic_mask``: uint8 (H, W) class index, 255 = ignore.
    - ``keypoints``: float32 (N, K, 3) as (x, y, visibility).
    - ``meta``: free-form: ``path``, ``orig_size`` (h, w), ``image_id``, ``index``, ...
    - ``extras``: further targets by registered name (``register_target``): a paired second
      image, multi-hot labels, identity ids, ... Geometric transforms move them by kind.

    Transforms return a new Sample (``Sample.replace``) rather than mutating their input, so
    a cached image is never changed in place.
    """

    image: np.ndarray
    label: int | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    semantic_mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.image, np.ndarray) or self.image.ndim != 3:
            shape = getattr(self.image, "shape", None)
            raise ValueError(f"Sample.image must be an (H, W, C) numpy array, got shape {shape}")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
            n = len(self.boxes)
            if self.box_labels is None:
                self.box_labels = np.zeros(n, dtype=np.int64)
            self.box_labels = np.asarray(self.box_labels, dtype=np.int64).reshape(-1)
            if len(self.box_labels) != n:
                raise ValueError(f"{n} boxes but {len(self.box_labels)} box_labels")
            if self.masks is not None and len(self.masks) != n:
                raise ValueError(f"{n} boxes but {len(self.masks)} instance masks")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def replace(self, **changes: Any) -> Sample:
        """A copy with some fields replaced (meta and extras are copied, not shared)."""
        changes.setdefault("meta", dict(self.meta))
        changes.setdefault("extras", dict(self.extras))
        return replace(self, **changes)
