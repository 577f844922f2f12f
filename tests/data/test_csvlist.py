"""CSV lists: header detection, names or indices, path resolution, file:line errors."""

import numpy as np
import pytest

from cvcraft.data.csvlist import read_csv_list
from cvcraft.data.io import write_image
from cvcraft.errors import DataError


@pytest.fixture
def images(tmp_path):
    for name in ("a.png", "b.png", "sub/c.png"):
        write_image(tmp_path / "imgs" / name, np.zeros((2, 2, 3), np.uint8))
    return tmp_path / "imgs"


def test_header_names_and_relative_paths(tmp_path, images):
    csv = images / "list.csv"
    csv.write_text('path,label\n# comment\na.png,dog\n\nsub/c.png,cat\n"b.png", dog \n')
    d = read_csv_list(csv)
    assert d.classes == ["cat", "dog"] and d.labels.tolist() == [1, 0, 1]
    assert d.paths[1] == str(images / "sub/c.png")


def test_integer_labels_no_header_and_root(tmp_path, images):
    csv = tmp_path / "l.csv"
    csv.write_text("a.png,2\nb.png,0\n")
    d = read_csv_list(csv, root=images)
    assert d.classes == ["0", "1", "2"] and d.labels.tolist() == [2, 0]
    d2 = read_csv_list(csv, root=images, classes=["x", "y", "z"])
    assert d2.classes == ["x", "y", "z"] and d2.labels.tolist() == [2, 0]


def test_malformed_line_has_file_and_line_number(tmp_path, images):
    csv = images / "bad.csv"
    csv.write_text("path,label\na.png,dog\nb.png\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: expected 'path,label'"):
        read_csv_list(csv)
    csv.write_text("a.png,dog\nb.png,cat,extra\n")
    with pytest.raises(DataError, match=r"bad\.csv:2:"):
        read_csv_list(csv)


def test_unknown_label_missing_file_and_mixed_kinds(tmp_path, images):
    csv = images / "l.csv"
    csv.write_text("a.png,dog\nb.png,bird\n")
    with pytest.raises(DataError, match=r"l\.csv:2: label 'bird' is neither"):
        read_csv_list(csv, classes=["cat", "dog"])
    csv.write_text("a.png,dog\nmissing.png,dog\n")
    with pytest.raises(DataError, match=r"l\.csv:2: image .*missing\.png does not exist"):
        read_csv_list(csv)
    csv.write_text("a.png,dog\nb.png,1\n")
    with pytest.raises(DataError, match=r"l\.csv:2: label '1' mixes"):
        read_csv_list(csv)
