"""ImageFolder layout: ``root/<class>/**/<image>`` (the torchvision convention).

The class of an image is the name of the first-level folder it sits under; images may be
nested at any depth below it. Classes are sorted by name, files by relative path, so the
same tree always gives the same indices. Hidden folders (``.ipynb_checkpoints``, ``.git``)
and the metadata folders archivers and Python leave (``__MACOSX``, ``__pycache__``) are not
classes, and macOS "._name.jpg" resource forks are not images. Files without an image
extension are counted in ``ignored_files``.
"""

from __future__ import annotations

import os

from cvcraft.data.classification import FileListData
from cvcraft.data.io import DEFAULT_MAX_PIXELS, is_image_file
from cvcraft.errors import DataError

NOT_CLASSES = frozenset({"__MACOSX", "__pycache__"})  # left by zip on macOS, and by Python


def _is_data_folder(name: str) -> bool:
    return not name.startswith(".") and name not in NOT_CLASSES


def list_class_folders(root: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the sub-folders of ``root`` that can be classes (not hidden, not
    ``__MACOSX``/``__pycache__``)."""
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir() and _is_data_folder(e.name))


def _walk_images(folder: str) -> tuple[list[str], int]:
    """Image files anywhere below ``folder`` (sorted full paths) and the count of others."""
    images: list[str] = []
    others = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if _is_data_folder(d)]
        for f in filenames:
            if is_image_file(f) and not f.startswith("._"):  # "._x.jpg": a macOS fork
                images.append(os.path.join(dirpath, f))
            else:
                others += 1
    images.sort()
    return images, others


def read_imagefolder(
    root: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> FileListData:
    """List ``root/<class>/**/*.{jpg,png,...}`` as a ``FileListData`` (no image is decoded).

    An empty class folder or a root without class folders raises ``DataError``, because a
    silently missing class would shift every class index after it.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder (expected root/<class>/<images>)")
    classes = list_class_folders(root)
    if not classes:
        raise DataError(
            f"{root}: no class folders found; expected one sub-folder per class with images in it"
        )
    with os.scandir(root) as it:
        ignored = sum(1 for e in it if e.is_file())
    paths: list[str] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        folder = os.path.join(root, name)
        images, others = _walk_images(folder)
        if not images:
            raise DataError(
                f"{folder}: no images in class folder {name!r} (extensions: jpg, jpeg, png, bmp,"
                " webp, tif, tiff); remove the folder or add images"
            )
        paths += images
        labels += [k] * len(images)
        ignored += others
    return FileListData(paths, labels, classes, max_pixels=max_pixels, ignored_files=ignored)
