"""COCO detection JSON: ``read_coco`` and ``write_coco``.

The format (one JSON file): ``images`` ``[{id, file_name, width, height}]``,
``categories`` ``[{id, name}]`` and ``annotations`` ``[{id, image_id, category_id,
bbox: [x, y, w, h], area, iscrowd, segmentation}]``, where ``segmentation`` is a list of
polygons ``[x1, y1, x2, y2, ...]`` or, for crowds, an RLE ``{"size", "counts"}``.
Category ids are arbitrary (COCO's 80 classes use 1..90 with gaps): the reader maps them to
contiguous class indices in id order and keeps the ids in ``DetectionData.category_ids``
so ``write_coco`` and COCO evaluation get the originals back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.data.detection.container import DetectionData, DetectionImage, relative_name
from cvcraft.data.detection.paths import resolve_inside
from cvcraft.data.detection.problems import Issues
from cvcraft.errors import DataError
from cvcraft.ops.masks import polygon_area, rle_counts
from cvcraft.structures import xywh_to_xyxy, xyxy_to_xywh


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def default_images_dir(json_path: str | os.PathLike[str]) -> str:
    """Where images of ``annotations/instances_<split>.json`` usually are.

    Tries ``../images/<split>``, ``../<split>``, ``./images``, ``../images`` and falls back to
    the JSON's own folder.
    """
    p = Path(os.path.abspath(json_path))
    split = p.stem.split("_", 1)[1] if "_" in p.stem else p.stem
    for cand in (
        p.parent.parent / "images" / split,
        p.parent.parent / split,
        p.parent / "images",
        p.parent.parent / "images",
    ):
        if cand.is_dir():
            return str(cand)
    return str(p.parent)


def _check_segment(seg: Any, h: int, w: int) -> str | None:
    """None if ``seg`` is a valid COCO segmentation for an h x w image, else why not."""
    if isinstance(seg, dict):
        try:
            _, rh, rw = rle_counts(seg)
        except ValueError as e:
            return f"segmentation RLE: {e}"
        if (rh, rw) != (h, w):
            return f"segmentation RLE size {rh}x{rw} differs from the image's {h}x{w}"
        return None
    if not isinstance(seg, list):
        return "segmentation must be a list of polygons or an RLE dict"
    for poly in seg:
        if not isinstance(poly, list) or len(poly) % 2 or len(poly) < 6:
            return (
                "each polygon must be a flat list [x1, y1, x2, y2, ...] of >= 3 points "
                "(a polygon has an area)"
            )
        if not all(_is_num(v) for v in poly):
            return "polygon coordinates must be finite numbers"
    return None


def parse_coco(
    json_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None,
    issues: Issues,
    *,
    allow_outside_root: bool = False,
) -> DetectionData:
    """Parse a COCO JSON file, sending every problem to ``issues`` (see ``problems.py``).

    Problems that make an image or annotation unusable skip it (collecting mode) or raise
    (strict mode). ``line`` in a problem is the index into ``images`` or ``annotations``.
    """
    path = os.fspath(json_path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read COCO JSON ({e.strerror or e})") from None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
        issues.add(path, None, "malformed", f"not valid JSON ({e}); fix or re-export the file")
        return DetectionData(classes=[], source=path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        issues.add(path, None, "malformed", "not a COCO file: no top-level 'images' list")
        return DetectionData(classes=[], source=path)
    anns = doc.get("annotations", [])
    cats = doc.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        issues.add(path, None, "malformed", "'annotations' and 'categories' must be lists")
        return DetectionData(classes=[], source=path)
    root = os.fspath(images_dir) if images_dir is not None else default_images_dir(path)

    # categories -> contiguous indices in id order
    cat_names: dict[int, str] = {}
    for k, c in enumerate(cats):
        if (
            not isinstance(c, dict)
            or not _is_int(c.get("id"))
            or not isinstance(c.get("name"), str)
        ):
            issues.add(path, k, "malformed", f"categories[{k}] needs an integer 'id' and a 'name'")
            continue
        if c["id"] in cat_names:
            issues.add(path, k, "duplicate_id", f"category id {c['id']} appears twice")
            continue
        cat_names[c["id"]] = c["name"]
    cat_ids = sorted(cat_names)
    cat_index = {cid: k for k, cid in enumerate(cat_ids)}

    # images
    records: dict[int, dict[str, Any]] = {}
    for k, im in enumerate(doc["images"]):
        ok = (
            isinstance(im, dict)
            and _is_int(im.get("id"))
            and isinstance(im.get("file_name"), str)
            and _is_int(im.get("width"))
            and _is_int(im.get("height"))
            and im["width"] > 0
            and im["height"] > 0
        )
        if not ok:
            issues.add(
                path,
                k,
                "malformed",
                f"images[{k}] needs integer 'id', 'file_name', positive 'width' and 'height'",
            )
            continue
        if im["id"] in records:
            issues.add(path, k, "duplicate_id", f"image id {im['id']} appears twice")
            continue
        try:
            fpath = resolve_inside(
                root,
                im["file_name"],
                source=f"{path}: images[{k}]",
                allow_outside_root=allow_outside_root,
            )
        except DataError as e:
            issues.add(path, k, "unsafe_path", str(e))
            continue
        records[im["id"]] = {"im": im, "path": fpath, "anns": []}

    # annotations
    seen_ann: set[int] = set()
    for k, a in enumerate(anns):
        if not isinstance(a, dict) or not _is_int(a.get("id")) or not _is_int(a.get("image_id")):
            issues.add(path, k, "malformed", f"annotations[{k}] needs integer 'id' and 'image_id'")
            continue
        tag = f"annotation id {a['id']}"
        if a["id"] in seen_ann:
            issues.add(path, k, "duplicate_id", f"{tag} appears twice")
            continue
        seen_ann.add(a["id"])
        rec = records.get(a["image_id"])
        if rec is None:
            issues.add(path, k, "malformed", f"{tag}: image_id {a['image_id']} is not in 'images'")
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
            issues.add(path, k, "malformed", f"{tag}: 'bbox' must be 4 finite numbers [x, y, w, h]")
            continue
        cid = a.get("category_id")
        if not _is_int(cid) or cid not in cat_index:
            issues.add(
                path, k, "unknown_class", f"{tag}: category_id {cid!r} is not in 'categories'"
            )
            continue
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            issues.add(path, k, "malformed", f"{tag}: 'iscrowd' must be 0 or 1, got {crowd!r}")
            continue
        seg = a.get("segmentation")
        if seg is not None and seg != []:
            why = _check_segment(seg, rec["im"]["height"], rec["im"]["width"])
            if why:
                issues.add(path, k, "malformed", f"{tag}: {why}")
                continue
        else:
            seg = None
        area = a.get("area")
        rec["anns"].append((k, a, cat_index[cid], seg, area if _is_num(area) else np.nan))

    images = []
    for image_id, rec in records.items():
        im, rows = rec["im"], rec["anns"]
        xywh = np.array([r[1]["bbox"] for r in rows], np.float64).reshape(-1, 4)
        images.append(
            DetectionImage(
                path=rec["path"],
                width=im["width"],
                height=im["height"],
                image_id=image_id,
                boxes=xywh_to_xyxy(xywh).astype(np.float32),
                labels=[r[2] for r in rows],
                iscrowd=[bool(r[1].get("iscrowd", 0)) for r in rows],
                segments=[r[3] for r in rows],
                ann_ids=[r[1]["id"] for r in rows],
                areas=[r[4] for r in rows],
                ann_file=path,
                ann_lines=[r[0] for r in rows],
            )
        )
    return DetectionData(
        classes=[cat_names[c] for c in cat_ids],
        images=images,
        root=root,
        category_ids=cat_ids,
        source=path,
        warnings=list(issues.problems) if issues.strict else [],
    )


def read_coco(
    json_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    *,
    allow_outside_root: bool = False,
) -> DetectionData:
    """Read a COCO detection JSON into ``DetectionData`` (boxes xywh -> xyxy).

    ``images_dir`` is what ``file_name`` is relative to (default: guessed from the layout,
    see ``default_images_dir``). Raises ``DataError`` naming the file and the index into
    ``images``/``annotations`` at fault; a ``file_name`` leaving ``images_dir`` is refused
    unless ``allow_outside_root``. Image files are not opened here (``check_dataset`` does).
    """
    return parse_coco(
        json_path, images_dir, Issues(strict=True), allow_outside_root=allow_outside_root
    )


def _area(rec: DetectionImage, k: int, xywh: np.ndarray) -> float:
    """The stored area, else the segment's (RLE pixels / polygon shoelace), else the box's."""
    if rec.areas is not None and np.isfinite(rec.areas[k]):
        return float(rec.areas[k])
    seg = rec.segments[k] if rec.segments is not None else None
    if isinstance(seg, dict):
        c, _, _ = rle_counts(seg)
        return float(c[1::2].sum())
    if seg:
        return float(sum(polygon_area(p) for p in seg))
    return float(xywh[k, 2] * xywh[k, 3])


def _json_segment(seg: Any) -> Any:
    if seg is None:
        return []
    if isinstance(seg, dict) and isinstance(seg.get("counts"), bytes):
        return {"size": list(seg["size"]), "counts": seg["counts"].decode("ascii")}
    return seg


def write_coco(
    data: DetectionData,
    json_path: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    decimals: int = 4,
    absolute: bool = False,
) -> Path:
    """Write ``data`` as a COCO detection JSON; returns the path written.

    ``file_name`` is each image's path relative to ``images_dir`` (default ``data.root``).
    Category ids are ``data.category_ids`` (or ``k + 1``); annotation ids are kept when the
    data came from COCO and are unique, else numbered from 1. Boxes are rounded to
    ``decimals`` places (float32 boxes carry no more). ``absolute=True`` writes absolute
    file names instead (reading them back needs ``allow_outside_root=True``).
    """
    out = Path(json_path)
    cat_ids = data.category_ids or list(range(1, len(data.classes) + 1))
    base = os.fspath(images_dir) if images_dir is not None else data.root
    all_ids = np.concatenate([im.ann_ids for im in data.images]) if data.images else np.zeros(0)
    keep_ids = (
        bool(len(all_ids)) and (all_ids >= 0).all() and len(np.unique(all_ids)) == len(all_ids)
    )
    images, anns = [], []
    next_id = 1
    for rec in data.images:
        images.append(
            {
                "id": int(rec.image_id),
                "file_name": os.path.abspath(rec.path)
                if absolute
                else relative_name(data, rec, base),
                "width": int(rec.width),
                "height": int(rec.height),
            }
        )
        xywh = np.round(xyxy_to_xywh(rec.boxes.astype(np.float64)), decimals)
        for k in range(len(rec)):
            anns.append(
                {
                    "id": int(rec.ann_ids[k]) if keep_ids else next_id,
                    "image_id": int(rec.image_id),
                    "category_id": int(cat_ids[int(rec.labels[k])]),
                    "bbox": [float(v) for v in xywh[k]],
                    "area": round(_area(rec, k, xywh), decimals),
                    "iscrowd": int(rec.iscrowd[k]),
                    "segmentation": _json_segment(rec.segments[k] if rec.segments else None),
                }
            )
            next_id += 1
    doc = {
        "info": {"description": f"written by cvcraft from {data.source or 'memory'}"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": int(i), "name": n} for i, n in zip(cat_ids, data.classes)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)  # atomic: a crash never leaves half a JSON file
    return out
