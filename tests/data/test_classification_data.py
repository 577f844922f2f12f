"""ClassificationData containers: label validation, subsets, counts, grayscale arrays."""

import numpy as np
import pytest

from cvcraft.data.classification import ArrayData, FileListData
from cvcraft.data.io import write_image
from cvcraft.errors import DataError


def test_out_of_range_label_names_item_and_class_count():
    with pytest.raises(DataError, match=r"b\.png: label 3 is outside \[0, 3\).*3 classes"):
        FileListData(["a.png", "b.png"], [0, 3], ["x", "y", "z"], root="/data")
    with pytest.raises(DataError, match=r"src\[1\]: label -1"):
        ArrayData(np.zeros((2, 4, 4, 3), np.uint8), [0, -1], ["a", "b"], "src")


def test_label_count_and_type_checked():
    with pytest.raises(DataError, match="2 labels for 3 items"):
        FileListData(["a", "b", "c"], [0, 1], ["x", "y"])
    with pytest.raises(DataError, match="integer"):
        FileListData(["a"], [0.5], ["x"])


def test_filelist_load_describe_subset_counts(tmp_path):
    imgs = [np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)]
    for i, im in enumerate(imgs):
        write_image(tmp_path / f"{i}.png", im)
    d = FileListData(["0.png", "1.png", "2.png"], [1, 0, 1], ["a", "b"], root=tmp_path)
    assert len(d) == 3 and d.describe(2) == str(tmp_path / "2.png")
    np.testing.assert_array_equal(d.load_image(1), imgs[1])
    assert d.class_counts().tolist() == [1, 2]
    s = d.subset([2, 0])
    assert isinstance(s, FileListData) and s.labels.tolist() == [1, 1]
    np.testing.assert_array_equal(s.load_image(0), imgs[2])
    sample = d.sample(1)
    assert sample.label == 0 and sample.meta["index"] == 1 and sample.meta["orig_size"] == (2, 3)


def test_array_data_subset_keeps_origin_and_expands_gray():
    images = np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2, 1)
    d = ArrayData(images, [0, 1, 2, 0], ["a", "b", "c"], "mem")
    s = d.subset(np.array([False, True, False, True])).subset([1])
    assert s.describe(0) == "mem[3]" and s.labels.tolist() == [0]
    out = s.load_image(0)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, np.repeat(images[3], 3, axis=2))
    out[:] = 0  # a copy: the store is unchanged
    assert images[3].sum() > 0
    with pytest.raises(DataError, match="uint8"):
        ArrayData(np.zeros((1, 2, 2, 3), np.float32), [0], ["a"], "bad")
