"""YOLO (ultralytics) detection layout: ``read_yolo`` and ``write_yolo``.

Layout: a data YAML (``path``, ``train``/``val`` folders or image-list txt files, ``names``
as a list or an ``{id: name}`` dict), images under ``.../images/...`` and one label file
per image at the same place under ``.../labels/...`` with ``.txt``. Each label line is
``cls cx cy w h`` (normalized to [0, 1] by the image width/height) or a YOLO-seg polygon
``cls x1 y1 x2 y2 ...`` (normalized); a polygon's box is its min/max. An image without a
label file is a background image. Image sizes come from the file header (PIL opens
lazily), not from decoding the pixels.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from cvcraft.data.detection.container import DetectionData, DetectionImage, relative_name
from cvcraft.data.detection.paths import place_image, resolve_inside
from cvcraft.data.detection.problems import Issues
from cvcraft.data.io import is_image_file
from cvcraft.errors import DataError
from cvcraft.ops.masks import polygon_area
from cvcraft.structures import cxcywh_to_xyxy, xyxy_to_cxcywh

YAML_NAMES = ("data.yaml", "dataset.yaml", "config.yaml")


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header without decoding; DataError if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Exception as e:  # PIL raises many types for bad headers
        raise DataError(f"{path}: cannot read the image header ({e})") from None
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: image header says {w}x{h}")
    return int(w), int(h)


def label_path(image_path: str) -> str:
    """The label file of an image: last ``/images/`` component -> ``/labels/``, ext -> .txt."""
    head, sep, tail = image_path.rpartition(f"{os.sep}images{os.sep}")
    swapped = f"{head}{os.sep}labels{os.sep}{tail}" if sep else image_path
    return os.path.splitext(swapped)[0] + ".txt"


def find_yaml(folder: str) -> str | None:
    """The data YAML of a dataset folder: data/dataset/config.yaml, else the only *.yaml."""
    for name in YAML_NAMES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    found = sorted(p for p in os.listdir(folder) if p.endswith((".yaml", ".yml")))
    return os.path.join(folder, found[0]) if len(found) == 1 else None


def _load_config(src: str, issues: Issues) -> tuple[dict[str, Any], str, str]:
    """(config, base folder, config file) for a YAML path or a dataset folder."""
    yaml_path = src if os.path.isfile(src) else (find_yaml(src) if os.path.isdir(src) else None)
    if yaml_path is None:
        if not os.path.isdir(src):
            raise DataError(f"{src}: no such YOLO data YAML or dataset folder")
        return {}, src, src  # bare folder: images/<split> + labels/<split>
    try:
        cfg = yaml.safe_load(Path(yaml_path).read_bytes())
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        issues.add(yaml_path, None, "malformed", f"not valid YAML ({e})")
        return {}, os.path.dirname(yaml_path), yaml_path
    if not isinstance(cfg, dict):
        issues.add(yaml_path, None, "malformed", "data YAML must be a mapping with names/train/val")
        return {}, os.path.dirname(yaml_path), yaml_path
    base = os.path.dirname(os.path.abspath(yaml_path))
    if isinstance(cfg.get("path"), str):
        base = os.path.normpath(os.path.join(base, cfg["path"]))
    return cfg, base, yaml_path


def _class_ids(cfg: dict[str, Any], cfg_file: str, issues: Issues) -> tuple[list[int], list[str]]:
    names = cfg.get("names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(range(len(names))), list(names)
    if isinstance(names, dict) and all(
        isinstance(k, int) and not isinstance(k, bool) and isinstance(v, str)
        for k, v in names.items()
    ):
        ids = sorted(names)
        return ids, [names[k] for k in ids]
    if names is not None or cfg:
        issues.add(cfg_file, None, "malformed", "'names' must be a list or an {id: name} dict")
    return [], []


def _list_images(base: str, entry: Any, cfg_file: str, issues: Issues, allow: bool) -> list[str]:
    """Image paths of a split entry: folder(s) (recursive) or image-list txt file(s)."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[str] = []
    for e in entries:
        if not isinstance(e, str):
            issues.add(cfg_file, None, "malformed", f"split entry {e!r} is not a path")
            continue
        p = os.path.normpath(os.path.join(base, e))
        if os.path.isdir(p):
            for dirpath, dirnames, files in os.walk(p, followlinks=True):
                dirnames.sort()
                out.extend(os.path.join(dirpath, f) for f in sorted(files) if is_image_file(f))
        elif os.path.isfile(p) and p.endswith(".txt"):
            lines = Path(p).read_text(encoding="utf-8", errors="replace").splitlines()
            for ln, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        out.append(
                            resolve_inside(
                                os.path.dirname(p),
                                line.strip(),
                                source=f"{p}:{ln}",
                                allow_outside_root=allow,
                            )
                        )
                    except DataError as err:
                        issues.add(p, ln, "unsafe_path", str(err))
        else:
            issues.add(cfg_file, None, "malformed", f"split folder or list {p} does not exist")
    return out


def _parse_labels(
    lpath: str, w: int, h: int, id_index: dict[int, int], issues: Issues
) -> tuple[list[np.ndarray], list[int], list[Any], list[int]]:
    """Boxes (xyxy px), labels, segments and line numbers of one label file."""
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    segs: list[Any] = []
    lines: list[int] = []
    try:
        text = Path(lpath).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        issues.add(lpath, None, "malformed", "label file is not UTF-8 text")
        return boxes, labels, segs, lines
    for ln, line in enumerate(text.splitlines(), 1):
        toks = line.split()
        if not toks:
            continue
        if len(toks) != 5 and (len(toks) < 7 or len(toks) % 2 == 0):
            issues.add(
                lpath,
                ln,
                "malformed",
                f"expected 'cls cx cy w h' or 'cls x1 y1 x2 y2 x3 y3 ...', got {len(toks)} values",
            )
            continue
        try:
            vals = [float(t) for t in toks]
        except ValueError:
            issues.add(lpath, ln, "malformed", f"non-numeric value in {line.strip()[:60]!r}")
            continue
        if not all(math.isfinite(v) for v in vals) or not vals[0].is_integer():
            issues.add(lpath, ln, "malformed", "values must be finite and the class an integer")
            continue
        cls = int(vals[0])
        if cls not in id_index:
            issues.add(lpath, ln, "unknown_class", f"class {cls} is not in the data YAML's names")
            continue
        arr = np.asarray(vals[1:], np.float64)
        if len(toks) == 5:
            box = cxcywh_to_xyxy(arr * (w, h, w, h))
            segs.append(None)
        else:
            pts = arr.reshape(-1, 2) * (w, h)
            box = np.concatenate([pts.min(0), pts.max(0)])
            segs.append([pts.ravel().tolist()])
        boxes.append(box)
        labels.append(id_index[cls])
        lines.append(ln)
    return boxes, labels, segs, lines


def parse_yolo(
    src: str | os.PathLike[str], split: str, issues: Issues, *, allow_outside_root: bool = False
) -> DetectionData:
    """Parse a YOLO dataset split, sending every problem to ``issues`` (see ``problems.py``)."""
    src = os.fspath(src)
    cfg, base, cfg_file = _load_config(src, issues)
    class_ids, classes = _class_ids(cfg, cfg_file, issues)
    entry = cfg.get(split, f"images/{split}" if not cfg else None)
    if entry is None:
        issues.add(cfg_file, None, "malformed", f"data YAML has no {split!r} entry")
        entry = []
    paths = _list_images(base, entry, cfg_file, issues, allow_outside_root)
    # file names are relative to the split's image folder (so writers keep sub-folders only)
    split_dir = os.path.normpath(os.path.join(base, entry)) if isinstance(entry, str) else ""
    root = split_dir if os.path.isdir(split_dir) else base
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    id_index = {c: k for k, c in enumerate(class_ids)}
    if not cfg:  # bare folder without names: classes are whatever ids appear
        id_index = _GrowingIndex()
    images, used = [], {}
    for idx, ipath in enumerate(paths):
        lpath = label_path(ipath)
        if lpath in used:
            issues.add(
                ipath,
                None,
                "duplicate_id",
                f"shares its label file {lpath} with {used[lpath]}; rename one of them",
            )
            continue
        used[lpath] = ipath
        try:
            w, h = image_size(ipath)
        except DataError as e:
            issues.add(ipath, None, "unreadable_image", str(e).split(": ", 1)[-1])
            continue
        boxes, labels, segs, lines = (
            _parse_labels(lpath, w, h, id_index, issues)
            if os.path.isfile(lpath)
            else ([], [], [], [])
        )
        images.append(
            DetectionImage(
                path=ipath,
                width=w,
                height=h,
                image_id=int(stems[idx]) if numeric else idx,
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                labels=labels,
                segments=segs,
                ann_file=lpath,
                ann_lines=lines,
            )
        )
    # label files with no image are reported, not silently ignored
    for ldir in sorted({os.path.dirname(p) for p in used}):
        if os.path.isdir(ldir):
            for f in sorted(os.listdir(ldir)):
                lp = os.path.join(ldir, f)
                if f.endswith(".txt") and lp not in used and os.path.isfile(lp):
                    issues.note(lp, None, "missing_image", "label file has no image next to it")
    if isinstance(id_index, _GrowingIndex):
        classes = [str(c) for c in sorted(id_index)]
        remap = {k: i for i, k in enumerate(sorted(id_index))}  # ids in order of appearance
        for im in images:
            im.labels = np.array([remap[id_index.order[j]] for j in im.labels], np.int64)
        class_ids = sorted(id_index)
    contiguous = class_ids == list(range(len(class_ids)))
    return DetectionData(
        classes=classes,
        images=images,
        root=root,
        category_ids=None if contiguous else class_ids,
        source=cfg_file,
        warnings=list(issues.problems) if issues.strict else [],
    )


class _GrowingIndex(dict):
    """Class-id index for a folder without names: every id seen becomes a class."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, int) and cls >= 0

    def __getitem__(self, cls: int) -> int:
        if not dict.__contains__(self, cls):
            dict.__setitem__(self, cls, len(self.order))
            self.order.append(cls)
        return dict.__getitem__(self, cls)


def read_yolo(
    data_yaml_or_dir: str | os.PathLike[str],
    split: str = "train",
    *,
    allow_outside_root: bool = False,
    skip_unreadable: bool = False,
) -> DetectionData:
    """Read one split of a YOLO dataset (data YAML, or a folder holding it) as DetectionData.

    Class ids in label files are the YAML's ``names`` keys; non-contiguous keys (e.g. COCO
    ids) are remapped to indices and kept in ``category_ids``. Raises ``DataError`` naming
    the file and line of the first malformed label, unknown class or unreadable image
    (``skip_unreadable``: such an image is left out and listed in ``warnings``).
    """
    issues = Issues(strict=True, tolerate=("unreadable_image",) if skip_unreadable else ())
    return parse_yolo(data_yaml_or_dir, split, issues, allow_outside_root=allow_outside_root)


def _largest_polygon(seg: Any) -> list[float] | None:
    """The largest polygon of a polygon segment (YOLO-seg holds one per object); None if RLE."""
    if not isinstance(seg, list):
        return None
    polys = [p for p in seg if len(p) >= 6]
    return max(polys, key=polygon_area) if polys else None


def write_yolo(
    data: DetectionData,
    out_dir: str | os.PathLike[str],
    *,
    split: str = "train",
    images: str = "copy",
    segments: bool = False,
    include_crowd: bool = False,
    decimals: int = 6,
) -> Path:
    """Write ``data`` as a YOLO split under ``out_dir``; returns the data YAML's path.

    Writes ``images/<split>/...`` (``images``: "copy", "symlink" or "none"),
    ``labels/<split>/....txt`` (an empty file for an image without objects) and
    ``data.yaml`` (``train``/``val`` entries and ``names``; existing splits are kept).
    Crowd regions are skipped unless ``include_crowd`` (YOLO has no crowd flag).
    ``segments=True`` writes YOLO-seg lines from each object's largest polygon.
    """
    out = Path(out_dir)
    for rec in data.images:
        rel = relative_name(data, rec)
        if rel.startswith("../") or os.path.isabs(rel):
            rel = os.path.basename(rec.path)
        ipath = out / "images" / split / rel
        place_image(rec.path, ipath, images)
        keep = np.ones(len(rec), bool) if include_crowd else ~rec.iscrowd
        wh = (rec.width, rec.height, rec.width, rec.height)
        norm = xyxy_to_cxcywh(rec.boxes.astype(np.float64)) / wh
        rows = []
        for k in np.flatnonzero(keep):
            poly = _largest_polygon(rec.segments[k]) if (segments and rec.segments) else None
            if poly is not None:
                vals = (
                    np.asarray(poly, np.float64).reshape(-1, 2) / (rec.width, rec.height)
                ).ravel()
            else:
                vals = norm[k]
            rows.append(f"{int(rec.labels[k])} " + " ".join(f"{v:.{decimals}f}" for v in vals))
        lpath = out / "labels" / split / (os.path.splitext(rel)[0] + ".txt")
        lpath.parent.mkdir(parents=True, exist_ok=True)
        lpath.write_text("".join(r + "\n" for r in rows))
    ypath = out / "data.yaml"
    cfg: dict[str, Any] = {}
    if ypath.is_file():
        old = yaml.safe_load(ypath.read_text())
        cfg = old if isinstance(old, dict) else {}
    cfg[split] = f"images/{split}"
    cfg["names"] = dict(enumerate(data.classes))
    ypath.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return ypath
