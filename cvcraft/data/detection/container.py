"""``DetectionData``: the format-free detection dataset every reader returns and writer takes.

Boxes are float32 absolute-pixel ``xyxy`` (converted once, at the reader), labels are
contiguous class indices into ``classes``. What a format carries beyond that is kept so
writing back and evaluating lose nothing: COCO category ids and annotation ids, crowd
flags, polygons / RLE segments, VOC ``difficult`` / ``truncated``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvcraft.data.io import DEFAULT_MAX_PIXELS, read_image
from cvcraft.errors import DataError
from cvcraft.ops.masks import segment_to_mask
from cvcraft.structures import Sample


def _flags(values: Any, n: int) -> np.ndarray:
    return np.zeros(n, bool) if values is None else np.asarray(values, bool).reshape(n)


@dataclass
class DetectionImage:
    """One image's record: where it is, its size, and its N objects.

    - ``boxes`` float32 (N, 4) xyxy absolute; ``labels`` int64 (N,) indices into classes;
    - ``iscrowd`` / ``difficult`` / ``truncated`` bool (N,);
    - ``segments``: None, or per object a COCO segmentation (list of polygons
      ``[x1, y1, ...]`` in pixels, or an RLE dict ``{"size", "counts"}``) or None;
    - ``ann_ids`` int64 (N,): COCO annotation ids when read from COCO, else -1;
    - ``ann_file`` / ``ann_lines``: the annotation file and each object's position in it
      (YOLO 1-based line, COCO annotations index, VOC object index), for error messages.
    """

    path: str
    width: int
    height: int
    image_id: int
    boxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray | None = None
    segments: list[Any] | None = None
    difficult: np.ndarray | None = None
    truncated: np.ndarray | None = None
    ann_ids: np.ndarray | None = None
    areas: np.ndarray | None = None
    ann_file: str = ""
    ann_lines: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.labels = np.asarray(self.labels, np.int64).reshape(n)
        self.iscrowd = _flags(self.iscrowd, n)
        self.difficult = _flags(self.difficult, n)
        self.truncated = _flags(self.truncated, n)
        ids = np.full(n, -1) if self.ann_ids is None else self.ann_ids
        self.ann_ids = np.asarray(ids, np.int64).reshape(n)
        lines = np.full(n, -1) if self.ann_lines is None else self.ann_lines
        self.ann_lines = np.asarray(lines, np.int64).reshape(n)
        if self.areas is not None:
            self.areas = np.asarray(self.areas, np.float64).reshape(n)
        if self.segments is not None and len(self.segments) != n:
            ids = self.ann_ids[self.ann_ids >= 0].tolist()[:20]
            raise DataError(
                f"{self.ann_file or self.path}: image {self.path} has {n} boxes but "
                f"{len(self.segments)} segments"
                + (f" (annotation ids {ids})" if ids else "")
                + "; every object needs one segmentation (or none at all)"
            )

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class DetectionData:
    """A detection dataset: ``classes`` and one ``DetectionImage`` per image.

    ``root`` is the images folder that file names in the annotation file are relative to.
    ``category_ids[k]`` is the original COCO category id of class ``k`` (None when the
    source had none; writers then use ``k + 1``). ``warnings`` lists non-fatal problems the
    reader met (e.g. a label file without an image), so nothing is dropped silently.
    """

    classes: list[str]
    images: list[DetectionImage] = field(default_factory=list)
    root: str = ""
    category_ids: list[int] | None = None
    source: str = ""
    warnings: list[Any] = field(default_factory=list)  # non-fatal Problems met while reading

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_objects(self) -> int:
        return sum(len(im) for im in self.images)

    def sample(
        self, i: int, masks: bool = False, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Sample:
        """Image ``i`` decoded (uint8 HWC RGB) with boxes, box_labels and, if asked, masks.

        ``masks=True`` rasterizes each object's segment (polygon or RLE) to a bool (N, H, W)
        stack; an object without a segment gets its box filled. ``meta`` has ``image_id``,
        ``path``, ``orig_size`` (h, w), ``iscrowd``, ``difficult`` and ``index``.
        """
        rec = self.images[i]
        image = read_image(rec.path, max_pixels=max_pixels)
        h, w = image.shape[:2]
        if (h, w) != (rec.height, rec.width):
            raise DataError(
                f"{rec.path}: image is {w}x{h} but {rec.ann_file or 'the annotation'} says "
                f"{rec.width}x{rec.height}; fix the annotation's width/height"
            )
        inst = self.instance_masks(i) if masks else None
        meta = {
            "image_id": rec.image_id,
            "path": rec.path,
            "orig_size": (h, w),
            "iscrowd": rec.iscrowd.copy(),
            "difficult": rec.difficult.copy(),
            "index": i,
        }
        return Sample(
            image=image,
            boxes=rec.boxes.copy(),
            box_labels=rec.labels.copy(),
            masks=inst,
            meta=meta,
        )

    def instance_masks(self, i: int) -> np.ndarray:
        """bool (N, H, W) masks of image ``i`` from its segments (box-filled where absent)."""
        rec = self.images[i]
        h, w = rec.height, rec.width
        out = np.zeros((len(rec), h, w), bool)
        segs = rec.segments or [None] * len(rec)
        for k, seg in enumerate(segs):  # one rasterization per object; each is vectorized
            if seg is None or (isinstance(seg, list) and not seg):
                x1, y1, x2, y2 = np.round(rec.boxes[k]).astype(int)
                out[k, max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
                continue
            try:
                out[k] = segment_to_mask(seg, h, w)
            except ValueError as e:
                raise DataError(f"{rec.ann_file}:{int(rec.ann_lines[k])}: segment: {e}") from None
        return out

    def describe(self, i: int) -> str:
        """One line: path, size, object count and class names of image ``i``."""
        rec = self.images[i]
        names = [self.classes[int(c)] for c in rec.labels]
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        objs = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no objects"
        return (
            f"{rec.path} ({rec.width}x{rec.height}, id {rec.image_id}): {len(rec)} objects: {objs}"
        )

    def summary(self) -> str:
        """Images, objects, classes and where the data came from, for the CLI."""
        return f"{len(self)} images, {self.num_objects} objects, {len(self.classes)} classes" + (
            f" from {self.source}" if self.source else ""
        )


def relative_name(data: DetectionData, rec: DetectionImage, base: str | None = None) -> str:
    """The image's path relative to ``base`` (default ``data.root``), with forward slashes."""
    base = base or data.root
    rel = os.path.relpath(rec.path, base) if base else os.path.basename(rec.path)
    return rel.replace(os.sep, "/")
