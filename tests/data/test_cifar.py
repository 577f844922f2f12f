"""CIFAR batches: real pickle layout read by the restricted unpickler; nothing executes."""

import collections
import os
import pickle

import numpy as np
import pytest

from cvcraft.data.cifar import read_cifar, safe_unpickle
from cvcraft.errors import DataError

RNG = np.random.default_rng(0)


def _dump(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _make_cifar10(folder, n=4):
    """Python-2 style: bytes keys, protocol 2, numpy data arrays, list labels."""
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, n).tolist()
        _dump(folder / name, {b"batch_label": b"x", b"data": data, b"labels": labels})
        batches[name] = (data, labels)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n})
    return batches


def test_cifar10_layout_and_pixel_order(tmp_path):
    batches = _make_cifar10(tmp_path / "cifar-10-batches-py")
    train = read_cifar(tmp_path, "train")  # finds the cifar-10-batches-py child
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    assert train.images.shape == (20, 32, 32, 3) and len(train) == 20
    data3, labels3 = batches["data_batch_3"]
    i = 2 * 4 + 1  # item 1 of the third batch
    img = train.load_image(i)
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    for y, x, c in [(0, 0, 0), (5, 7, 1), (31, 30, 2)]:
        assert img[y, x, c] == data3[1, c * 1024 + y * 32 + x]
    assert train.labels[i] == labels3[1]
    test = read_cifar(tmp_path / "cifar-10-batches-py", "test")
    assert len(test) == 4 and test.labels.tolist() == batches["test_batch"][1]


def test_cifar100_str_keys_protocol5_fine_labels(tmp_path):
    data = RNG.integers(0, 256, (3, 3072), dtype=np.uint8)
    fine = [5, 0, 99]
    _dump(
        tmp_path / "train",
        {"data": data, "fine_labels": fine, "coarse_labels": [0, 1, 2]},
        protocol=5,
    )
    _dump(tmp_path / "test", {"data": data[:1], "fine_labels": [7]}, protocol=4)
    _dump(tmp_path / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=5)
    d = read_cifar(tmp_path, "train")
    assert len(d.classes) == 100 and d.labels.tolist() == fine
    np.testing.assert_array_equal(
        d.images.reshape(3, -1), data.reshape(3, 3, 32, 32).transpose(0, 2, 3, 1).reshape(3, -1)
    )
    assert read_cifar(tmp_path, "test").labels.tolist() == [7]


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    _dump(tmp_path / "evil", {b"data": evil})
    with pytest.raises(DataError, match=r"evil.*refusing to load global"):
        safe_unpickle(tmp_path / "evil")
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj",
    [collections.OrderedDict(a=1), {"data": np.array([object(), 1], dtype=object)}],
    ids=["ordereddict", "object-array"],
)
def test_restricted_unpickler_refuses_non_data(tmp_path, obj):
    try:
        _dump(tmp_path / "p", obj)
    except Exception:  # object() itself cannot be pickled on some versions
        obj = {"data": np.array([1, "x"], dtype=object)}
        _dump(tmp_path / "p", obj)
    with pytest.raises(DataError, match=r"[/\\]p:"):
        safe_unpickle(tmp_path / "p")


def test_safe_unpickle_plain_data_and_arrays(tmp_path):
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    obj = {b"k": [1, 2.5, b"x", "y", (1, 2)], "arr": arr, "f": np.asfortranarray(arr.astype("<f8"))}
    _dump(tmp_path / "ok", obj)
    out = safe_unpickle(tmp_path / "ok")
    assert out["k"] == [1, 2.5, b"x", "y", (1, 2)]
    np.testing.assert_array_equal(out["arr"], arr)
    np.testing.assert_array_equal(out["f"], arr.astype(np.float64))


def test_malformed_files_name_file_and_key(tmp_path):
    _make_cifar10(tmp_path / "c")
    raw = (tmp_path / "c" / "data_batch_2").read_bytes()
    (tmp_path / "c" / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="data_batch_2"):
        read_cifar(tmp_path / "c")
    _dump(tmp_path / "c" / "data_batch_2", {b"labels": [0]})
    with pytest.raises(DataError, match=r"data_batch_2: key 'data' missing"):
        read_cifar(tmp_path / "c")
    _dump(
        tmp_path / "c" / "data_batch_2", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    )
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be uint8 \(N, 3072\)"):
        read_cifar(tmp_path / "c")
    os.remove(tmp_path / "c" / "data_batch_4")
    with pytest.raises(DataError, match="no CIFAR batches|data_batch"):
        read_cifar(tmp_path / "c")
    with pytest.raises(DataError, match="no CIFAR batches"):
        read_cifar(tmp_path / "empty_dir_that_does_not_exist")
