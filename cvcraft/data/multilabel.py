"""Multi-label data: images with a multi-hot target (several classes per image).

The target rides in ``Sample.extras["multi_hot"]`` (a registered ``label`` target, so
geometry leaves it alone and collate stacks it): int8 (C,) with 1 = present, 0 = absent,
-1 = unknown (left out of losses and metrics). Readers:

- a CSV ``path,labels`` with labels joined by ``|`` (``a.jpg,cat|dog``; empty = none), or a
  wide CSV whose header is ``path,<class1>,<class2>,...`` with cells 1 / 0 / -1 (unknowns);
  header and comment rules as ``data/csvlist.py``; paths relative to the CSV's folder;
- a folder holding ``labels.csv`` (one random split) or ``train.csv`` + ``val.csv``;
- any detection dataset (COCO JSON, YOLO YAML/folder, VOC): an image's labels are the
  classes of its boxes, so coco128 becomes an 80-class multi-label set;
- ``shapes[:N]``: multi-object synthetic scenes, the target being the set of shapes shown.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.data.classification import ArrayData, ClassificationData, FileListData
from cvcraft.data.csvlist import _LABEL_HEADERS, _PATH_HEADERS
from cvcraft.data.datasets import DataSplits
from cvcraft.data.detection import convert as det
from cvcraft.data.extra_target import ExtraTargetData
from cvcraft.data.folds import JoinedData, fold_of, iterative_stratification
from cvcraft.data.shapes import SHAPE_CLASSES, render_scene, split_code
from cvcraft.errors import DataError
from cvcraft.structures import register_target

MULTI_HOT = "multi_hot"
register_target(MULTI_HOT, "label")

ACCEPTED = (
    "'shapes[:N]'; a .csv of path,label1|label2 rows (or path,<class>... with 1/0/-1 cells); a "
    "folder with labels.csv or train.csv + val.csv; a detection dataset (COCO .json, YOLO "
    ".yaml or folder, VOC folder) whose box classes become image labels"
)


class MultiLabelData(ExtraTargetData):
    """Images and their multi-hot targets int8 (N, C) in {1, 0, -1} (``extras["multi_hot"]``);
    a ``SampleSource`` for ``AugmentedDataset``."""

    extra = MULTI_HOT

    def __init__(
        self, images: ClassificationData, targets: Any, classes: Sequence[str], source: str = ""
    ) -> None:
        t = np.asarray(targets, dtype=np.int8).reshape(len(images), len(classes))
        if t.size and not np.isin(t, (-1, 0, 1)).all():
            raise DataError(f"{source}: multi-hot targets must be 1, 0 or -1")
        super().__init__(images, t, classes, source)

    @property
    def targets(self) -> np.ndarray:
        return self.values

    def positives(self) -> np.ndarray:
        """Known positives per class, int64 (C,)."""
        return (self.targets == 1).sum(0).astype(np.int64)

    def negatives(self) -> np.ndarray:
        """Known negatives per class, int64 (C,)."""
        return (self.targets == 0).sum(0).astype(np.int64)


def pooled(splits: DataSplits) -> MultiLabelData:
    """Train then val as one set (what k-fold cross-validation divides)."""
    tr, va = splits.train, splits.val
    targets = np.concatenate([tr.targets, va.targets])
    return MultiLabelData(JoinedData(tr.images, va.images), targets, tr.classes, tr.source)


def fold_splits(splits: DataSplits, folds: int, fold: int, seed: int) -> DataSplits:
    """Fold ``fold`` of ``folds`` (iterative stratification over train + val) as val, the
    other folds as train; the pool is train then val (``fold_index``: its val rows)."""
    pool = pooled(splits)
    ids = iterative_stratification(pool.targets, folds, seed)
    return fold_of(splits, pool, ids, fold, folds)


def _files(paths: list[str], classes: Sequence[str]) -> FileListData:
    """A file store (its single-label ``labels`` are unused zeros)."""
    return FileListData(paths, np.zeros(len(paths), np.int64), list(classes) or ["_"])


def read_multilabel_csv(
    csv_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
) -> MultiLabelData:
    """Read a ``path,labels`` (``|``-joined) or wide ``path,<class>...`` CSV (module docstring).

    ``classes`` fixes the class list (a label outside it is an error naming ``file:line``);
    otherwise the sorted distinct labels (or the wide header) are the classes.
    """
    name = os.fspath(csv_path)
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(name))
    try:
        with open(name, newline="", encoding="utf-8") as fh:
            rows = [(k + 1, r) for k, r in enumerate(csv.reader(fh))]
    except OSError as e:
        raise DataError(f"{name}: cannot read the label CSV ({e})") from None
    rows = [(ln, r) for ln, r in rows if r and r[0].strip() and not r[0].startswith("#")]
    if not rows:
        raise DataError(f"{name}: no rows; expected path,label1|label2 lines")
    head = [c.strip().lower() for c in rows[0][1]]
    wide = head[0] in _PATH_HEADERS and len(head) > 2
    if head[0] in _PATH_HEADERS or (len(head) > 1 and head[1] in _LABEL_HEADERS):
        header, rows = [c.strip() for c in rows[0][1]], rows[1:]
    paths: list[str] = []
    if wide:
        names = header[1:]
        if classes is not None and list(classes) != names:
            raise DataError(f"{name}: header classes {names[:10]} differ from classes=[...]")
        targets = np.zeros((len(rows), len(names)), np.int8)
        for k, (ln, r) in enumerate(rows):
            if len(r) != len(header) or any(v.strip() not in ("1", "0", "-1") for v in r[1:]):
                raise DataError(
                    f"{name}:{ln}: need {len(header)} fields (path then 1/0/-1 per class), got {r}"
                )
            paths.append(r[0].strip())
            targets[k] = [int(v) for v in r[1:]]
        classes = names
    else:
        label_sets = []
        for ln, r in rows:
            if len(r) > 2:
                raise DataError(
                    f"{name}:{ln}: expected path,label1|label2 (2 fields), got {len(r)}; "
                    "quote a path with commas"
                )
            paths.append(r[0].strip())
            label_sets.append((ln, [s.strip() for s in (r[1] if len(r) > 1 else "").split("|")
                                    if s.strip()]))  # fmt: skip
        found = sorted({lab for _, labs in label_sets for lab in labs})
        classes = list(classes) if classes is not None else found
        index = {c: j for j, c in enumerate(classes)}
        targets = np.zeros((len(rows), len(classes)), np.int8)
        for k, (ln, labs) in enumerate(label_sets):
            bad = [lab for lab in labs if lab not in index]
            if bad:
                raise DataError(
                    f"{name}:{ln}: label {bad[0]!r} is not in the class list "
                    f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''}); "
                    "fix the row or pass the full classes=[...]"
                )
            targets[k, [index[lab] for lab in labs]] = 1
    if not classes:
        raise DataError(f"{name}: no labels at all; a multi-label set needs classes")
    full = [p if os.path.isabs(p) else os.path.join(base, p) for p in paths]
    missing = [(ln, p) for (ln, _), p in zip(rows, full) if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{name}:{missing[0][0]}: image {missing[0][1]} does not exist "
                        f"({len(missing)} missing)")  # fmt: skip
    return MultiLabelData(_files(full, classes), targets, classes, name)


def from_detection(data: Any) -> MultiLabelData:
    """Image-level labels of a ``DetectionData``: class c is present if a box of it is."""
    n, c = len(data.images), len(data.classes)
    targets = np.zeros((n, c), np.int8)
    rows = np.repeat(np.arange(n), [len(r.labels) for r in data.images])
    cols = np.concatenate([r.labels for r in data.images]) if n else np.zeros(0, np.int64)
    targets[rows, cols.astype(np.int64)] = 1
    paths = [r.path for r in data.images]
    return MultiLabelData(_files(paths, data.classes), targets, data.classes, data.source)


def make_multilabel_shapes(
    n: int,
    imgsz: int = 48,
    seed: int = 0,
    split: str = "train",
    n_objects: tuple[int, int] = (1, 3),
) -> MultiLabelData:
    """``n`` synthetic scenes of ``n_objects`` shapes; the target is the set of classes drawn
    (visible ones: an object mostly hidden is left out of the scene). Image ``i`` depends only
    on (seed, split, i), as in ``make_shapes``."""
    images = np.empty((n, imgsz, imgsz, 3), np.uint8)
    targets = np.zeros((n, len(SHAPE_CLASSES)), np.int8)
    code = split_code(split)
    for i in range(n):  # one scene per image; each scene is vectorized
        s = render_scene(np.random.default_rng([seed, code, i]), imgsz, n_objects,
                         size_range=(0.18, 0.32))  # fmt: skip
        images[i] = s.image
        targets[i, s.box_labels] = 1
    src = f"shapes-multilabel(n={n}, imgsz={imgsz}, seed={seed}, split={split})"
    store = ArrayData(images, np.zeros(n, np.int64), list(SHAPE_CLASSES), src)
    return MultiLabelData(store, targets, SHAPE_CLASSES, src)


def random_split(
    data: MultiLabelData, val_fraction: float, seed: int
) -> tuple[MultiLabelData, MultiLabelData]:
    """A seeded random (train, val) split; val gets at least one image."""
    if not 0 < val_fraction < 1 or len(data) < 2:
        raise DataError(
            f"{data.source}: cannot split {len(data)} images with val_fraction={val_fraction}; "
            "give a val split or more images"
        )
    perm = np.random.default_rng([seed, 19]).permutation(len(data))
    k = max(1, int(round(len(data) * val_fraction)))
    return data.subset(np.sort(perm[k:])), data.subset(np.sort(perm[:k]))


def load_multilabel(
    data: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    imgsz_hint: int | None = None,
    classes: Sequence[str] | None = None,
    shapes_n: tuple[int, int] = (2000, 400),
) -> DataSplits:
    """``DataSplits(train, val, classes)`` of multi-label data (formats: module docstring)."""
    spec = os.fspath(data)
    m = re.fullmatch(r"shapes(?::(\d+))?", spec)
    if m and not os.path.exists(spec):
        n_train = int(m.group(1)) if m.group(1) else shapes_n[0]
        n_val = max(2, n_train // 5) if m.group(1) else shapes_n[1]
        size = imgsz_hint or 48
        train = make_multilabel_shapes(n_train, size, seed, "train")
        val = make_multilabel_shapes(n_val, size, seed, "val")
        return DataSplits(train, val, list(SHAPE_CLASSES), "shapes")  # type: ignore[arg-type]
    if not os.path.exists(spec):
        raise DataError(f"data={spec}: no such file or folder; accepted: {ACCEPTED}")
    fixed = list(classes) if classes else None
    if spec.lower().endswith(".csv"):
        train, val = random_split(read_multilabel_csv(spec, classes=fixed), val_fraction, seed)
        return _checked(DataSplits(train, val, train.classes, "csv"), fixed)  # type: ignore
    if os.path.isdir(spec):
        csvs = {f: os.path.join(spec, f) for f in ("labels.csv", "train.csv", "val.csv")}
        if os.path.isfile(csvs["train.csv"]) and os.path.isfile(csvs["val.csv"]):
            train = read_multilabel_csv(csvs["train.csv"], classes=fixed)
            val = read_multilabel_csv(csvs["val.csv"], classes=train.classes)
            return _checked(DataSplits(train, val, train.classes, "csv"), fixed)  # type: ignore
        if os.path.isfile(csvs["labels.csv"]):
            both = read_multilabel_csv(csvs["labels.csv"], classes=fixed)
            train, val = random_split(both, val_fraction, seed)
            return _checked(DataSplits(train, val, train.classes, "csv"), fixed)  # type: ignore
    try:
        fmt = det.detect_format(spec)
    except DataError as e:
        raise DataError(f"data={spec}: {e}. Accepted: {ACCEPTED}") from None
    source = f"detection ({fmt})"
    if fmt == "coco" and os.path.isfile(spec):
        train, val = random_split(from_detection(det.read_coco(spec)), val_fraction, seed)
        return _checked(DataSplits(train, val, train.classes, source), fixed)  # type: ignore
    train = from_detection(det.read_dataset(spec, fmt, split="train"))
    try:
        val = from_detection(det.read_dataset(spec, fmt, split="val"))
    except DataError:  # no val split in the dataset: split the training images
        train, val = random_split(train, val_fraction, seed)
        return _checked(DataSplits(train, val, train.classes, source), fixed)  # type: ignore
    if val.classes != train.classes:
        raise DataError(f"{spec}: the val split's classes differ from the train split's")
    return _checked(DataSplits(train, val, train.classes, source), fixed)  # type: ignore


def _checked(splits: DataSplits, classes: list[str] | None) -> DataSplits:
    if classes and list(splits.classes) != classes:
        unknown = sorted(set(splits.classes) - set(classes))
        raise DataError(
            f"the data's classes differ from classes=[...] (not in the list: {unknown[:10]}); "
            "fix the list or the data (order matters)"
        )
    return splits
