"""cached_stats: computed once (numpy oracle), read back from the cache, new key on change."""

import json
import os

import numpy as np

from cvcraft.data import ArrayData, FileListData, write_image
from cvcraft.data.stats_cache import cached_stats


def _array(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return ArrayData(rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), np.zeros(n, int), ["a"],
                     f"arr{seed}")  # fmt: skip


def test_computed_once_then_read(tmp_path, monkeypatch):
    data = _array()
    first = cached_stats(data, tmp_path, max_samples=None)
    assert first["cached"] is False and os.path.exists(first["cache"])
    px = data.images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(first["mean"], px.mean(0))
    np.testing.assert_allclose(first["std"], px.std(0))
    np.testing.assert_allclose(first["p_high"], np.percentile(px, 99, axis=0))
    # the second call must not read images beyond the two the key hashes
    calls = []
    orig = data.load_image
    monkeypatch.setattr(data, "load_image", lambda i: calls.append(i) or orig(i))
    second = cached_stats(data, tmp_path, max_samples=None)
    assert second["cached"] is True and second["mean"] == first["mean"]
    assert sorted(calls) == [0, len(data) - 1]


def test_key_changes_with_data_and_options(tmp_path):
    a = cached_stats(_array(0), tmp_path, max_samples=None)
    b = cached_stats(_array(1), tmp_path, max_samples=None)  # other pixels, other name
    c = cached_stats(_array(0), tmp_path, max_samples=5)
    assert len({a["cache"], b["cache"], c["cache"]}) == 3
    assert a["mean"] != b["mean"]


def test_file_change_invalidates_and_corrupt_cache_recomputed(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / "img" / f"{i}.png"
        write_image(p, np.full((4, 4, 3), 10 * i, np.uint8))
        paths.append(str(p))
    data = FileListData(paths, [0, 0, 0], ["a"])
    cache = tmp_path / "cache"
    first = cached_stats(data, cache)
    np.testing.assert_allclose(first["mean"], [10.0] * 3)
    write_image(paths[1], np.full((4, 4, 3), 40, np.uint8))
    os.utime(paths[1], ns=(1, 10**18))  # a different mtime, whatever the clock did
    second = cached_stats(data, cache)
    assert second["cache"] != first["cache"] and second["cached"] is False
    np.testing.assert_allclose(second["mean"], [(0 + 40 + 20) / 3] * 3)
    with open(second["cache"], "w") as fh:
        fh.write("{not json")
    third = cached_stats(data, cache)
    assert third["cached"] is False and third["mean"] == second["mean"]
    assert json.loads(open(third["cache"]).read())["mean"] == second["mean"]
