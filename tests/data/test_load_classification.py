"""load_classification dispatch and the ClassifyDataset item contract."""

import pickle
import struct

import numpy as np
import pytest

from cvcraft.data.cache import DecodedCache
from cvcraft.data.classification import ArrayData
from cvcraft.data.datasets import ClassifyDataset, load_classification
from cvcraft.data.io import write_image
from cvcraft.data.shapes import SHAPE_CLASSES
from cvcraft.errors import DataError


def _tree(root, counts):
    for cls, n in counts.items():
        for i in range(n):
            write_image(root / cls / f"{i}.png", np.full((4, 4, 3), i, np.uint8))


def test_shapes_spec():
    s = load_classification("shapes:30", imgsz_hint=24, seed=1)
    assert len(s.train) == 30 and len(s.val) == 6 and s.classes == list(SHAPE_CLASSES)
    assert s.train.load_image(0).shape == (24, 24, 3) and s.source == "shapes"


def test_class_folders_are_split_stratified(tmp_path):
    _tree(tmp_path, {"a": 10, "b": 20})
    s = load_classification(tmp_path, val_fraction=0.2, seed=0)
    assert s.classes == ["a", "b"]
    assert s.val.class_counts().tolist() == [2, 4] and s.train.class_counts().tolist() == [8, 16]
    assert not set(s.train.paths) & set(s.val.paths)


def test_train_val_folders_with_class_alignment(tmp_path):
    _tree(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    _tree(tmp_path / "val", {"b": 1, "c": 2})
    s = load_classification(tmp_path)
    assert s.val.classes == ["a", "b", "c"] and s.val.labels.tolist() == [1, 2, 2]
    _tree(tmp_path / "val", {"zebra": 1})
    with pytest.raises(DataError, match=r"\['zebra'\] have no training folder"):
        load_classification(tmp_path)


def test_only_train_folder_is_split(tmp_path):
    _tree(tmp_path / "train", {"a": 5, "b": 5})
    s = load_classification(tmp_path, val_fraction=0.2)
    assert s.classes == ["a", "b"] and len(s.val) == 2 and len(s.train) == 8


def test_cifar_idx_and_csv_detection(tmp_path):
    c = tmp_path / "cifar"
    c.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f, 2)
    with open(c / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"x", b"y"]}, f, 2)
    s = load_classification(c)
    assert s.source == "cifar" and len(s.train) == 10 and len(s.val) == 2

    m = tmp_path / "mnist"
    m.mkdir()
    for prefix, labels in (("train", [0, 1, 2]), ("t10k", [4])):
        n = len(labels)
        (m / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">HBBIII", 0, 8, 3, n, 2, 2) + bytes(4 * n)
        )
        (m / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">HBBI", 0, 8, 1, n) + bytes(labels)
        )
    s = load_classification(m)
    assert s.source == "idx" and s.classes == [str(i) for i in range(5)]
    assert isinstance(s.train, ArrayData) and s.val.labels.tolist() == [4]

    _tree(tmp_path / "imgs", {"a": 3, "b": 3})
    (tmp_path / "imgs" / "l.csv").write_text(
        "".join(f"{k}/{i}.png,{k}\n" for k in "ab" for i in range(3))
    )
    s = load_classification(tmp_path / "imgs" / "l.csv", val_fraction=0.34)
    assert s.source == "csv" and s.val.class_counts().tolist() == [1, 1]


def test_unknown_and_cache(tmp_path):
    with pytest.raises(DataError, match="does not exist. Accepted: 'shapes'"):
        load_classification(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset recognized"):
        load_classification(tmp_path / "empty")
    _tree(tmp_path / "d", {"a": 3, "b": 3})
    s = load_classification(
        tmp_path / "d", cache=True, cache_dir=tmp_path / "cache", val_fraction=0.34
    )
    assert isinstance(s.train, DecodedCache) and isinstance(s.val, DecodedCache)
    assert s.train.load_image(0).shape == (4, 4, 3)


def _noisy(sample, rng):
    return sample.replace(
        image=(sample.image + rng.integers(0, 50, sample.image.shape)).astype(np.uint8)
    )


def test_classify_dataset_keys_and_rng():
    data = ArrayData(np.zeros((3, 4, 4, 3), np.uint8), [0, 1, 2], ["a", "b", "c"], "mem")
    ds = ClassifyDataset(data, _noisy, seed=5)
    a, b = ds[(2, 1)], ds[(2, 1)]
    np.testing.assert_array_equal(a.image, b.image)
    expected = np.random.default_rng([5, 2, 1]).integers(0, 50, (4, 4, 3))
    np.testing.assert_array_equal(a.image, expected.astype(np.uint8))
    np.testing.assert_array_equal(ds[1].image, ds[(0, 1)].image)
    assert not np.array_equal(ds[(3, 1)].image, a.image)
    assert a.label == 1 and a.meta["index"] == 1 and a.meta["path"] == "mem[1]"
    assert ClassifyDataset(data)[2].image.sum() == 0
    with pytest.raises(IndexError, match="index 3 out of range for 3 items"):
        ds[3]
