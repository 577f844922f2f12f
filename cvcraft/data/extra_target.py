"""A ``SampleSource`` of images and one extra target per image: what multi-label data
(``extras["multi_hot"]``) and re-ID evaluation data (``extras["reid"]``) have in common.

Subclasses set ``extra`` (the registered target name) and may validate ``values`` (N, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cvcraft.data.classification import ClassificationData
from cvcraft.structures import Sample


class ExtraTargetData:
    """Images (any ``ClassificationData`` store: files or an array) + ``values[i]`` carried
    as ``Sample.extras[self.extra]``; ``classes`` name the task's classes."""

    extra = ""

    def __init__(
        self, images: ClassificationData, values: Any, classes: Sequence[str], source: str = ""
    ) -> None:
        self.images, self.values = images, np.asarray(values)
        self.classes = list(classes)
        self.source = source

    def __len__(self) -> int:
        return len(self.values)

    def load_image(self, i: int) -> np.ndarray:
        return self.images.load_image(i)

    def describe(self, i: int) -> str:
        return self.images.describe(i)

    def sample(self, i: int) -> Sample:
        """Item ``i`` with its extra target and meta ``index``/``path``/``orig_size``."""
        image = self.load_image(i)
        meta = {"index": int(i), "path": self.describe(i), "orig_size": image.shape[:2]}
        return Sample(image=image, meta=meta, extras={self.extra: self.values[i].copy()})

    def subset(self, indices: Any) -> Any:
        """The items at ``indices`` (ints or a boolean mask), same classes and kind."""
        rows = np.flatnonzero(indices) if np.asarray(indices).dtype == bool else indices
        rows = np.asarray(rows, dtype=np.int64)
        return type(self)(self.images.subset(rows), self.values[rows], self.classes, self.source)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes)"
