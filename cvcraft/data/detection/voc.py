"""Pascal VOC detection layout: ``read_voc`` and ``write_voc``, with a safe XML parser.

Layout: ``Annotations/<id>.xml`` (``filename``, ``size/width,height``, one ``object`` per
box with ``name``, ``truncated``, ``difficult``, ``bndbox/xmin,ymin,xmax,ymax``),
``JPEGImages/<filename>``, optionally ``ImageSets/Main/<split>.txt`` listing ids.

Coordinates: VOC boxes are **1-based inclusive pixel indices** (the top-left pixel is
(1, 1); a box covering the whole W x H image is ``1, 1, W, H``). Inside cvcraft boxes are
0-based pixel *edges*, so the reader maps ``(xmin, ymin, xmax, ymax)`` to
``(xmin - 1, ymin - 1, xmax, ymax)`` (as detectron2 does) and the writer does the inverse
with rounding to integers, so a round trip moves an edge by at most 0.5 px.

XML is parsed with expat directly: any DOCTYPE (and so any entity declaration, internal or
external) is refused before it is processed, so "billion laughs" and external-entity files
raise ``DataError`` at once. (defusedxml is not a dependency; this is the same defence.)
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.parsers import expat

import numpy as np

from cvcraft.data.detection.container import DetectionData, DetectionImage, relative_name
from cvcraft.data.detection.paths import place_image, resolve_inside
from cvcraft.data.detection.problems import Issues
from cvcraft.data.detection.yolo import image_size
from cvcraft.errors import DataError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

CLASSES_FILE = "classes.txt"  # written by write_voc so the class order survives a round trip


class _Refused(Exception):
    pass


def _refuse(*_: Any) -> None:
    raise _Refused("DTDs and entity declarations are not allowed in annotation XML")


def parse_xml_safely(data: bytes, name: str = "<xml>") -> ET.Element:
    """Parse XML bytes to an ElementTree element, refusing DTDs and entities.

    Raises ``DataError`` naming ``name`` on a DOCTYPE, an entity declaration, an external
    entity reference, or any syntax error.
    """
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except _Refused as e:
        raise DataError(f"{name}: {e}; remove the <!DOCTYPE ...> block") from None
    except (expat.ExpatError, ValueError, RecursionError, AssertionError) as e:
        raise DataError(f"{name}: malformed XML ({e})") from None


def _text(el: ET.Element | None, tag: str) -> str | None:
    child = el.find(tag) if el is not None else None
    return child.text.strip() if child is not None and child.text else None


def _number(el: ET.Element | None, tag: str) -> float | None:
    t = _text(el, tag)
    try:
        v = float(t) if t is not None else None
    except ValueError:
        return None
    return v if v is not None and np.isfinite(v) else None


def _flag(el: ET.Element, tag: str) -> bool:
    v = _number(el, tag)
    return bool(v) if v is not None else False


def _read_ids(root: str, split: str | None, issues: Issues) -> list[str]:
    ann_dir = os.path.join(root, "Annotations")
    if not os.path.isdir(ann_dir):
        raise DataError(f"{root}: no Annotations/ folder; is this a VOC dataset?")
    if split is not None:
        ids_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(ids_file):
            raise DataError(f"{ids_file}: split list not found; pass split=None to read all")
        ids, seen = [], set()
        lines = Path(ids_file).read_text(encoding="utf-8", errors="replace").splitlines()
        for ln, line in enumerate(lines, 1):
            tok = line.split()
            if not tok:
                continue
            if tok[0] in seen:
                issues.add(ids_file, ln, "duplicate_id", f"id {tok[0]!r} is listed twice")
                continue
            seen.add(tok[0])
            ids.append(tok[0])
        return ids
    return sorted(f[:-4] for f in os.listdir(ann_dir) if f.endswith(".xml"))


def _load_classes(root: str, classes: list[str] | None) -> list[str] | None:
    if classes is not None:
        return list(classes)
    path = os.path.join(root, CLASSES_FILE)
    if os.path.isfile(path):
        return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    return None


def parse_voc(
    root: str | os.PathLike[str],
    split: str | None,
    issues: Issues,
    *,
    classes: list[str] | None = None,
    allow_outside_root: bool = False,
) -> DetectionData:
    """Parse a VOC folder, sending every problem to ``issues`` (see ``problems.py``).

    ``line`` in a problem is the 0-based ``<object>`` index in the XML file.
    """
    root = os.fspath(root)
    fixed = _load_classes(root, classes)
    ids = _read_ids(root, split, issues)
    parsed: list[tuple[str, str, int, int, list[tuple[int, str, np.ndarray, bool, bool]]]] = []
    for img_id in ids:
        xpath = os.path.join(root, "Annotations", f"{img_id}.xml")
        try:
            tree = parse_xml_safely(Path(xpath).read_bytes(), xpath)
        except FileNotFoundError:
            issues.add(xpath, None, "malformed", "annotation file listed in the split is missing")
            continue
        except DataError as e:
            issues.add(xpath, None, "malformed", str(e).split(": ", 1)[-1])
            continue
        fname = _text(tree, "filename") or f"{img_id}.jpg"
        try:
            ipath = resolve_inside(
                os.path.join(root, "JPEGImages"),
                fname,
                source=xpath,
                allow_outside_root=allow_outside_root,
            )
        except DataError as e:
            issues.add(xpath, None, "unsafe_path", str(e))
            continue
        size = tree.find("size")
        w, h = _number(size, "width"), _number(size, "height")
        if not w or not h or w <= 0 or h <= 0:  # some VOC files have 0 0: ask the header
            try:
                w, h = image_size(ipath)
            except DataError as e:
                issues.add(xpath, None, "malformed", f"no usable <size> and {e}")
                continue
        objs = []
        for k, obj in enumerate(tree.findall("object")):
            name = _text(obj, "name")
            bb = obj.find("bndbox")
            coords = [_number(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")]
            if not name or any(c is None for c in coords):
                issues.add(xpath, k, "malformed", "object needs <name> and numeric bndbox corners")
                continue
            if fixed is not None and name not in fixed:
                issues.add(xpath, k, "unknown_class", f"class {name!r} is not in the class list")
                continue
            box = np.asarray(coords, np.float64) - (1.0, 1.0, 0.0, 0.0)  # 1-based -> edges
            objs.append((k, name, box, _flag(obj, "difficult"), _flag(obj, "truncated")))
        parsed.append((xpath, ipath, int(w), int(h), objs))
    if fixed is None:
        found = {o[1] for p in parsed for o in p[4]}
        fixed = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
    index = {n: i for i, n in enumerate(fixed)}
    stems = [os.path.splitext(os.path.basename(p[1]))[0] for p in parsed]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    images = []
    for n, (xpath, ipath, w, h, objs) in enumerate(parsed):
        images.append(
            DetectionImage(
                path=ipath,
                width=w,
                height=h,
                image_id=int(stems[n]) if numeric else n,
                boxes=np.asarray([o[2] for o in objs], np.float32).reshape(-1, 4),
                labels=[index[o[1]] for o in objs],
                difficult=[o[3] for o in objs],
                truncated=[o[4] for o in objs],
                segments=[None] * len(objs),
                ann_file=xpath,
                ann_lines=[o[0] for o in objs],
            )
        )
    return DetectionData(
        classes=fixed,
        images=images,
        root=os.path.join(root, "JPEGImages"),
        source=root,
        warnings=list(issues.problems) if issues.strict else [],
    )


def read_voc(
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    classes: list[str] | None = None,
    allow_outside_root: bool = False,
) -> DetectionData:
    """Read a Pascal VOC folder (all ``Annotations/*.xml``, or the ids of ``split``).

    Classes: ``classes`` if given, else ``classes.txt`` in the root, else the 20 VOC classes
    when every name is one of them, else the sorted names found. Raises ``DataError``
    naming the XML file (and object index) at fault.
    """
    return parse_voc(
        root, split, Issues(strict=True), classes=classes, allow_outside_root=allow_outside_root
    )


def _sub(parent: ET.Element, tag: str, text: Any) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = str(text)
    return el


def write_voc(
    data: DetectionData,
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    images: str = "copy",
) -> Path:
    """Write ``data`` as a VOC folder; returns ``root``.

    Writes ``Annotations/<stem>.xml`` (integer 1-based corners, clipped to the image),
    ``JPEGImages/<file>`` (``images``: "copy", "symlink" or "none"),
    ``ImageSets/Main/<split>.txt`` and ``classes.txt``. Image stems must be unique. Crowd
    regions are written as ``difficult`` (VOC's "ignore in evaluation" flag).
    """
    out = Path(root)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for rec in data.images:
        rel = relative_name(data, rec)
        fname = os.path.basename(rel)
        stem = os.path.splitext(fname)[0]
        if stem in stems:
            raise DataError(f"{rec.path}: VOC needs unique file stems; {stems[stem]} has {stem!r}")
        stems[stem] = rec.path
        place_image(rec.path, out / "JPEGImages" / fname, images)
        ann = ET.Element("annotation")
        _sub(ann, "folder", "JPEGImages")
        _sub(ann, "filename", fname)
        size = ET.SubElement(ann, "size")
        _sub(size, "width", rec.width)
        _sub(size, "height", rec.height)
        _sub(size, "depth", 3)
        # edges -> 1-based inclusive integers, kept inside [1, W] x [1, H]
        b = np.rint(rec.boxes.astype(np.float64)).astype(np.int64) + (1, 1, 0, 0)
        b = np.clip(b, 1, [rec.width, rec.height, rec.width, rec.height])
        for k in range(len(rec)):
            obj = ET.SubElement(ann, "object")
            _sub(obj, "name", data.classes[int(rec.labels[k])])
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", int(rec.truncated[k]))
            _sub(obj, "difficult", int(rec.difficult[k] or rec.iscrowd[k]))
            box = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), b[k]):
                _sub(box, tag, int(v))
        ET.indent(ann)
        ET.ElementTree(ann).write(out / "Annotations" / f"{stem}.xml", encoding="utf-8")
    sets = out / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    (out / CLASSES_FILE).write_text("".join(c + "\n" for c in data.classes))
    return out
