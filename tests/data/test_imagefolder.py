"""read_imagefolder: classes from first-level folders, deterministic order, clear errors."""

import os

import numpy as np
import pytest

from cvcraft.data.imagefolder import read_imagefolder
from cvcraft.data.io import write_image
from cvcraft.errors import DataError


def _img(path, v=0):
    write_image(path, np.full((4, 4, 3), v, np.uint8))


def test_classes_nested_images_and_ignored_files(tmp_path):
    _img(tmp_path / "dog" / "b.png")
    _img(tmp_path / "dog" / "sub" / "deeper" / "a.jpg")
    _img(tmp_path / "cat" / "z.PNG")
    _img(tmp_path / "cat" / "a.bmp")
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / "README.md").write_text("x")
    _img(tmp_path / ".ipynb_checkpoints" / "x.png")  # hidden: not a class
    d = read_imagefolder(tmp_path)
    assert d.classes == ["cat", "dog"]
    rel = [os.path.relpath(p, tmp_path) for p in d.paths]
    assert rel == ["cat/a.bmp", "cat/z.PNG", "dog/b.png", "dog/sub/deeper/a.jpg"]
    assert d.labels.tolist() == [0, 0, 1, 1]
    assert d.ignored_files == 2
    assert read_imagefolder(tmp_path).paths == d.paths  # deterministic


def test_empty_class_folder_is_an_error(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"dog: no images in class folder 'dog'.*remove the folder"):
        read_imagefolder(tmp_path)


def test_empty_root_and_missing_root(tmp_path):
    with pytest.raises(DataError, match="no class folders"):
        read_imagefolder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        read_imagefolder(tmp_path / "nope")


def test_shared_cifar10_listing(shared_data):
    d = read_imagefolder(shared_data / "cifar10" / "train")  # lists only, decodes nothing
    assert len(d.classes) == 10 and len(d) == 50_000
    assert d.class_counts().tolist() == [5000] * 10
