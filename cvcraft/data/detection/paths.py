"""Resolving file names found *inside* annotation files without letting them escape the root.

An annotation file is data, not configuration: ``file_name: ../../etc/passwd`` must not make
a reader (or a converter that copies images) touch files outside the dataset. The check is
lexical (``normpath``), so symlinks a user placed inside the dataset still work.
"""

from __future__ import annotations

import os
import shutil

from cvcraft.errors import DataError


def resolve_inside(
    root: str | os.PathLike[str],
    name: str,
    *,
    source: str,
    allow_outside_root: bool = False,
) -> str:
    """``root/name`` normalized; DataError naming ``source`` if it leaves ``root``.

    Absolute names and ``..`` components that climb above ``root`` are refused unless
    ``allow_outside_root=True``. ``source`` says where the name was read (file and line).
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DataError(f"{source}: file name {name!r} is empty or not a string")
    root_n = os.path.normpath(os.path.abspath(os.fspath(root)))
    path = os.path.normpath(os.path.join(root_n, name))
    if allow_outside_root:
        return path
    if os.path.isabs(name) or os.path.commonpath([root_n, path]) != root_n:
        raise DataError(
            f"{source}: file name {name!r} points outside the dataset root {root_n}; "
            "annotations may only name files under their dataset's root (so a downloaded "
            "annotation file cannot make cvcraft read any file); fix the annotation, or move "
            "the images under the root"
        )
    return path


IMAGE_MODES = ("copy", "symlink", "none")


def place_image(src: str, dst: str | os.PathLike[str], mode: str = "copy") -> None:
    """Put the image ``src`` at ``dst`` for a written dataset: copy it, symlink it, or not.

    ``"none"`` writes annotations only (the caller keeps the images where they are).
    """
    if mode not in IMAGE_MODES:
        raise DataError(f"images={mode!r}: use one of {IMAGE_MODES}")
    if mode == "none":
        return
    dst = os.fspath(dst)
    if os.path.abspath(src) == os.path.abspath(dst):
        return
    if not os.path.isfile(src):
        raise DataError(f"{src}: image not found; cannot {mode} it to {dst}")
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if os.path.lexists(dst):
        os.remove(dst)
    if mode == "symlink":
        os.symlink(os.path.abspath(src), dst)
    else:
        shutil.copyfile(src, dst)
