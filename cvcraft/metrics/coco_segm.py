"""COCO ``segmentation`` values (polygons, RLE) -> ``MaskRuns``, with errors that name the
file and the annotation id (or result index) at fault.

Ground truth is read as pycocotools' ``annToRLE`` reads it: a polygon list is rasterized
part by part (``ops.masks.polygon_to_runs``, pixel-identical to pycocotools) and the parts
OR-ed; an RLE (string or list counts) is taken as is, and must have the image's size.
Results must be RLE (``pycocotools`` computes their area from it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import DataError
from cvcraft.metrics.mask_iou import MaskRuns
from cvcraft.ops.masks import counts_to_runs, polygons_to_runs_many, rle_counts

_FIX = (
    "fix that entry (COCO segmentation: a list of polygons [x1, y1, x2, y2, ...] with at "
    "least 3 points each, or an RLE {'size': [height, width], 'counts': ...})"
)


def _segment_runs(seg: Any, h: int, w: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(seg, dict):
        return _rle_runs(seg, h, w, where)
    polys = _checked_polygons(seg, where)
    starts, ends, _ = polygons_to_runs_many(polys, np.zeros(len(polys), np.int64), [(h, w)])
    return starts, ends


def _rle_runs(seg: dict, h: int, w: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The runs of an RLE, checked against its image's (h, w)."""
    try:
        counts, rh, rw = rle_counts(seg)
    except ValueError as e:
        raise DataError(f"{where} has a malformed RLE: {e}; {_FIX}") from None
    if (rh, rw) != (h, w):
        raise DataError(
            f"{where} has an RLE of size {rh}x{rw} but its image is {h}x{w} (height x "
            f"width); {_FIX}"
        )
    return counts_to_runs(counts)


def _checked_polygons(seg: Any, where: str) -> list[np.ndarray]:
    """The flat coordinate arrays of a polygon list, or a DataError saying what is wrong."""
    if not isinstance(seg, list) or not seg:
        raise DataError(f"{where} has segmentation={str(seg)[:60]!r}; {_FIX}")
    out = []
    for k, poly in enumerate(seg):
        try:
            xy = np.asarray(poly, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{where}: polygon {k} is not a list of numbers; {_FIX}") from None
        if len(xy) % 2 or len(xy) < 6:
            raise DataError(
                f"{where}: polygon {k} has {len(xy)} coordinates ({len(xy) // 2} points); "
                f"a polygon needs at least 3 (x, y) points; {_FIX}"
            )
        if not np.isfinite(xy).all():
            raise DataError(f"{where}: polygon {k} has non-finite coordinates; {_FIX}")
        out.append(xy)
    return out


def gt_mask_runs(
    annotations: list[dict], sizes: np.ndarray, ann_image: np.ndarray, source: str
) -> MaskRuns:
    """The masks of COCO annotations; ``sizes`` (I, 2) image (height, width), ``ann_image``
    (N,) each annotation's image rank."""
    rle: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    polys: list[np.ndarray] = []
    owner: list[int] = []
    for i, a in enumerate(annotations):  # checks only; the polygons are drawn all at once
        where = f"{source}: annotation id {a.get('id', '?')} (annotations[{i}])"
        if "segmentation" not in a:
            raise DataError(f"{where} has no 'segmentation', needed for iou_type='segm'; {_FIX}")
        h, w = (int(v) for v in sizes[ann_image[i]])
        if isinstance(a["segmentation"], dict):
            rle[i] = _rle_runs(a["segmentation"], h, w, where)
        else:
            parts = _checked_polygons(a["segmentation"], where)
            polys += parts
            owner += [i] * len(parts)
    ann_sizes = [tuple(int(v) for v in sizes[r]) for r in ann_image]
    starts, ends, count = polygons_to_runs_many(polys, np.array(owner, np.int64), ann_sizes)
    bounds = np.concatenate([[0], np.cumsum(count)])
    runs = [
        rle[i] if i in rle else (starts[bounds[i] : bounds[i + 1]], ends[bounds[i] : bounds[i + 1]])
        for i in range(len(annotations))
    ]
    return MaskRuns.from_list(runs)


def result_mask_runs(
    results: list[dict], sizes: np.ndarray, res_image: np.ndarray, source: str
) -> MaskRuns:
    """The RLE masks of COCO results (``res_image`` (N,) image rank of each)."""
    runs = []
    for i, r in enumerate(results):
        seg = r.get("segmentation") if isinstance(r, dict) else None
        where = f"{source}: results[{i}] (image_id {r.get('image_id', '?')})"
        if not isinstance(seg, dict):
            raise DataError(
                f"{where} needs 'segmentation' as an RLE {{'size': [h, w], 'counts': ...}} "
                f"for iou_type='segm', got {str(seg)[:60]!r}"
            )
        h, w = (int(v) for v in sizes[res_image[i]])
        runs.append(_segment_runs(seg, h, w, where))
    return MaskRuns.from_list(runs)


__all__ = ["gt_mask_runs", "result_mask_runs"]
