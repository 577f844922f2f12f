"""A CSV list of ``path,label`` rows (the most common ad-hoc classification format).

- The header is optional; the first row is a header when its first field is one of
  ``path/file/filename/image/...`` or its second one of ``label/class/category/target/...``.
- Blank lines and lines starting with ``#`` are skipped.
- A label is a class name or an integer class index. Without ``classes``: all-integer
  labels mean indices (classes "0".."max"), otherwise the sorted distinct names are the
  classes; mixing both raises.
- Relative paths are resolved against ``root``, or the CSV's own folder when ``root`` is None.
- Any malformed row raises ``DataError`` with ``file:line``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from cvcraft.data.classification import FileListData
from cvcraft.data.io import DEFAULT_MAX_PIXELS
from cvcraft.errors import DataError

_PATH_HEADERS = {
    "path",
    "file",
    "filename",
    "file_name",
    "filepath",
    "image",
    "image_path",
    "img",
    "image_id",
    "id",
}
_LABEL_HEADERS = {"label", "labels", "class", "class_name", "category", "target", "y"}


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def read_csv_list(
    csv_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    *,
    check_exists: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FileListData:
    """Read ``path,label`` rows into a ``FileListData``; see the module docstring for rules.

    ``check_exists`` stats every file up front so a missing image is reported now (with its
    CSV line), not halfway through an epoch.
    """
    name = os.fspath(csv_path)
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(name))
    rows: list[tuple[int, str, str]] = []  # (line, path, label)
    try:
        with open(name, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = True
            for row in reader:
                line = reader.line_num
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                fields = [c.strip() for c in row]
                if first:
                    first = False
                    if len(fields) == 2 and (
                        fields[0].lower() in _PATH_HEADERS or fields[1].lower() in _LABEL_HEADERS
                    ):
                        continue
                if len(fields) != 2 or not fields[0] or not fields[1]:
                    raise DataError(f"{name}:{line}: expected 'path,label', got {row!r}")
                rows.append((line, fields[0], fields[1]))
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{name}: not a readable UTF-8 CSV file ({e})") from None
    if not rows:
        raise DataError(f"{name}: no 'path,label' rows found")

    if classes is not None:
        classes = list(classes)
        index = {c: i for i, c in enumerate(classes)}
    else:
        ints = [_is_int(lab) for _, _, lab in rows]
        if all(ints):
            top = max(int(lab) for _, _, lab in rows)
            classes = [str(i) for i in range(top + 1)]
            index = {}
        elif not any(ints):
            classes = sorted({lab for _, _, lab in rows})
            index = {c: i for i, c in enumerate(classes)}
        else:
            line, _, lab = rows[ints.index(not ints[0])]
            raise DataError(
                f"{name}:{line}: label {lab!r} mixes class indices and class names "
                "in one file; use one kind, or pass classes=[...]"
            )

    labels: list[int] = []
    for line, _, lab in rows:
        if lab in index:
            labels.append(index[lab])
        elif _is_int(lab) and 0 <= int(lab) < len(classes):
            labels.append(int(lab))
        else:
            raise DataError(
                f"{name}:{line}: label {lab!r} is neither one of the {len(classes)} "
                f"classes nor an index in [0, {len(classes)})"
            )
    paths = [os.path.join(base, p) for _, p, _ in rows]
    if check_exists:
        missing = [(line, p) for (line, _, _), p in zip(rows, paths) if not os.path.isfile(p)]
        if missing:
            line, p = missing[0]
            raise DataError(
                f"{name}:{line}: image {p} does not exist ({len(missing)} missing "
                f"in total); relative paths are read from {base}: fix the paths in the CSV "
                "(relative to its folder, or absolute)"
            )
    return FileListData(paths, labels, classes, max_pixels=max_pixels)
