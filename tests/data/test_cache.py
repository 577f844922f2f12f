"""DecodedCache: decode once, reuse, rebuild on change, skip_bad, no half cache."""

import os
import pickle

import numpy as np
import pytest

import cvcraft.data.cache as cache_mod
from cvcraft.data.cache import DecodedCache
from cvcraft.data.imagefolder import read_imagefolder
from cvcraft.data.io import read_image, write_image
from cvcraft.errors import DataError


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        h, w = 5 + i, 7 + 2 * i  # ragged sizes
        write_image(
            tmp_path / "data" / f"c{i % 2}" / f"{i}.png",
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        )
    return tmp_path / "data"


@pytest.fixture
def counter(monkeypatch):
    calls = []

    def counting(path, **kw):
        calls.append(path)
        return read_image(path, **kw)

    monkeypatch.setattr(cache_mod, "read_image", counting)
    return calls


def test_decode_once_then_reuse(folder, tmp_path, counter):
    data = read_imagefolder(folder)
    c1 = DecodedCache(data, tmp_path / "cache", workers=2)
    assert len(counter) == 6 and not c1.reused
    c2 = DecodedCache(read_imagefolder(folder), tmp_path / "cache")
    assert len(counter) == 6 and c2.reused  # no decoding the second time
    for i in range(len(data)):
        np.testing.assert_array_equal(c2.load_image(i), read_image(data.paths[i]))
    assert c2.labels.tolist() == data.labels.tolist() and c2.classes == data.classes
    assert c2.describe(3) == data.paths[3]
    # a worker gets the dataset pickled: the memmap must not travel with it
    blob = pickle.dumps(c2)
    assert len(blob) < 4000
    np.testing.assert_array_equal(pickle.loads(blob).load_image(5), read_image(data.paths[5]))
    sub = c2.subset([4, 1])
    np.testing.assert_array_equal(sub.load_image(0), read_image(data.paths[4]))


def test_changed_file_gives_new_cache(folder, tmp_path, counter):
    DecodedCache(read_imagefolder(folder), tmp_path / "cache")
    p = folder / "c0" / "0.png"
    write_image(p, np.zeros((3, 3, 3), np.uint8))
    os.utime(p, ns=(1, 1))
    c = DecodedCache(read_imagefolder(folder), tmp_path / "cache")
    assert len(counter) == 12 and not c.reused
    assert c.load_image(0).shape == (3, 3, 3)
    assert len(os.listdir(tmp_path / "cache")) == 2


def test_bad_image_raises_or_is_skipped(folder, tmp_path):
    bad = folder / "c1" / "3.png"
    bad.write_bytes(b"not an image")
    data = read_imagefolder(folder)
    with pytest.raises(DataError, match=r"3\.png"):
        DecodedCache(data, tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []  # nothing half-written is left
    c = DecodedCache(data, tmp_path / "cache", skip_bad=True)
    assert len(c) == 5 and c.skipped[0][0] == str(bad) and "3.png" in c.skipped[0][1]
    assert str(bad) not in c.paths and c.labels.tolist() == [0, 0, 0, 1, 1]
    # reused cache remembers the bad file: strict mode still refuses it
    with pytest.raises(DataError, match=r"3\.png"):
        DecodedCache(data, tmp_path / "cache")


def test_interrupted_build_leaves_no_cache(folder, tmp_path, monkeypatch):
    def boom(path, **kw):
        if path.endswith("4.png"):
            raise KeyboardInterrupt("interrupted while reading 4.png")
        return read_image(path, **kw)

    monkeypatch.setattr(cache_mod, "read_image", boom)
    with pytest.raises(KeyboardInterrupt, match="while reading 4.png"):
        DecodedCache(read_imagefolder(folder), tmp_path / "cache", workers=1)
    assert os.listdir(tmp_path / "cache") == []
    monkeypatch.setattr(cache_mod, "read_image", read_image)
    c = DecodedCache(read_imagefolder(folder), tmp_path / "cache")
    assert not c.reused and len(c) == 6
