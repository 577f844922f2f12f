"""Problems found in a detection dataset, and the one switch between *raise* and *report*.

Every reader takes an ``Issues`` collector. In strict mode (what ``read_coco`` & co. use)
the first problem raises ``DataError`` naming the file and line; in collecting mode (what
``check_dataset`` uses) each problem is recorded, the bad item is skipped, and reading goes
on, so one pass lists *every* problem. The parsing logic therefore exists once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cvcraft.errors import DataError

# The kinds ``check_dataset`` reports; a message says what is wrong and what to do.
PROBLEM_KINDS = (
    "malformed",  # unparsable JSON/XML/YAML, a bad txt line, a missing or mistyped key
    "unknown_class",  # class id / category id / name not in the class list
    "duplicate_id",  # two images or two annotations with the same id / file stem
    "missing_image",  # the image file does not exist
    "unreadable_image",  # the image exists but cannot be decoded
    "size_mismatch",  # the annotated width/height differ from the image's
    "out_of_bounds",  # a box reaches outside the image
    "empty_box",  # zero or negative width or height
    "unsafe_path",  # a path in an annotation file escapes the dataset root
    "missing_mask",  # segmentation: an image without its mask file
    "bad_mask",  # segmentation: a mask that is unreadable, lossy or holds unknown classes
)


@dataclass(frozen=True)
class Problem:
    """One problem: ``file`` at fault, ``line`` (see below), ``kind`` (PROBLEM_KINDS), text.

    ``line`` is the 1-based line of a YOLO txt file, the 0-based index into ``annotations``
    (or ``images``) of a COCO JSON file, the 0-based ``<object>`` index of a VOC XML file,
    or None when the whole file is at fault.
    """

    file: str
    line: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: [{self.kind}] {self.message}"


@dataclass
class Issues:
    """Collects problems (``strict=False``) or raises the first as DataError (``strict=True``)."""

    strict: bool = True
    problems: list[Problem] = field(default_factory=list)
    tolerate: tuple[str, ...] = ()  # kinds recorded (the item skipped) even when strict

    def add(self, file: str | os.PathLike[str], line: int | None, kind: str, message: str) -> None:
        """Record a problem that makes the item unusable (strict mode: raise it)."""
        p = Problem(os.fspath(file), line, kind, message)
        if self.strict and kind not in self.tolerate:
            raise DataError(str(p))
        self.problems.append(p)

    def note(self, file: str | os.PathLike[str], line: int | None, kind: str, message: str) -> None:
        """Record a problem that does not stop reading (an orphan label file, say)."""
        self.problems.append(Problem(os.fspath(file), line, kind, message))
