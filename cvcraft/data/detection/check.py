"""``check_dataset``: list *every* problem of a detection dataset, with file and line.

The readers run in collecting mode (``Issues(strict=False)``), so malformed lines, unknown
classes, duplicate ids and unsafe paths are reported and skipped instead of raised; then the
parsed images are checked for what the readers do not look at: the image file is missing,
undecodable or of another size than annotated, and boxes that leave the image or have no
area. Print the result with ``"\\n".join(map(str, problems))``.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import yaml

from cvcraft.data.detection.coco import parse_coco
from cvcraft.data.detection.container import DetectionData, DetectionImage
from cvcraft.data.detection.convert import check_format, detect_format, find_coco_jsons
from cvcraft.data.detection.problems import Issues, Problem
from cvcraft.data.detection.voc import parse_voc
from cvcraft.data.detection.yolo import _load_config, image_size, parse_yolo
from cvcraft.data.io import read_image
from cvcraft.errors import DataError

BOX_TOLERANCE = 0.01  # px: float noise in exported boxes is not an out-of-bounds box


def bad_boxes(rec: DetectionImage) -> tuple[np.ndarray, np.ndarray]:
    """Which of an image's boxes have no area, and which leave the image (beyond
    ``BOX_TOLERANCE``): two bool (N,) arrays."""
    b = rec.boxes.astype(np.float64)
    tol = BOX_TOLERANCE
    empty = (b[:, 2] - b[:, 0] <= 0) | (b[:, 3] - b[:, 1] <= 0)
    out = (
        (b[:, 0] < -tol) | (b[:, 1] < -tol)
        | (b[:, 2] > rec.width + tol) | (b[:, 3] > rec.height + tol)
    )  # fmt: skip
    return empty, out


def count_bad_boxes(data: DetectionData) -> str | None:
    """One line saying how many boxes training will clip or drop (no area, or leaving the
    image), or None when there are none; ``cvcraft check`` lists each with its line."""
    empty = outside = 0
    for rec in data.images:
        if len(rec):
            e, o = bad_boxes(rec)
            empty, outside = empty + int(e.sum()), outside + int((o & ~e).sum())
    if not empty and not outside:
        return None
    return (
        f"{outside} box(es) leave their image (training clips them to it) and {empty} have "
        "no area (training drops them); `cvcraft check data=...` lists each with its file "
        "and line"
    )


def _check_images(data: DetectionData, issues: Issues, *, decode: bool, trust_size: bool) -> None:
    """Image existence/decoding/size, box bounds and areas; ``trust_size`` for YOLO."""
    uses = Counter(im.path for im in data.images)
    for rec in data.images:
        if uses[rec.path] > 1:
            issues.add(
                rec.ann_file,
                None,
                "duplicate_id",
                f"image {rec.path} is listed {uses[rec.path]} times",
            )
        if not os.path.isfile(rec.path):
            issues.add(
                rec.path,
                None,
                "missing_image",
                f"image file not found (annotated in {rec.ann_file})",
            )
        else:
            try:
                if decode:
                    h, w = read_image(rec.path).shape[:2]
                else:
                    w, h = image_size(rec.path)
            except DataError as e:
                issues.add(rec.path, None, "unreadable_image", str(e).split(": ", 1)[-1])
            else:
                if not trust_size and (w, h) != (rec.width, rec.height):
                    issues.add(
                        rec.ann_file,
                        None,
                        "size_mismatch",
                        f"{rec.path} is {w}x{h} but annotated as {rec.width}x{rec.height}",
                    )
        if not len(rec):
            continue
        b = rec.boxes.astype(np.float64)
        empty, out = bad_boxes(rec)
        for k in np.flatnonzero(empty | out):  # only the bad ones, to build messages
            box = ", ".join(f"{v:.2f}" for v in b[k])
            line = int(rec.ann_lines[k])
            tag = f"annotation id {int(rec.ann_ids[k])}: " if rec.ann_ids[k] >= 0 else ""
            if empty[k]:
                issues.add(rec.ann_file, line, "empty_box", f"{tag}box [{box}] has no area")
            if out[k]:
                issues.add(
                    rec.ann_file,
                    line,
                    "out_of_bounds",
                    f"{tag}box [{box}] leaves the {rec.width}x{rec.height} image {rec.path}",
                )


def _yolo_splits(path: str) -> list[str]:
    cfg, base, _ = _load_config(path, Issues(strict=False))
    if cfg:
        return [s for s in ("train", "val", "test") if cfg.get(s)] or ["train"]
    img_dir = os.path.join(base, "images")
    subs = sorted(d for d in os.listdir(img_dir) if os.path.isdir(os.path.join(img_dir, d)))
    return subs or ["train"]


def check_dataset(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    decode_images: bool = True,
    allow_outside_root: bool = False,
) -> list[Problem]:
    """Every problem of the dataset at ``path`` (all splits / JSON files), sorted by file, line.

    ``format`` is detected when None. ``decode_images=False`` only reads image headers
    (faster; misses truncated pixel data). An empty list means the dataset is clean.
    """
    p = os.fspath(path)
    fmt = check_format(format or detect_format(p))
    issues = Issues(strict=False)
    datasets: list[tuple[DetectionData, bool]] = []
    try:
        if fmt == "coco":
            files = [p] if os.path.isfile(p) else find_coco_jsons(p)
            for f in files:
                datasets.append(
                    (parse_coco(f, None, issues, allow_outside_root=allow_outside_root), False)
                )
        elif fmt == "yolo":
            for split in _yolo_splits(p):
                data = parse_yolo(p, split, issues, allow_outside_root=allow_outside_root)
                datasets.append((data, True))
        else:
            datasets.append(
                (parse_voc(p, None, issues, allow_outside_root=allow_outside_root), False)
            )
    except (DataError, OSError, yaml.YAMLError) as e:  # the dataset itself cannot be opened
        issues.add(p, None, "malformed", str(e))
    for data, trust in datasets:
        _check_images(data, issues, decode=decode_images, trust_size=trust)
    # de-duplicate (a label folder shared by two splits is listed once) and sort for reading
    unique = list(dict.fromkeys(issues.problems))
    return sorted(unique, key=lambda q: (q.file, -1 if q.line is None else q.line, q.kind))
