"""Re-identification folders (the Market-1501 / DukeMTMC-reID layout).

``root/bounding_box_train``, ``root/query`` and ``root/bounding_box_test`` (the gallery)
hold images named ``<pid>_c<cam>...`` (``0002_c1s1_000451_03.jpg``): person id, then the
camera. Training reads ``bounding_box_train`` as a class-per-identity set (ids < 0 left out);
evaluation ranks the gallery for every query, where a gallery image of the query's person
from the query's camera is junk (too easy) and gallery id -1 is junk for every query (the
protocol's "junk" detections); id 0 ("distractors") stays, as a true negative.

The evaluation set (query then gallery) carries ``extras["reid"] = [pid, cam, is_query]``
(a registered ``label`` target), so the evaluator knows each image's role.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cvcraft.data.classification import FileListData
from cvcraft.data.extra_target import ExtraTargetData
from cvcraft.data.io import list_images
from cvcraft.errors import DataError
from cvcraft.structures import register_target

REID = "reid"
register_target(REID, "label")
NAME = re.compile(r"^(-?\d+)_c(\d+)")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def is_reid_folder(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return all((p / s).is_dir() for s in SPLITS)


def read_reid_split(folder: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, pids int64, cams int64) of every image in ``folder`` named ``<pid>_c<cam>``."""
    files = list_images(folder)
    parsed = [NAME.match(f.name) for f in files]
    bad = [f for f, m in zip(files, parsed) if m is None]
    if bad:
        raise DataError(
            f"{bad[0]}: a re-ID image name must start with <person id>_c<camera> "
            f"(e.g. 0002_c1s1_000451_03.jpg); {len(bad)} file(s) do not"
        )
    pids = np.array([int(m.group(1)) for m in parsed], np.int64)  # type: ignore[union-attr]
    cams = np.array([int(m.group(2)) for m in parsed], np.int64)  # type: ignore[union-attr]
    return [str(f) for f in files], pids, cams


class ReidEvalData(ExtraTargetData):
    """Query then gallery images with ``extras["reid"] = [pid, cam, is_query]`` (N, 3);
    ``classes`` are the training identities (evaluation identities are other people)."""

    extra = REID


def load_reid(root: str | os.PathLike[str]) -> tuple[FileListData, ReidEvalData]:
    """(train, query + gallery) of a Market-1501-style folder."""
    tr_paths, tr_pids, _ = read_reid_split(Path(root) / "bounding_box_train")
    keep = tr_pids >= 0
    ids = np.unique(tr_pids[keep])
    classes = [str(int(p)) for p in ids]
    train = FileListData([p for p, k in zip(tr_paths, keep) if k],
                         np.searchsorted(ids, tr_pids[keep]), classes)  # fmt: skip
    q_paths, q_pids, q_cams = read_reid_split(Path(root) / "query")
    g_paths, g_pids, g_cams = read_reid_split(Path(root) / "bounding_box_test")
    is_q = np.r_[np.ones(len(q_paths), np.int64), np.zeros(len(g_paths), np.int64)]
    roles = np.stack([np.r_[q_pids, g_pids], np.r_[q_cams, g_cams], is_q], 1).astype(np.int64)
    paths = q_paths + g_paths
    store = FileListData(paths, np.zeros(len(paths), np.int64), classes or ["_"])
    evaluation = ReidEvalData(store, roles, classes, str(root))
    return train, evaluation
