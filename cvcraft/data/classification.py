"""Classification data: a list of (image, class index) items, however they are stored.

Every reader returns a ``ClassificationData``; the dataset/loader layer only needs
``classes``, ``labels``, ``load_image(i)`` (uint8 (H, W, 3) RGB) and ``describe(i)`` (where
item ``i`` lives, for error messages). Two storages cover the formats: ``FileListData``
(image files on disk) and ``ArrayData`` (an in-memory or memmapped uint8 array).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.data.io import DEFAULT_MAX_PIXELS, read_image
from cvcraft.errors import DataError
from cvcraft.structures import Sample


def as_labels(labels: Any, n: int | None = None, *, what: str = "labels") -> np.ndarray:
    """Labels as a 1-D int64 array; a non-integer or mis-sized input raises ``DataError``."""
    arr = np.asarray(labels)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"{what} must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    if n is not None and len(arr) != n:
        raise DataError(f"{what}: {len(arr)} labels for {n} items; they must match one to one")
    return arr.astype(np.int64, copy=False)


def as_indices(indices: Any, n: int) -> np.ndarray:
    """Integer indices (or a boolean mask) into ``n`` items as int64; out of range -> IndexError."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"subset index out of range for {n} items")
    return np.where(idx < 0, idx + n, idx)


class ClassificationData(ABC):
    """Abstract list of labelled images: ``classes``, ``labels`` (int64 (N,)), ``load_image``."""

    classes: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def load_image(self, i: int) -> np.ndarray:
        """Item ``i``'s image, uint8 (H, W, 3) RGB."""

    @abstractmethod
    def describe(self, i: int) -> str:
        """Where item ``i`` comes from (a path or ``source[row]``), for messages."""

    def subset(self, indices: Any) -> ClassificationData:
        """The items at ``indices`` (ints or a boolean mask), same classes."""
        return SubsetData(self, indices)

    def shard_ids(self) -> np.ndarray | None:
        """Item -> tar shard, int64 (N,), for data read from shards; None otherwise.

        A DDP training loader uses it to give each rank whole shards (``ShardSampler``).
        """
        return None

    def class_counts(self) -> np.ndarray:
        """Items per class, int64 (num_classes,)."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def sample(self, i: int) -> Sample:
        """Item ``i`` as a ``Sample`` with ``label`` and meta ``index``/``path``/``orig_size``."""
        image = self.load_image(i)
        meta = {"index": int(i), "path": self.describe(i), "orig_size": image.shape[:2]}
        return Sample(image=image, label=int(self.labels[i]), meta=meta)

    def reorder_classes(self, classes: list[str]) -> None:
        """Put the same classes in the order ``classes`` gives (labels re-indexed in place):
        ``classes=[...]`` decides which index each class gets."""
        if sorted(classes) != sorted(self.classes) or len(set(classes)) != len(classes):
            raise DataError(f"cannot reorder classes {self.classes} into {classes}")
        lut = np.array([list(classes).index(c) for c in self.classes], dtype=np.int64)
        self.labels = lut[self.labels]
        self.classes = list(classes)

    def _validate_labels(self) -> None:
        """Every label must index ``classes``; else name the first bad item and the class count."""
        n = len(self.classes)
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= n))
        if bad.size:
            i = int(bad[0])
            preview = ", ".join(self.classes[:5]) + (", ..." if n > 5 else "")
            raise DataError(
                f"{self.describe(i)}: label {int(self.labels[i])} is outside [0, {n}) - the class"
                f" list has {n} classes ({preview}); {bad.size} item(s) have such labels."
                " Fix the labels or pass the full class list"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {len(self.classes)} classes)"


class SubsetData(ClassificationData):
    """A view of some items of another ``ClassificationData`` (no images copied)."""

    def __init__(self, base: ClassificationData, indices: Any) -> None:
        rows = as_indices(indices, len(base))
        if isinstance(base, SubsetData):  # flatten so a chain of subsets stays one hop
            rows, base = base.rows[rows], base.base
        self.base, self.rows = base, rows
        self.classes = base.classes
        self.labels = base.labels[rows]

    def load_image(self, i: int) -> np.ndarray:
        return self.base.load_image(int(self.rows[i]))

    def describe(self, i: int) -> str:
        return self.base.describe(int(self.rows[i]))

    def shard_ids(self) -> np.ndarray | None:
        ids = self.base.shard_ids()
        return None if ids is None else ids[self.rows]


class FileListData(ClassificationData):
    """Images as files: ``paths[i]`` (joined to ``root`` when given) has class ``labels[i]``.

    ``ignored_files`` counts non-image files a reader skipped, so it can be reported.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: Any,
        classes: Sequence[str],
        root: str | os.PathLike[str] | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        ignored_files: int = 0,
    ) -> None:
        base = os.fspath(root) if root is not None else None
        self.paths = [os.path.join(base, os.fspath(p)) if base else os.fspath(p) for p in paths]
        self.root = base
        self.classes = list(classes)
        self.labels = as_labels(labels, len(self.paths))
        self.max_pixels = max_pixels
        self.ignored_files = ignored_files
        self._validate_labels()

    def load_image(self, i: int) -> np.ndarray:
        return read_image(self.paths[i], max_pixels=self.max_pixels)

    def describe(self, i: int) -> str:
        return self.paths[i]

    def subset(self, indices: Any) -> FileListData:
        rows = as_indices(indices, len(self))
        return FileListData(
            [self.paths[r] for r in rows],
            self.labels[rows],
            self.classes,
            max_pixels=self.max_pixels,
        )


class ArrayData(ClassificationData):
    """Images in one uint8 array (N, H, W, C), C = 1 or 3; ``source`` names where it came from.

    C = 1 (MNIST-like) is kept as is in memory and repeated to 3 channels in ``load_image``,
    so the pipeline stays RGB at a third of the memory.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Any,
        classes: Sequence[str],
        source: str,
        *,
        rows: np.ndarray | None = None,
    ) -> None:
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise DataError(
                f"{source}: images must be uint8 (N, H, W, 1|3), got {images.dtype} {images.shape}"
            )
        self.images = images
        self.rows = rows  # None = all rows in order; subsets index without copying pixels
        n = len(images) if rows is None else len(rows)
        self.classes = list(classes)
        self.labels = as_labels(labels, n)
        self.source = source
        self._validate_labels()

    def _row(self, i: int) -> int:
        return int(i) if self.rows is None else int(self.rows[i])

    def load_image(self, i: int) -> np.ndarray:
        img = self.images[self._row(i)]
        if img.shape[2] == 1:
            return np.repeat(img, 3, axis=2)
        return np.array(img)  # a copy: callers may modify it without touching the store

    def describe(self, i: int) -> str:
        return f"{self.source}[{self._row(i)}]"

    def subset(self, indices: Any) -> ArrayData:
        rows = as_indices(indices, len(self))
        base_rows = rows if self.rows is None else self.rows[rows]
        return ArrayData(self.images, self.labels[rows], self.classes, self.source, rows=base_rows)
