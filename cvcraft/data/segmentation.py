"""Semantic-segmentation data: image + class-index mask pairs, however they are stored.

``load_segmentation(data)`` accepts, in this order of detection:

- ``"shapes"`` / ``"shapes:N"``: synthetic scenes of 1-2 shapes, classes
  ``SEMANTIC_CLASSES`` (0 = background, k + 1 = shape k); N train images, N // 5 val;
- a mask-dataset YAML (or a folder holding one as ``config.yaml``/``data.yaml``) whose splits
  name ``images`` and ``masks`` folders and whose ``classes`` map mask values to names
  (non-contiguous ids, e.g. COCO panoptic, are re-indexed in sorted order);
- a folder with ``images/`` and ``masks/`` (optionally each with ``train``/``val`` sub-folders):
  masks are paired with images by file stem;
- a tar-shard folder written by ``cvcraft pack task=segment`` (``train/`` + ``val/`` shard
  folders, or one shard folder that is split like any source without val);
- a COCO JSON, a YOLO-seg data YAML or folder: instance polygons / RLE are rasterized and
  painted into one mask (larger objects first, so a smaller object on top stays visible;
  crowd regions become 255 = ignore); classes are ``background`` + the dataset's.

Masks are read as class indices: a palette PNG gives its palette indices, a grey PNG its
values, an RGB mask is mapped through a colour ``palette`` (list of [r, g, b] per class).
Mask value 255 is ignore; a value outside the class list raises ``DataError`` naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.detection.convert import detect_format, read_dataset
from cvcraft.data.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, read_image
from cvcraft.data.shapes import SEMANTIC_CLASSES, render_scene, split_code
from cvcraft.data.webdataset import (
    META,
    ShardSegData,
    is_shard_folder,
    shard_ids_of,
    shard_splits,
)
from cvcraft.errors import DataError
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample
from cvcraft.transforms.item_pipeline import ItemPipeline

IGNORE_INDEX = 255
ACCEPTED = (
    "'shapes' or 'shapes:N'; a mask YAML (splits with images: and masks:, classes:); a folder "
    "with images/ and masks/; a `cvcraft pack task=segment` shard folder; a COCO JSON; a "
    "YOLO-seg data YAML or folder"
)


class SegmentationData:
    """Items of (image, semantic mask): ``classes``, ``__len__``, ``sample(i)``, ``subset``."""

    classes: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, i: int) -> Sample:
        """Image ``i`` (uint8 HWC RGB) with its uint8 (H, W) ``semantic_mask`` and ``meta``."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"item {i}"

    def subset(self, indices: Sequence[int] | np.ndarray) -> SegmentationData:
        return SubsetSegData(self, np.asarray(indices, dtype=np.int64))

    def shard_ids(self) -> np.ndarray | None:
        """Item -> tar shard, int64 (N,), for data read from shards; None otherwise (a DDP
        training loader gives each rank whole shards with it)."""
        return None


class SubsetSegData(SegmentationData):
    """A view on some items of another ``SegmentationData`` (after a split or ``fraction``)."""

    def __init__(self, base: SegmentationData, indices: np.ndarray) -> None:
        self.base, self.indices, self.classes = base, indices, base.classes

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, i: int) -> Sample:
        s = self.base.sample(int(self.indices[i]))
        s.meta["index"] = i
        return s

    def describe(self, i: int) -> str:
        return self.base.describe(int(self.indices[i]))

    def shard_ids(self) -> np.ndarray | None:
        ids = shard_ids_of(self.base)  # the base may be a ShardSegData (no SegmentationData)
        return None if ids is None else ids[self.indices]


class ArraySegData(SegmentationData):
    """In-memory uint8 images (N, H, W, 3) and masks (N, H, W)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, classes: list[str], name: str = ""):
        self.images, self.masks, self.classes, self.name = images, masks, list(classes), name

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int) -> Sample:
        meta = {"index": i, "orig_size": self.images.shape[1:3], "path": self.describe(i)}
        return Sample(image=self.images[i], semantic_mask=self.masks[i], meta=meta)

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


def make_shapes_segmentation(
    n: int,
    imgsz: int = 64,
    seed: int = 0,
    split: str = "train",
    *,
    n_objects: tuple[int, int] = (1, 2),
    size_range: tuple[float, float] = (0.25, 0.45),
    min_visible: float = 0.8,
) -> ArraySegData:
    """``n`` synthetic scenes with semantic masks; scene ``i`` is a pure function of
    ``(seed, split, i)`` (``render_scene`` with ``default_rng([seed, split_code(split), i])``).

    Defaults: 1-2 large objects (radius 25-45% of the side), each at least 80% visible. A
    shape mostly hidden under another is ambiguous (a clipped circle looks like anything),
    so heavier occlusion caps what a short run can reach without making it more instructive.
    """
    images = np.empty((n, imgsz, imgsz, 3), np.uint8)
    masks = np.empty((n, imgsz, imgsz), np.uint8)
    code = split_code(split)
    for i in range(n):  # one scene per image; each scene is vectorized inside
        s = render_scene(
            np.random.default_rng([seed, code, i]),
            imgsz,
            n_objects,
            size_range=size_range,
            min_visible=min_visible,
        )
        images[i], masks[i] = s.image, s.semantic_mask
    name = f"shapes-seg(n={n}, imgsz={imgsz}, seed={seed}, split={split})"
    return ArraySegData(images, masks, list(SEMANTIC_CLASSES), name)


def read_mask(
    path: str | os.PathLike[str],
    lut: np.ndarray | None = None,
    palette: np.ndarray | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """A mask file -> uint8 (H, W) class indices (255 = ignore).

    Palette PNGs give palette indices, grey masks their values (16-bit allowed);
    an RGB(A) mask needs ``palette`` (K, 3): pixel colour c -> class k where palette[k] == c,
    255 for a colour not in it. ``lut`` (a 65536-entry uint8 table) then maps raw values to
    class indices. A value >= ``num_classes`` that is not 255 raises ``DataError``.
    """
    name = os.fspath(path)
    try:
        with Image.open(name) as im:
            if im.format == "JPEG":
                raise DataError(
                    f"{name}: a JPEG mask: lossy compression changes pixel values along every "
                    "edge, which invents classes that are not in the data; save the masks as "
                    "PNG (lossless) and point the dataset at those"
                )
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{name}: mask file not found") from None
    except OSError as e:
        raise DataError(f"{name}: not a readable mask image ({e})") from None
    if arr.ndim == 3 or mode in ("RGB", "RGBA"):
        if palette is None:
            raise DataError(
                f"{name}: colour (RGB) mask but no palette; add `palette: [[r, g, b], ...]` "
                "(one colour per class) to the dataset YAML, or save masks as class-index PNGs"
            )
        rgb = arr[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = np.asarray(palette, np.int64).reshape(-1, 3)
        pcode = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        order = np.argsort(pcode)
        pos = np.searchsorted(pcode[order], code).clip(0, len(pcode) - 1)
        hit = pcode[order][pos] == code
        out = np.where(hit, order[pos], IGNORE_INDEX).astype(np.uint8)
    else:
        raw = arr.astype(np.int64)
        if lut is not None:
            out = lut[raw.clip(0, len(lut) - 1)]
        elif raw.max(initial=0) > 255:
            raise DataError(f"{name}: mask values above 255 need a class-id map (classes:)")
        else:
            out = raw.astype(np.uint8)
    if num_classes is not None:
        bad = (out >= num_classes) & (out != IGNORE_INDEX)
        if bad.any():
            v = int(arr[bad][0]) if arr.ndim == 2 else int(out[bad][0])
            raise DataError(
                f"{name}: mask value {v} is not one of the {num_classes} classes nor 255 "
                "(ignore); fix the mask or list the class in the dataset YAML's classes:"
            )
    return out


class MaskFolderData(SegmentationData):
    """Image files paired with mask files (``read_mask``)."""

    def __init__(
        self,
        images: Sequence[str],
        masks: Sequence[str],
        classes: list[str],
        *,
        lut: np.ndarray | None = None,
        palette: np.ndarray | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks, self.classes = list(images), list(masks), list(classes)
        self.lut, self.palette, self.max_pixels = lut, palette, max_pixels

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int) -> Sample:
        image = read_image(self.images[i], max_pixels=self.max_pixels)
        mask = read_mask(self.masks[i], self.lut, self.palette, len(self.classes))
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self.masks[i]}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{self.images[i]} is {image.shape[1]}x{image.shape[0]}"
            )
        meta = {"index": i, "path": self.images[i], "orig_size": image.shape[:2]}
        return Sample(image=image, semantic_mask=mask, meta=meta)

    def describe(self, i: int) -> str:
        return f"{self.images[i]} + {self.masks[i]}"


def paint_instances(
    masks: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray | None = None
) -> np.ndarray:
    """Instance masks (N, H, W) bool + class indices (N,) -> uint8 (H, W) semantic mask.

    0 = background, label + 1 = class; objects are painted largest first so a small object
    lying on a larger one keeps its pixels; crowd objects paint 255 (ignore), on top.
    """
    n, h, w = masks.shape
    out = np.zeros((h, w), np.uint8)
    if n == 0:
        return out
    crowd = np.zeros(n, bool) if iscrowd is None else np.asarray(iscrowd, bool)
    value = np.where(crowd, IGNORE_INDEX, np.asarray(labels) + 1).astype(np.uint8)
    # paint order: non-crowd by area descending, then crowd; the last painter wins
    area = masks.reshape(n, -1).sum(1)
    order = np.lexsort((-area, crowd))
    stack = masks[order]  # (N, H, W)
    last = n - 1 - np.argmax(stack[::-1], axis=0)  # index of the last object covering a pixel
    covered = stack.any(0)
    out[covered] = value[order][last[covered]]
    return out


class InstanceSegData(SegmentationData):
    """A ``DetectionData`` (COCO / YOLO-seg) seen as semantic masks (``paint_instances``)."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.classes = ["background", *det.classes]

    def __len__(self) -> int:
        return len(self.det)

    def sample(self, i: int) -> Sample:
        s = self.det.sample(i, masks=True)
        rec = self.det.images[i]
        sem = paint_instances(s.masks, s.box_labels, rec.iscrowd)
        return Sample(image=s.image, semantic_mask=sem, meta={**s.meta, "index": i})

    def describe(self, i: int) -> str:
        return self.det.describe(i)


@dataclass
class SegSplits:
    """Train and validation data sharing one class list; ``source`` says what was detected."""

    train: SegmentationData
    val: SegmentationData | None  # None only inside the loader, before the held-out split
    classes: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    # the mask value of each class when the dataset names its classes by id ({value: name});
    # None when class k is stored as value k. Predictions are written in these ids.
    class_ids: list[int] | None = None


def _split(data: SegmentationData, val_fraction: float, seed: int) -> tuple[Any, Any]:
    n = len(data)
    if n < 2:
        raise DataError(f"{n} item(s) cannot be split into train and val; add data")
    order = np.random.default_rng([seed, 3]).permutation(n)
    k = min(n - 1, max(1, round(n * val_fraction)))
    return data.subset(np.sort(order[k:])), data.subset(np.sort(order[:k]))


def _list_images(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return {str(p.relative_to(folder).with_suffix("")): str(p) for p in files}


def pair_folders(images: str | Path, masks: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Image and mask files matched by relative path without extension -> (images, masks,
    notes). Images without a mask are left out and counted in a note (never silently)."""
    images, masks = Path(images), Path(masks)
    for p, what in ((images, "images"), (masks, "masks")):
        if not p.is_dir():
            raise DataError(f"{p}: {what} folder not found")
    imgs, msks = _list_images(images), _list_images(masks)
    common = sorted(set(imgs) & set(msks))
    if not common:
        raise DataError(f"no image in {images} has a mask in {masks} (matched by file name)")
    notes = []
    if len(common) < len(imgs):
        notes.append(f"{len(imgs) - len(common)} image(s) in {images} have no mask; left out")
    return [imgs[k] for k in common], [msks[k] for k in common], notes


def _classes_and_lut(spec: Any, where: str) -> tuple[list[str], np.ndarray | None]:
    """``classes:`` as a list (values 0..K-1) or a {value: name} map -> names and value LUT."""
    if isinstance(spec, dict):
        ids = sorted(int(k) for k in spec)
        if ids and (min(ids) < 0 or max(ids) > 65534):
            raise DataError(f"{where}: class ids must be in [0, 65534], got {ids[0]}..{ids[-1]}")
        names = [str(spec[k] if k in spec else spec[str(k)]) for k in ids]
        if ids == list(range(len(ids))):
            return names, None
        lut = np.full(65536, IGNORE_INDEX, np.uint8)
        if len(ids) > 255:
            raise DataError(f"{where}: {len(ids)} classes; at most 255 fit a uint8 mask")
        lut[ids] = np.arange(len(ids), dtype=np.uint8)
        return names, lut
    if isinstance(spec, (list, tuple)):
        return [str(c) for c in spec], None
    raise DataError(f"{where}: `classes:` must be a list of names or a {{id: name}} mapping")


def _scan_classes(masks: list[str]) -> list[str]:
    top = 0
    for m in masks:  # one read per mask; only when no class list was given
        v = read_mask(m)
        v = v[v != IGNORE_INDEX]
        top = max(top, int(v.max(initial=0)))
    return [str(i) for i in range(top + 1)]


def read_mask_yaml(path: str | os.PathLike[str]) -> SegSplits:
    """A mask dataset YAML: ``train``/``val`` each ``{images: DIR, masks: DIR}`` (relative to
    the YAML), ``classes`` a list or ``{value: name}``, optional ``palette``."""
    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{p}: cannot read the dataset YAML ({e})") from None
    root = p.parent / str(cfg.get("path", "."))
    notes: list[str] = []
    parts = {}
    for split in ("train", "val"):
        entry = cfg.get(split)
        if entry is None:
            continue
        if not isinstance(entry, dict) or "images" not in entry or "masks" not in entry:
            raise DataError(f"{p}: `{split}:` must have `images:` and `masks:` folders")
        imgs, msks, n = pair_folders(root / entry["images"], root / entry["masks"])
        parts[split], notes = (imgs, msks), notes + n
    if "train" not in parts:
        raise DataError(f"{p}: no `train:` split with images: and masks:")
    class_ids = None
    if "classes" in cfg or "names" in cfg:
        spec = cfg.get("classes", cfg.get("names"))
        classes, lut = _classes_and_lut(spec, str(p))
        if lut is not None:
            class_ids = sorted(int(k) for k in spec)
    else:
        classes, lut = _scan_classes(parts["train"][1]), None
    palette = np.asarray(cfg["palette"], np.int64) if cfg.get("palette") else None

    def make(split: str) -> MaskFolderData:
        return MaskFolderData(*parts[split], classes, lut=lut, palette=palette)

    train = make("train")
    val = make("val") if "val" in parts else None
    return SegSplits(train, val, classes, f"mask yaml {p}", notes, class_ids)


def _mask_yaml_in(folder: Path) -> Path | None:
    for name in ("config.yaml", "data.yaml", "dataset.yaml"):
        f = folder / name
        if f.is_file():
            try:
                cfg = yaml.safe_load(f.read_text()) or {}
            except yaml.YAMLError:
                continue
            if isinstance(cfg.get("train"), dict) and "masks" in cfg["train"]:
                return f
    return None


def _mask_folders(folder: Path) -> SegSplits | None:
    imgs, msks = folder / "images", folder / "masks"
    if not (imgs.is_dir() and msks.is_dir()):
        return None
    subs = {d.name for d in imgs.iterdir() if d.is_dir()} & {
        d.name for d in msks.iterdir() if d.is_dir()
    }
    train_name = next((s for s in sorted(subs) if s.startswith("train")), None)
    val_name = next((s for s in sorted(subs) if s.startswith(("val", "test"))), None)
    if train_name and val_name:
        tr = pair_folders(imgs / train_name, msks / train_name)
        va = pair_folders(imgs / val_name, msks / val_name)
        classes = _scan_classes(tr[1] + va[1])
        return SegSplits(
            MaskFolderData(tr[0], tr[1], classes),
            MaskFolderData(va[0], va[1], classes),
            classes,
            f"mask folders {folder} ({train_name}/{val_name})",
            tr[2] + va[2],
        )
    i, m, notes = pair_folders(imgs, msks)
    classes = _scan_classes(m)
    return SegSplits(MaskFolderData(i, m, classes), None, classes, f"mask folders {folder}", notes)


def _instance_splits(spec: str) -> SegSplits:
    fmt = detect_format(spec)
    if fmt == "voc":
        raise DataError(f"{spec}: VOC detection boxes have no masks; {ACCEPTED}")
    train = read_dataset(spec, fmt, split="train")
    val = None
    if fmt == "yolo":
        try:
            val = read_dataset(spec, fmt, split="val")
        except DataError:
            val = None
    return SegSplits(
        InstanceSegData(train),
        InstanceSegData(val) if val is not None and len(val) else None,
        ["background", *train.classes],
        f"{fmt} instances {spec}",
    )


def _shard_splits(folder: Path) -> SegSplits:
    """A packed folder's (train, val) shard readers as ``SegmentationData``."""
    train, val = shard_splits(folder)
    for part, sub in ((train, "train"), (val, "val")):
        if part is not None and not isinstance(part, ShardSegData):
            where = folder / sub / META if is_shard_folder(folder / sub) else folder / META
            raise DataError(
                f"{where}: these shards hold {type(part).__name__} samples, not segmentation "
                "masks; pack them with `cvcraft pack task=segment`"
            )

    def view(part: ShardSegData) -> SegmentationData:
        # a view on every item: gives the shard reader ``subset`` (splits, fraction=)
        return SubsetSegData(part, np.arange(len(part)))  # type: ignore[arg-type]

    if val is not None and list(val.classes) != list(train.classes):
        raise DataError(f"{folder}: val classes {val.classes} differ from train {train.classes}")
    return SegSplits(
        view(train), view(val) if val is not None else None, list(train.classes), f"shards {folder}"
    )


def load_segmentation(
    data: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    imgsz: int = 64,
    shapes_n: tuple[int, int] = (2000, 400),
) -> SegSplits:
    """Detect what ``data`` is (module docstring) and return ``SegSplits(train, val, classes)``.

    Sources without a validation split are split randomly (``val_fraction``, ``seed``).
    """
    spec = os.fspath(data)
    m = re.fullmatch(r"shapes(?::(\d+))?", spec)
    if m and not os.path.exists(spec):
        n = int(m.group(1)) if m.group(1) else shapes_n[0]
        n_val = max(1, n // 5) if m.group(1) else shapes_n[1]
        train = make_shapes_segmentation(n, imgsz, seed, "train")
        val = make_shapes_segmentation(n_val, imgsz, seed, "val")
        return SegSplits(train, val, train.classes, "shapes")
    p = Path(spec)
    if not p.exists():
        raise DataError(f"{spec}: does not exist. Accepted: {ACCEPTED}")
    splits: SegSplits | None = None
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        try:
            cfg = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{p}: invalid YAML ({e})") from None
        if isinstance(cfg.get("train"), dict):
            splits = read_mask_yaml(p)
    elif p.is_dir() and (is_shard_folder(p) or is_shard_folder(p / "train")):
        splits = _shard_splits(p)
    elif p.is_dir():
        y = _mask_yaml_in(p)
        splits = read_mask_yaml(y) if y else _mask_folders(p)
    if splits is None:
        splits = _instance_splits(spec)
    if splits.val is None:
        splits.train, splits.val = _split(splits.train, val_fraction, seed)
        splits.notes.append(f"no val split: {val_fraction:.0%} of the images held out")
    return splits


def with_class_instances(sample: Sample, background: int = 0) -> Sample:
    """Give a semantic-only sample one "instance" per class present (its whole region), so
    instance-level multi-sample transforms (Copy-Paste) can move class regions between images.

    Classes ``background`` and 255 are not instances; boxes are the regions' tight boxes.
    """
    if sample.masks is not None or sample.semantic_mask is None:
        return sample
    sem = sample.semantic_mask
    present = np.unique(sem)
    present = present[(present != background) & (present != IGNORE_INDEX)]
    masks = sem[None] == present[:, None, None]  # (M, H, W)
    boxes = masks_to_boxes(masks) if len(present) else np.zeros((0, 4), np.float32)
    return sample.replace(masks=masks, boxes=boxes, box_labels=present.astype(np.int64))


def segment_dataset(
    data: SegmentationData,
    transform: Callable[[Sample, np.random.Generator], Sample] | None = None,
    seed: int = 0,
    multi: Sequence[tuple[Any, float]] = (),
) -> AugmentedDataset:
    """Items ``(epoch, index)`` -> transformed ``Sample``: ``multi`` is a list of
    ``(transform, p)`` multi-sample transforms (Mosaic, Copy-Paste), each applied with
    probability p (one draw each, always made; partners from the item's generator), then
    ``transform``. Samples going through a multi-sample transform carry per-class instances
    (``with_class_instances``), dropped afterwards."""
    item = ItemPipeline(
        transform, multi, draw=True, prepare=with_class_instances, cleanup=drop_instances
    )
    return AugmentedDataset(data, item, seed)


def drop_instances(sample: Sample) -> Sample:
    """The semantic sample again after a multi-sample step (instances were its vehicle)."""
    return sample.replace(masks=None, boxes=None, box_labels=None)
