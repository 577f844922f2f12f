"""Tar shards: write -> read gives back every image and target exactly (PNG is lossless);
the streaming reader splits shards between readers without overlap."""

from __future__ import annotations

import numpy as np
import pytest

import cvcraft.data.webdataset as wds
from cvcraft.cli import main
from cvcraft.data import load_classification, make_shapes
from cvcraft.data.webdataset import (
    ShardData,
    ShardDetectionData,
    ShardSegData,
    ShardStream,
    open_shards,
    write_shards,
)
from cvcraft.errors import DataError


def test_classification_roundtrip(tmp_path):
    src = make_shapes(40, 16, 0, "train")
    meta = write_shards(src, tmp_path, max_count=16)
    assert [s["count"] for s in meta["shards"]] == [16, 16, 8]
    ds = ShardData(tmp_path)
    assert ds.classes == src.classes and np.array_equal(ds.labels, src.labels)
    for i in range(len(src)):
        assert np.array_equal(ds.load_image(i), src.load_image(i))
    sub = ds.subset([3, 5])
    assert np.array_equal(sub.load_image(1), src.load_image(5))
    with pytest.raises(DataError, match="already holds shards"):
        write_shards(src, tmp_path)


def test_max_bytes_closes_shards(tmp_path):
    meta = write_shards(make_shapes(10, 16, 0, "train"), tmp_path, max_bytes=1)
    assert len(meta["shards"]) == 10  # every shard is full after its first sample


def test_detection_and_segmentation_roundtrip(tmp_path):
    from cvcraft.data.detection_dataset import make_shapes_detection
    from cvcraft.data.segmentation import make_shapes_segmentation

    det = make_shapes_detection(6, 32, 0, "train")
    write_shards(det, tmp_path / "det", max_count=4)
    rd = open_shards(tmp_path / "det")
    assert isinstance(rd, ShardDetectionData) and len(rd) == 6
    for i in range(6):
        a, b = det.sample(i), rd.sample(i)
        assert np.array_equal(a.image, b.image)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        assert np.array_equal(a.box_labels, b.box_labels)
    seg = make_shapes_segmentation(5, 32, 0, "train")
    write_shards(seg, tmp_path / "seg", max_count=2)
    rs = open_shards(tmp_path / "seg")
    assert isinstance(rs, ShardSegData) and rs.classes == list(seg.classes)
    for i in range(5):
        assert np.array_equal(seg.sample(i).semantic_mask, rs.sample(i).semantic_mask)


def test_pack_cli_and_load_classification(tmp_path):
    assert main(["pack", "data=shapes:30", f"out={tmp_path}", "max_count=8"]) == 0
    splits = load_classification(tmp_path)
    ref = load_classification("shapes:30")
    assert splits.source == "shards" and len(splits.train) == 30 and len(splits.val) == 6
    assert np.array_equal(splits.train.load_image(7), ref.train.load_image(7))


def test_stream_readers_own_disjoint_shards(tmp_path, monkeypatch):
    src = make_shapes(24, 16, 0, "train")
    write_shards(src, tmp_path, max_count=4)  # 6 shards
    seen = []
    for me in range(3):  # e.g. 3 readers = ranks x workers
        monkeypatch.setattr(wds, "reader_slot", lambda n, me=me: (me, 3))
        stream = ShardStream(tmp_path, seed=1, buffer=5)
        stream.set_epoch(2)
        labels = [s.label for s in stream]
        paths = {s.meta["path"].rsplit(":", 1)[0] for s in stream}
        assert len(labels) == 8 and len(paths) == 2  # two whole shards each
        seen += [s.meta["path"] for s in stream]
    assert len(seen) == len(set(seen)) == 24  # together: every sample exactly once
    monkeypatch.setattr(wds, "reader_slot", lambda n: (0, 1))
    a = [s.meta["path"] for s in ShardStream(tmp_path, seed=1)]
    s2 = ShardStream(tmp_path, seed=1)
    s2.set_epoch(1)
    assert a != [s.meta["path"] for s in s2]  # a new epoch, a new order
    assert a == [s.meta["path"] for s in ShardStream(tmp_path, seed=1)]  # same seed, same order


def test_too_many_readers_is_an_error(tmp_path):
    write_shards(make_shapes(4, 16, 0, "train"), tmp_path, max_count=4)
    with pytest.raises(DataError, match="its own shard"):
        wds.reader_slot(0)


def test_missing_and_damaged_shards(tmp_path):
    write_shards(make_shapes(8, 16, 0, "train"), tmp_path, max_count=4)
    (tmp_path / "shard-000001.tar").unlink()
    with pytest.raises(DataError, match="missing"):
        ShardData(tmp_path)
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(DataError, match="meta"):
        ShardData(tmp_path)
