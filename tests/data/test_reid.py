"""Re-ID folders: name parsing, the Market-1501 layout, and query/gallery evaluation with the
same-camera and id -1 junk rules (against the protocol loop of the retrieval tests)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cvcraft.data.io import write_image
from cvcraft.data.reid import REID, is_reid_folder, load_reid, read_reid_split
from cvcraft.errors import DataError
from cvcraft.metrics.retrieval import QueryGalleryMetrics, distance_matrix


def _reference(dist, qid, gid, qcam, gcam, exclude, ks):
    """Market-1501, one query at a time: drop junk, stable sort, first match, sklearn AP."""
    cmc, aps = [], []
    for i in range(len(qid)):
        junk = exclude[i] | ((gid == qid[i]) & (gcam == qcam[i]))
        d, m = dist[i, ~junk], gid[~junk] == qid[i]
        if not m.any():
            continue
        first = int(np.flatnonzero(m[np.argsort(d, kind="stable")])[0])
        cmc.append([first < k for k in ks])
        aps.append(average_precision_score(m, -d))
    return {f"rank{k}": np.mean(cmc, 0)[j] for j, k in enumerate(ks)} | {"map": np.mean(aps)}


def make_market(root, n_ids=4, per=(4, 2, 3), seed=0):
    """A tiny Market-1501-style folder of solid-colour images (one colour per person)."""
    rng = np.random.default_rng(seed)
    k = 0
    for split, count in zip(("bounding_box_train", "query", "bounding_box_test"), per):
        (root / split).mkdir(parents=True)
        for pid in range(1, n_ids + 1):
            for j in range(count):
                img = np.full((16, 16, 3), pid * 50, np.uint8) + rng.integers(
                    0, 20, (16, 16, 3), dtype=np.uint8
                )
                write_image(root / split / f"{pid:04d}_c{j % 3 + 1}s1_{k:06d}_00.png", img)
                k += 1
    write_image(
        root / "bounding_box_test" / f"-1_c1s1_{k:06d}_00.png", np.zeros((16, 16, 3), np.uint8)
    )
    return root


def test_layout_and_names(tmp_path):
    root = make_market(tmp_path / "m")
    assert is_reid_folder(root) and not is_reid_folder(tmp_path)
    train, ev = load_reid(root)
    assert train.classes == ["1", "2", "3", "4"] and len(train) == 16
    assert np.bincount(train.labels).tolist() == [4, 4, 4, 4]
    assert len(ev) == 8 + 12 + 1
    roles = np.array([ev.sample(i).extras[REID] for i in range(len(ev))])
    assert roles[:8, 2].tolist() == [1] * 8 and roles[8:, 2].tolist() == [0] * 13
    assert roles[8, 0] == -1  # '-1_c1...' sorts first in the gallery
    paths, pids, cams = read_reid_split(root / "query")
    assert pids.tolist() == [1, 1, 2, 2, 3, 3, 4, 4] and set(cams.tolist()) == {1, 2}
    write_image(root / "query" / "person7.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="person7.png: a re-ID image name must start with"):
        read_reid_split(root / "query")


def test_query_gallery_metrics_follow_the_protocol():
    rng = np.random.default_rng(3)
    qe, ge = rng.normal(size=(10, 5)), rng.normal(size=(30, 5))
    qid, gid = rng.integers(0, 4, 10), rng.integers(-1, 4, 30)
    qc, gc = rng.integers(1, 4, 10), rng.integers(1, 4, 30)
    m = QueryGalleryMetrics(ks=(1, 5))
    m.update(qe[:4], np.stack([qid[:4], qc[:4], np.ones(4)], 1))
    m.update(np.r_[ge, qe[4:]], np.stack([np.r_[gid, qid[4:]], np.r_[gc, qc[4:]],
                                          np.r_[np.zeros(30), np.ones(6)]], 1))  # fmt: skip
    got = m.compute()
    exclude = np.broadcast_to(gid[None, :] == -1, (10, 30))
    ref = _reference(distance_matrix(qe, ge), qid, gid, qc, gc, exclude=exclude.copy(), ks=(1, 5))
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
