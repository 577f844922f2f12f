"""Decoded-image cache: decode every image of a ``FileListData`` once, reuse it every epoch.

Decoding a JPEG costs far more than reading its pixels back, so the first run decodes all
files (a thread pool: OpenCV releases the GIL) and appends the raw uint8 pixels to one flat
file; ``index.npy`` holds each item's (offset, H, W, C). Later runs open the flat file as a
read-only memmap. The cache folder is named by a hash of (path, size, mtime) of every file,
so editing, adding or removing an image yields a new cache. It is written under a temporary
name and renamed when complete, so a killed run never leaves a half cache that gets reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cvcraft.data.classification import ClassificationData, FileListData
from cvcraft.data.io import read_image
from cvcraft.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> str:
    """``$CVCRAFT_CACHE`` or ``$XDG_CACHE_HOME/cvcraft`` (``~/.cache/cvcraft``)."""
    if os.environ.get("CVCRAFT_CACHE"):
        return os.environ["CVCRAFT_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "cvcraft")


def cache_key(paths: list[str], max_pixels: int) -> str:
    """sha256 over (path, size, mtime_ns) of every file (+ format version and pixel limit)."""
    h = hashlib.sha256(f"cvcraft-decoded-v{CACHE_VERSION}:{max_pixels}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:  # a missing file still gets a stable key; it is reported when decoded
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:32]


class DecodedCache(ClassificationData):
    """A ``FileListData`` whose images come from a decoded uint8 memmap (built on first use).

    ``skip_bad=True`` drops undecodable images and lists them in ``skipped`` as
    ``(path, reason)``; otherwise the first bad image raises ``DataError`` naming it.
    ``load_image`` returns a copy, so callers may modify it freely.
    """

    def __init__(
        self,
        data: FileListData,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        skip_bad: bool = False,
        workers: int | None = None,
    ) -> None:
        self.classes = data.classes
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
        self.key = cache_key(data.paths, data.max_pixels)
        self.folder = os.path.join(self.cache_dir, self.key)
        if not os.path.isfile(os.path.join(self.folder, "index.npy")):
            self._build(data, workers or min(8, os.cpu_count() or 1), skip_bad)
        self.reused = getattr(self, "reused", True)
        index = np.load(os.path.join(self.folder, "index.npy"))  # (N, 4) offset, H, W, C
        with open(os.path.join(self.folder, "bad.json"), encoding="utf-8") as f:
            bad: dict[str, str] = json.load(f)
        if bad and not skip_bad:
            path, reason = next(iter(bad.items()))
            raise DataError(
                f"{reason} (cached as unreadable; {len(bad)} bad image(s) in all). "
                "Fix or remove it, or pass skip_bad=True"
            )
        good = index[:, 0] >= 0
        self.skipped: list[tuple[str, str]] = list(bad.items())
        self.paths = [p for p, g in zip(data.paths, good) if g]
        self.labels = data.labels[good]
        self.index = index[good]
        self._pixels: np.ndarray | None = None
        if self.skipped:
            log.warning(
                "skipped %d unreadable image(s); first: %s", len(self.skipped), self.skipped[0][1]
            )

    def _build(self, data: FileListData, workers: int, skip_bad: bool) -> None:
        self.reused = False
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{self.key}.tmp-", dir=self.cache_dir)
        try:
            index = np.full((len(data), 4), -1, dtype=np.int64)
            bad: dict[str, str] = {}
            offset = 0
            with open(os.path.join(tmp, "pixels.u8"), "wb") as out:
                for i, img, err in self._decode_all(data, workers):
                    if err is not None:
                        if not skip_bad:
                            raise err
                        bad[data.paths[i]] = str(err)
                        continue
                    out.write(img.tobytes())
                    index[i] = (offset, *img.shape)
                    offset += img.size
            np.save(os.path.join(tmp, "index.npy"), index)
            with open(os.path.join(tmp, "bad.json"), "w", encoding="utf-8") as f:
                json.dump(bad, f)
            try:
                os.rename(tmp, self.folder)  # atomic: the cache appears complete or not at all
            except OSError:  # another process finished the same cache first; use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _decode_all(
        data: FileListData, workers: int
    ) -> Iterator[tuple[int, np.ndarray | None, DataError | None]]:
        """(index, image, error) in order; decoded by a thread pool, ``chunk`` at a time so
        memory stays bounded on big datasets."""

        def one(i: int) -> tuple[int, np.ndarray | None, DataError | None]:
            try:
                return i, read_image(data.paths[i], max_pixels=data.max_pixels), None
            except DataError as e:
                return i, None, e

        chunk = 64 * workers
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(data), chunk):
                yield from pool.map(one, range(start, min(start + chunk, len(data))))

    @property
    def pixels(self) -> np.ndarray:
        """The flat uint8 memmap, opened lazily (also after unpickling in a worker)."""
        if self._pixels is None:
            path = os.path.join(self.folder, "pixels.u8")
            self._pixels = (
                np.memmap(path, dtype=np.uint8, mode="r")
                if os.path.getsize(path)
                else np.zeros(0, np.uint8)
            )
        return self._pixels

    def __getstate__(self) -> dict[str, Any]:
        # never pickle the memmap (it would copy every pixel to each worker); reopen instead
        return {**self.__dict__, "_pixels": None}

    def load_image(self, i: int) -> np.ndarray:
        off, h, w, c = (int(v) for v in self.index[i])
        return np.array(self.pixels[off : off + h * w * c]).reshape(h, w, c)

    def describe(self, i: int) -> str:
        return self.paths[i]
