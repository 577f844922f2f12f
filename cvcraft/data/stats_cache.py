"""Dataset normalization statistics computed once and cached on disk.

``compute_stats`` reads (a seeded subset of) the images, which on a large dataset costs a
full decoding pass; ``cached_stats`` stores its result as JSON keyed by what was measured:
a sha256 over every item's description (file path, or ``source[row]`` for arrays), the size
and mtime of every file, the labels, the bytes of the first and last image, and the options
(``max_samples``, ``seed``, ``percentiles``). Any change to the files, the subset or the
options gives a new key, so a stale file is never reused; a cache that cannot be read is
recomputed (and overwritten) rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvcraft.data.cache import default_cache_dir
from cvcraft.transforms.normalize import compute_stats

STATS_CACHE_VERSION = 1


def stats_key(data: Any, max_samples: int | None, seed: Any, percentiles: Sequence[float]) -> str:
    """sha256 of a dataset's identity (``describe``, file size/mtime, labels, edge images)
    plus the statistics options; ``data`` is any ``ClassificationData``-like object."""
    n = len(data)
    h = hashlib.sha256(f"cvcraft-stats-v{STATS_CACHE_VERSION}:{type(data).__name__}:{n}\n".encode())
    h.update(json.dumps([max_samples, seed, [float(p) for p in percentiles]]).encode())
    labels = getattr(data, "labels", None)
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    for i in range(n):
        where = data.describe(i)
        h.update(where.encode("utf-8", "surrogateescape") + b"\0")
        try:
            st = os.stat(where)
            h.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
        except (OSError, ValueError):  # not a file (array row): its bytes are hashed below
            pass
    for i in sorted({0, n - 1}) if n else []:  # catches arrays rewritten under the same name
        h.update(np.ascontiguousarray(data.load_image(i)).tobytes())
    return h.hexdigest()[:32]


def cached_stats(
    data: Any,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_samples: int | None = 5000,
    seed: int | Sequence[int] = 0,
    percentiles: Sequence[float] = (1.0, 99.0),
) -> dict[str, Any]:
    """``compute_stats`` over ``data`` (``len`` + ``load_image(i)`` + ``describe(i)``), read
    from ``cache_dir/<key>.json`` when present; otherwise computed and written atomically.

    The returned dict has the ``compute_stats`` keys plus ``cache`` (the JSON path) and
    ``cached`` (True when it was read, not computed). ``cache_dir`` defaults to
    ``$CVCRAFT_CACHE/stats`` (``~/.cache/cvcraft/stats``).
    """
    folder = Path(cache_dir) if cache_dir else Path(default_cache_dir()) / "stats"
    path = folder / f"{stats_key(data, max_samples, seed, percentiles)}.json"
    try:
        stats = json.loads(path.read_text())
        if isinstance(stats, dict) and "mean" in stats:
            return {**stats, "cache": str(path), "cached": True}
    except (OSError, ValueError):
        pass  # missing or unreadable: recompute
    stats = compute_stats(
        data.load_image, len(data), max_samples=max_samples, seed=seed, percentiles=percentiles
    )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    os.replace(tmp, path)
    return {**stats, "cache": str(path), "cached": False}
