"""From "what the user pointed at" to train/val ``ClassificationData``, and the torch Dataset.

``load_classification(data)`` accepts, in this order of detection:

- ``"shapes"`` or ``"shapes:N"``: the synthetic shapes (N train images, N // 5 val);
- a ``.csv`` file of ``path,label`` rows: stratified split;
- a CIFAR-10/100 python-batch folder: train batches + test batch as val;
- an IDX (MNIST-style) folder: ``train-*`` + ``t10k-*`` as val;
- a folder with ``train/`` and ``val/`` (or ``test/``) class-folder sub-folders: those;
  a folder with only ``train/``: that, split;
- a folder of class folders: stratified split.

``ClassifyDataset`` turns one ``ClassificationData`` into a torch ``Dataset`` whose items are
transformed ``Sample``\\ s; item ``(epoch, index)`` draws its randomness from
``np.random.default_rng([seed, epoch, index])``, so augmentation does not depend on the
number of workers or on a resume.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.cache import DecodedCache
from cvcraft.data.cifar import find_cifar_dir, read_cifar
from cvcraft.data.classification import ClassificationData, FileListData
from cvcraft.data.csvlist import read_csv_list
from cvcraft.data.idx import find_idx_pair, read_idx, read_idx_file
from cvcraft.data.imagefolder import list_class_folders, read_imagefolder
from cvcraft.data.shapes import make_shapes
from cvcraft.data.split import stratified_split
from cvcraft.data.webdataset import is_shard_folder, shard_splits
from cvcraft.errors import DataError

ACCEPTED = (
    "'shapes' or 'shapes:N' (synthetic); a .csv of path,label rows; a CIFAR-10/100 python-batch"
    " folder; an MNIST-style IDX folder; a folder with train/ and val/ (or test/) class folders;"
    " a folder of class folders (root/<class>/<images>); a tar-shard folder from `cvcraft pack`"
)


@dataclass
class DataSplits:
    """Train and validation data sharing one class list; ``source`` says what was detected."""

    train: ClassificationData
    val: ClassificationData
    classes: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)


def _align_classes(train: FileListData, val: FileListData, where: str) -> FileListData:
    """Re-index ``val`` labels into ``train``'s class list (val may lack some classes)."""
    if val.classes == train.classes:
        return val
    extra = sorted(set(val.classes) - set(train.classes))
    if extra:
        raise DataError(
            f"{where}: validation classes {extra} have no training folder; "
            "add them to train/ or remove them from the validation folder"
        )
    lut = np.array([train.classes.index(c) for c in val.classes], dtype=np.int64)
    return FileListData(val.paths, lut[val.labels], train.classes, max_pixels=val.max_pixels)


def _split(data: ClassificationData, val_fraction: float, seed: int) -> tuple[Any, Any]:
    tr, va = stratified_split(data.labels, val_fraction, seed)
    return data.subset(tr), data.subset(va)


def _put_classes_in_order(splits: DataSplits, classes: list[str], spec: str) -> None:
    """``classes=[...]`` names the data's classes in the label order the user wants: the same
    set in another order re-indexes the labels; any other difference is an error."""
    unknown = sorted(set(splits.classes) - set(classes))
    missing = sorted(set(classes) - set(splits.classes))
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    problems = [
        f"the data has {unknown} that the list lacks" if unknown else "",
        f"the list has {missing} that the data lacks" if missing else "",
        f"the list repeats {repeated}" if repeated else "",
    ]
    if any(problems):
        raise DataError(
            f"{spec}: classes=[...] must name each of the data's classes once, in the label "
            f"order you want: {'; '.join(p for p in problems if p)}. The data's classes: "
            f"{', '.join(splits.classes)}"
        )
    for part in (splits.train, splits.val):
        if part is not None:
            part.reorder_classes(classes)
    splits.classes = list(classes)
    splits.notes.append(f"classes in the order classes= gives: {', '.join(classes)}")


def load_classification(
    data: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    imgsz_hint: int | None = None,
    cache: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    shapes_n: tuple[int, int] = (10_000, 2_000),
    classes: list[str] | None = None,
) -> DataSplits:
    """Detect the format of ``data`` and return ``DataSplits(train, val, classes)``.

    ``val_fraction``/``seed`` drive the stratified split when the source has no validation
    split. ``imgsz_hint`` sets the synthetic shapes' size (default 32). ``cache`` decodes file
    datasets once into a ``DecodedCache`` under ``cache_dir``; ``skip_bad`` then drops (and
    counts) unreadable images instead of failing (``skip_bad`` alone also builds the cache,
    because only decoding every image finds the bad ones). ``classes`` fixes the class list:
    a CSV label outside it is an error naming ``file:line``; for the other formats the
    classes found must be exactly these.
    """
    spec = os.fspath(data)
    m = re.fullmatch(r"shapes(?::(\d+))?", spec)
    if m and not os.path.exists(spec):
        n_train = int(m.group(1)) if m.group(1) else shapes_n[0]
        n_val = max(1, n_train // 5) if m.group(1) else shapes_n[1]
        size = imgsz_hint or 32
        train = make_shapes(n_train, size, seed, "train")
        val = make_shapes(n_val, size, seed, "val")
        splits = DataSplits(train, val, train.classes, "shapes")
    else:
        splits = _detect(spec, val_fraction, seed, classes)
    if classes and list(splits.classes) != list(classes):
        _put_classes_in_order(splits, [str(c) for c in classes], spec)
    # Finding the bad images means decoding them all once, which is what the cache does;
    # so skip_bad implies the cache.
    if cache or skip_bad:
        parts = []
        for part in (splits.train, splits.val):
            if isinstance(part, FileListData):
                part = DecodedCache(part, cache_dir, skip_bad=skip_bad)
                if part.skipped:
                    splits.notes.append(
                        f"skipped {len(part.skipped)} unreadable image(s), "
                        f"first: {part.skipped[0][1]}"
                    )
            parts.append(part)
        splits.train, splits.val = parts
    return splits


def _detect(
    spec: str, val_fraction: float, seed: int, classes: list[str] | None = None
) -> DataSplits:
    if os.path.isfile(spec) and spec.lower().endswith(".csv"):
        full = read_csv_list(spec, classes=classes or None)
        train, val = _split(full, val_fraction, seed)
        return DataSplits(train, val, full.classes, "csv")
    if not os.path.isdir(spec):
        what = "does not exist" if not os.path.exists(spec) else "is not a folder or a .csv"
        raise DataError(f"{spec}: {what}. Accepted: {ACCEPTED}")

    if is_shard_folder(spec) or is_shard_folder(os.path.join(spec, "train")):
        train, val = shard_splits(spec)  # tar shards written by `cvcraft pack`
        if not isinstance(train, ClassificationData):
            raise DataError(f"{spec}: these shards hold {train.meta['task']} data, not classify")
        if val is None:
            train, val = _split(train, val_fraction, seed)
        return DataSplits(train, val, train.classes, "shards")

    if find_cifar_dir(spec) is not None:
        train, val = read_cifar(spec, "train"), read_cifar(spec, "test")
        return DataSplits(train, val, train.classes, "cifar")

    try:
        tr_pair = find_idx_pair(spec, "train")
    except DataError:
        tr_pair = None
    if tr_pair is not None:
        te_pair = find_idx_pair(spec, "test")
        top = int(max(read_idx_file(tr_pair[1]).max(), read_idx_file(te_pair[1]).max()))
        classes = [str(i) for i in range(top + 1)]  # one class list for both splits
        return DataSplits(read_idx(*tr_pair, classes), read_idx(*te_pair, classes), classes, "idx")

    sub = list_class_folders(spec)
    if "train" in sub:
        train_full = read_imagefolder(os.path.join(spec, "train"))
        for name in ("val", "valid", "validation", "test"):
            if name in sub:
                where = os.path.join(spec, name)
                val = _align_classes(train_full, read_imagefolder(where), where)
                return DataSplits(train_full, val, train_full.classes, f"imagefolder train/{name}")
        train, val = _split(train_full, val_fraction, seed)
        return DataSplits(train, val, train_full.classes, "imagefolder train/ (split)")
    if sub:
        full = read_imagefolder(spec)
        train, val = _split(full, val_fraction, seed)
        return DataSplits(train, val, full.classes, "imagefolder (split)")
    raise DataError(f"{spec}: no dataset recognized. Accepted: {ACCEPTED}")


# The classification dataset is the one dataset every task uses (``data/augmented.py``);
# the name stays for code that reads better with it.
ClassifyDataset = AugmentedDataset
