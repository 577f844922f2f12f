"""Format detection and conversion between COCO, YOLO and VOC detection datasets.

Every conversion goes through ``DetectionData`` (read once, write once), so N formats need
N readers and N writers, not N^2 converters. What a target format cannot hold is reported
in the ``ConvertReport`` rather than dropped silently: YOLO has no crowd flag (crowds are
skipped), VOC has integer corners (boxes move by <= 0.5 px) and no segments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cvcraft.data.detection.coco import read_coco, write_coco
from cvcraft.data.detection.container import DetectionData, DetectionImage
from cvcraft.data.detection.paths import place_image
from cvcraft.data.detection.problems import Problem
from cvcraft.data.detection.voc import read_voc, write_voc
from cvcraft.data.detection.yolo import find_yaml, read_yolo, write_yolo
from cvcraft.errors import DataError

FORMATS = ("coco", "yolo", "voc")


def detect_format(path: str | os.PathLike[str]) -> str:
    """ "coco", "yolo" or "voc" from what ``path`` is; DataError if it is none of them.

    A ``.json`` file -> coco; a ``.yaml`` file -> yolo; a folder with ``Annotations/`` ->
    voc; with a data YAML or ``images/`` + ``labels/`` -> yolo; with ``annotations/*.json``
    or a ``*.json`` -> coco.
    """
    p = os.fspath(path)
    if os.path.isfile(p):
        ext = os.path.splitext(p)[1].lower()
        if ext == ".json":
            return "coco"
        if ext in (".yaml", ".yml"):
            return "yolo"
        raise DataError(f"{p}: cannot tell the format of a {ext or 'extension-less'} file")
    if not os.path.isdir(p):
        raise DataError(f"{p}: no such file or folder")
    if os.path.isdir(os.path.join(p, "Annotations")):
        return "voc"
    if find_yaml(p) or (
        os.path.isdir(os.path.join(p, "images")) and os.path.isdir(os.path.join(p, "labels"))
    ):
        return "yolo"
    if find_coco_jsons(p):
        return "coco"
    raise DataError(
        f"{p}: not a COCO (annotations/*.json), YOLO (data.yaml, images/ + labels/) "
        "or VOC (Annotations/) dataset; lay it out as one of these (`cvcraft check "
        "format=` and `cvcraft convert from=` also take the format by name)"
    )


def find_coco_jsons(folder: str) -> list[str]:
    """The *.json files of ``folder/annotations`` (else of ``folder``), sorted."""
    for d in (os.path.join(folder, "annotations"), folder):
        if os.path.isdir(d):
            found = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))
            if found:
                return found
    return []


def coco_json_for(path: str, split: str) -> str:
    """The COCO JSON of ``split`` in a dataset folder (or ``path`` itself if it is a file)."""
    if os.path.isfile(path):
        return path
    found = find_coco_jsons(path)
    for f in found:
        if os.path.splitext(os.path.basename(f))[0].endswith(split):
            return f
    if len(found) == 1:
        return found[0]
    names = [Path(f).name for f in found]
    raise DataError(f"{path}: no COCO JSON for split {split!r} among {names}")


def read_dataset(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    split: str = "train",
    allow_outside_root: bool = False,
    skip_unreadable: bool = False,
) -> DetectionData:
    """Read a detection dataset of any supported format (detected when ``format`` is None).
    ``skip_unreadable``: an image whose header cannot be read (YOLO reads them for the
    sizes) is left out and listed in ``warnings`` instead of raising."""
    p = os.fspath(path)
    fmt = check_format(format or detect_format(p))
    if fmt == "coco":
        return read_coco(coco_json_for(p, split), allow_outside_root=allow_outside_root)
    if fmt == "yolo":
        return read_yolo(
            p, split, allow_outside_root=allow_outside_root, skip_unreadable=skip_unreadable
        )
    has_split = os.path.isfile(os.path.join(p, "ImageSets", "Main", f"{split}.txt"))
    return read_voc(p, split if has_split else None, allow_outside_root=allow_outside_root)


def write_dataset(
    data: DetectionData,
    dst: str | os.PathLike[str],
    format: str,
    *,
    split: str = "train",
    images: str = "copy",
) -> Path:
    """Write ``data`` under the folder ``dst`` in ``format``; returns the main file written.

    coco: ``dst/annotations/instances_<split>.json`` + ``dst/images/<split>/``;
    yolo: ``dst/data.yaml`` + ``images/<split>`` + ``labels/<split>``;
    voc: ``dst/Annotations``, ``JPEGImages``, ``ImageSets/Main/<split>.txt``.
    ``images``: "copy", "symlink", or "none" (annotations only; COCO file names are then
    the source images' absolute paths, so read back with ``allow_outside_root=True``).
    """
    fmt = check_format(format)
    out = Path(dst)
    if fmt == "coco":
        img_dir = out / "images" / split
        if images == "none":  # file names are the source images' absolute paths
            return write_coco(data, out / "annotations" / f"instances_{split}.json", absolute=True)
        moved_images = [_moved(rec, data.root, str(img_dir)) for rec in data.images]
        for rec, new in zip(data.images, moved_images):
            place_image(rec.path, new.path, images)
        moved = DetectionData(
            classes=data.classes,
            images=moved_images,
            root=str(img_dir),
            category_ids=data.category_ids,
            source=data.source,
        )
        return write_coco(moved, out / "annotations" / f"instances_{split}.json")
    if fmt == "yolo":
        return write_yolo(data, out, split=split, images=images)
    return write_voc(data, out, split=split, images=images)


def _moved(rec: DetectionImage, old_root: str, new_root: str) -> DetectionImage:
    """The record with its path moved from under ``old_root`` to under ``new_root``."""
    rel = os.path.relpath(rec.path, old_root) if old_root else os.path.basename(rec.path)
    if rel.startswith(".."):
        rel = os.path.basename(rec.path)
    return replace(rec, path=os.path.join(new_root, rel))


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of FORMATS, else DataError."""
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; use one of {FORMATS}")
    return fmt


@dataclass
class ConvertReport:
    """What ``convert_dataset`` did; ``str()`` gives the lines the CLI prints."""

    src: str
    src_format: str
    dst: str
    dst_format: str
    written: str
    images: int
    objects: int
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"converted {self.src} ({self.src_format}) -> {self.dst} ({self.dst_format})",
            f"  {self.images} images, {self.objects} objects written; main file {self.written}",
        ]
        lines += [f"  skipped {n} {why}" for why, n in self.skipped.items() if n]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def convert_dataset(
    src: str | os.PathLike[str],
    src_format: str | None,
    dst: str | os.PathLike[str],
    dst_format: str,
    *,
    split: str = "train",
    images: str = "copy",
    allow_outside_root: bool = False,
) -> ConvertReport:
    """Convert one split of a detection dataset between coco, yolo and voc.

    ``src_format`` None (or "auto") detects it. ``dst`` is a folder (see ``write_dataset``
    for the layout). Returns a ``ConvertReport``; raises ``DataError`` on unreadable input.
    """
    check_format(dst_format)
    fmt_in = detect_format(src) if src_format in (None, "auto") else check_format(src_format)
    data = read_dataset(src, fmt_in, split=split, allow_outside_root=allow_outside_root)
    written = write_dataset(data, dst, dst_format, split=split, images=images)
    n_crowd = sum(int(im.iscrowd.sum()) for im in data.images)
    skipped = {"crowd regions (YOLO has no crowd flag)": n_crowd} if dst_format == "yolo" else {}
    if dst_format == "voc":
        n_seg = sum(sum(s is not None for s in (im.segments or [])) for im in data.images)
        skipped["segments (VOC holds boxes only)"] = n_seg
    return ConvertReport(
        src=os.fspath(src),
        src_format=fmt_in,
        dst=os.fspath(dst),
        dst_format=dst_format,
        written=str(written),
        images=len(data),
        objects=data.num_objects - sum(skipped.get(k, 0) for k in skipped if "crowd" in k),
        skipped=skipped,
        warnings=list(data.warnings),
    )
