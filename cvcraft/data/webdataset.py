"""Sharded tar datasets (the WebDataset layout) for data larger than memory or local disk.

A shard folder holds ``shard-000000.tar``, ``shard-000001.tar``, ... and ``meta.json``
(``format``, ``task``, ``classes``, per-shard sample counts). Inside a tar, one sample is
the consecutive members sharing a key: ``<key>.png`` (or ``.jpg``) the image,
``<key>.json`` its targets (``label``; or ``boxes`` xyxy + ``labels``; ``image_id``,
``width``, ``height``; pose adds ``keypoints`` (N, K, 3)) and, for segmentation,
``<key>.mask.png`` the uint8 class-index mask; an extra image target (fusion's infrared) is
``<key>.<name>.png`` (always lossless), other extras go into the JSON under ``extras``.
Pose and fusion shards are written for any tool to read; the readers below serve the
classify / detect / segment tasks.
Plain tar + PNG/JSON means any tool (``tar tf``, webdataset, a browser) can read the shards.

Two readers:

- ``ShardData`` (random access): the tar headers are indexed once (offset and size of each
  member, read without touching the data), then ``sample(i)`` is one seek + read. It is a
  ``ClassificationData`` for classification shards and a ``DetectionData`` for detection, so
  every task, sampler and DDP sharding works unchanged (``data=path/to/shards/``). The
  readers and every wrapper over them (subsets, the tasks' torch Datasets) answer
  ``shard_ids()`` (item -> shard, int64 (N,); None for data not in shards), so a DDP
  training loader can give each rank whole shards of its own (``loader.ShardSampler``).
- ``ShardStream`` (streaming, a torch ``IterableDataset``): each DDP rank and each loader
  worker reads *its own shards* sequentially — shard ``s`` goes to reader
  ``s % (world * workers)`` — with a seeded per-epoch shard order and shuffle buffer; for
  storage where only sequential reads are fast.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from cvcraft.data.classification import ClassificationData, as_labels
from cvcraft.data.detection.container import DetectionData, DetectionImage
from cvcraft.data.io import DEFAULT_MAX_PIXELS, decode_image
from cvcraft.errors import ConfigError, DataError
from cvcraft.structures import Sample, target_kind

FORMAT = "cvcraft-shards/1"
META = "meta.json"
MAX_JSON_BYTES = 64 << 20  # a target file larger than this is not a target file


# ----------------------------------------------------------------------------- writing
def _encode(image: np.ndarray, ext: str) -> bytes:
    import cv2

    img = image
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise DataError(f"could not encode an image of shape {image.shape} as {ext}")
    return buf.tobytes()


def _targets(s: Sample) -> dict[str, Any]:
    """The JSON-able targets of a sample (what ``_decode_sample`` reads back)."""
    h, w = s.image.shape[:2]
    out: dict[str, Any] = {"width": int(w), "height": int(h)}
    if s.label is not None:
        out["label"] = int(s.label)
    if s.boxes is not None:
        out["boxes"] = np.asarray(s.boxes, np.float64).round(4).tolist()
        labels = s.box_labels if s.box_labels is not None else np.zeros(len(s.boxes))
        out["labels"] = np.asarray(labels, np.int64).tolist()
    if s.keypoints is not None:
        out["keypoints"] = np.asarray(s.keypoints, np.float64).round(4).tolist()
    extras = {k: np.asarray(v).tolist() for k, v in s.extras.items()
              if target_kind(k) != "image"}  # fmt: skip
    if extras:
        out["extras"] = extras
    for k in ("image_id", "path"):
        if k in s.meta:
            v = s.meta[k]
            out[k] = int(v) if isinstance(v, int | np.integer) else str(v)
    return out


def _task_of(s: Sample) -> str:
    if any(target_kind(k) == "image" for k in s.extras):
        return "fuse"
    if s.keypoints is not None:
        return "pose"
    if s.semantic_mask is not None:
        return "segment"
    if s.boxes is not None:
        return "detect"
    return "classify"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    dataset: Any,
    out_dir: str | os.PathLike[str],
    max_count: int = 1000,
    max_bytes: int = 256 << 20,
    *,
    image_format: str = "png",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write every item of ``dataset`` (anything with ``classes``, ``len`` and
    ``sample(i) -> Sample``: classification, detection or segmentation data) as tar shards.

    A shard is closed when it holds ``max_count`` samples or ``max_bytes`` bytes. Each tar is
    written to a temp name and renamed when complete, and ``meta.json`` last, so a crash
    never leaves a folder that looks finished. Returns the meta dict.
    """
    if max_count < 1 or max_bytes < 1:
        raise ConfigError(f"max_count={max_count}, max_bytes={max_bytes}: both must be >= 1")
    ext = "." + image_format.lower().lstrip(".")
    if ext not in (".png", ".jpg"):
        raise ConfigError(f"image_format={image_format!r}: use png (lossless) or jpg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / META).exists():
        raise DataError(f"{out} already holds shards ({META}); choose an empty folder")
    shards: list[dict[str, Any]] = []
    task = "classify"
    tar: tarfile.TarFile | None = None
    tmp = name = ""
    count = size = 0

    def close() -> None:
        nonlocal tar
        if tar is not None:
            tar.close()
            os.replace(tmp, out / name)
            shards.append({"name": name, "count": count})
            tar = None

    n = len(dataset)
    for i in range(n):
        if tar is None or count >= max_count or size >= max_bytes:
            close()
            name = f"shard-{len(shards):06d}.tar"
            tmp = str(out / f".{name}.tmp")
            tar = tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT)
            count = size = 0
        s = dataset.sample(i)
        task = _task_of(s)
        key = f"{i:09d}"
        members = [(f"{key}{ext}", _encode(s.image, ext))]
        members.append((f"{key}.json", json.dumps(_targets(s)).encode()))
        if s.semantic_mask is not None:
            members.append((f"{key}.mask.png", _encode(np.asarray(s.semantic_mask), ".png")))
        for k, v in s.extras.items():  # a paired image stays pixel-aligned and lossless
            if target_kind(k) == "image":
                members.append((f"{key}.{k}.png", _encode(np.asarray(v), ".png")))
        for member, data in members:
            _add(tar, member, data)
            size += 512 + len(data)
        count += 1
        if progress is not None:
            progress(i + 1, n)
    close()
    meta = {
        "format": FORMAT,
        "task": task,
        "classes": [str(c) for c in dataset.classes],
        "count": n,
        "shards": shards,
        "image_format": ext[1:],
    }
    (out / META).write_text(json.dumps(meta, indent=1))
    return meta


# ----------------------------------------------------------------------------- reading
def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a cvcraft ``meta.json`` and tar shards."""
    return os.path.isfile(os.path.join(os.fspath(path), META))


def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``meta.json`` of a shard folder, checked; ``DataError`` naming what is wrong."""
    path = Path(folder) / META
    try:
        meta = json.loads(path.read_bytes()[:MAX_JSON_BYTES])
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    ok = (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and isinstance(meta.get("classes"), list)
        and isinstance(meta.get("shards"), list)
        and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in meta["shards"])
    )
    if not ok:
        raise DataError(
            f"{path}: not a {FORMAT} meta file (needs format, classes, shards); "
            "write shards with `cvcraft pack`"
        )
    return meta


@dataclass
class _Item:
    shard: int  # index into ShardData.shards
    key: str
    image: tuple[int, int]  # (offset, size) of the image member
    target: tuple[int, int] | None
    mask: tuple[int, int] | None


def _index_shard(path: Path, shard: int) -> list[_Item]:
    """Walk a tar's headers (data is skipped by seeking) -> one ``_Item`` per key."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = os.path.basename(m.name)
                key, _, ext = base.partition(".")
                groups.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable tar shard ({e}); re-create it") from None
    items = []
    for key, g in groups.items():
        img = g.get("png") or g.get("jpg") or g.get("jpeg")
        if img is None:
            raise DataError(f"{path}: sample {key!r} has no .png/.jpg image member")
        items.append(_Item(shard, key, img, g.get("json"), g.get("mask.png")))
    return items


def shard_ids_of(data: Any) -> np.ndarray | None:
    """``data.shard_ids()`` (int64 (N,), item -> shard) when ``data`` has it, else None.

    The one place the protocol is read, so wrappers forward it with
    ``shard_ids_of(self.data)`` whether or not what they wrap knows about shards.
    """
    fn = getattr(data, "shard_ids", None)
    return None if fn is None else fn()


def shard_folder_of(data: Any) -> str | None:
    """The shard folder under a chain of wrappers (``.data``/``.base``/``.index``), for
    messages; None when there is none."""
    for _ in range(8):  # wrappers nest a few levels deep at most
        if isinstance(getattr(data, "folder", None), Path):
            return str(data.folder)
        data = next((getattr(data, a) for a in ("data", "base", "index") if hasattr(data, a)), None)
        if data is None:
            return None
    return None


class _ShardFiles:
    """Open shard files, one handle per shard per process (forked workers reopen theirs)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._pid = -1
        self._handles: dict[int, Any] = {}

    def read(self, shard: int, span: tuple[int, int]) -> bytes:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        f = self._handles.get(shard)
        if f is None:
            f = self._handles[shard] = open(self.paths[shard], "rb")  # noqa: SIM115
        offset, size = span
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise DataError(f"{self.paths[shard]}: truncated at byte {offset + len(data)}")
        return data

    def __getstate__(self) -> dict[str, Any]:  # file handles do not pickle (spawned workers)
        return {"paths": self.paths, "_pid": -1, "_handles": {}}


def _decode_sample(
    image: bytes, target: bytes | None, mask: bytes | None, where: str, max_pixels: int
) -> Sample:
    """Bytes of one sample's members -> ``Sample`` (image, label / boxes / mask, meta)."""
    img = decode_image(image, name=where, max_pixels=max_pixels)
    t: dict[str, Any] = {}
    if target is not None:
        try:
            t = json.loads(target)
        except (ValueError, RecursionError) as e:
            raise DataError(f"{where}.json: not valid JSON ({e})") from None
        if not isinstance(t, dict):
            raise DataError(f"{where}.json: expected an object, got {type(t).__name__}")
    label = t.get("label")
    if label is not None and not isinstance(label, int):
        raise DataError(f"{where}.json: label {label!r} is not an integer")
    boxes = labels = None
    if "boxes" in t:
        try:
            boxes = np.asarray(t["boxes"], np.float32).reshape(-1, 4)
            labels = np.asarray(t.get("labels", []), np.int64).reshape(len(boxes))
        except (ValueError, TypeError) as e:
            raise DataError(f"{where}.json: boxes/labels malformed ({e})") from None
    sem = None
    if mask is not None:
        sem = decode_image(mask, name=f"{where}.mask.png", max_pixels=max_pixels)[..., 0]
        if sem.shape != img.shape[:2]:
            raise DataError(f"{where}: mask {sem.shape} and image {img.shape[:2]} differ in size")
    meta = {"path": where, "orig_size": img.shape[:2]}
    if "image_id" in t:
        meta["image_id"] = t["image_id"]
    return Sample(img, label=label, boxes=boxes, box_labels=labels, semantic_mask=sem, meta=meta)


class _ShardIndex:
    """The shared part of the random-access readers: folder, meta, member index, files."""

    def _open(self, folder: str | os.PathLike[str], max_pixels: int) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.max_pixels = max_pixels
        paths = [self.folder / s["name"] for s in self.meta["shards"]]
        for p in paths:
            if not p.is_file() or p.parent != self.folder:
                raise DataError(f"{self.folder / META} lists shard {p.name}, which is missing")
        self.items: list[_Item] = []
        for k, p in enumerate(paths):
            self.items += _index_shard(p, k)
        self.files = _ShardFiles(paths)

    def shard_ids(self) -> np.ndarray:
        """Item -> index of its shard in ``meta.json``'s list, int64 (N,)."""
        return np.fromiter((it.shard for it in self.items), np.int64, len(self.items))

    def where(self, i: int) -> str:
        it = self.items[i]
        return f"{self.files.paths[it.shard]}:{it.key}"

    def read_target(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        if it.target is None:
            return {}
        if it.target[1] > MAX_JSON_BYTES:
            raise DataError(f"{self.where(i)}.json: {it.target[1]} bytes is too large")
        try:
            t = json.loads(self.files.read(it.shard, it.target))
        except (ValueError, RecursionError) as e:
            raise DataError(f"{self.where(i)}.json: not valid JSON ({e})") from None
        if not isinstance(t, dict):
            raise DataError(f"{self.where(i)}.json: expected a JSON object")
        return t

    def read_sample(self, i: int) -> Sample:
        it = self.items[i]
        target = self.files.read(it.shard, it.target) if it.target else None
        mask = self.files.read(it.shard, it.mask) if it.mask else None
        s = _decode_sample(
            self.files.read(it.shard, it.image), target, mask, self.where(i), self.max_pixels
        )
        s.meta["index"] = i
        return s


class ShardData(ClassificationData, _ShardIndex):
    """Classification shards as ``ClassificationData`` (labels read once from the JSONs)."""

    def __init__(
        self, folder: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self._open(folder, max_pixels)
        self.classes = [str(c) for c in self.meta["classes"]]
        labels = []
        for i in range(len(self.items)):
            lab = self.read_target(i).get("label")
            if not isinstance(lab, int):
                raise DataError(f"{self.where(i)}.json: no integer 'label' (classification)")
            labels.append(lab)
        self.labels = as_labels(np.asarray(labels, np.int64), len(self.items))
        self._validate_labels()

    def load_image(self, i: int) -> np.ndarray:
        it = self.items[i]
        return decode_image(
            self.files.read(it.shard, it.image), name=self.where(i), max_pixels=self.max_pixels
        )

    def describe(self, i: int) -> str:
        return self.where(i)

    def shard_ids(self) -> np.ndarray:
        # explicit: ClassificationData's "not sharded" default comes first in the MRO
        return _ShardIndex.shard_ids(self)


class ShardDetectionData(DetectionData):
    """Detection shards as ``DetectionData``: records (boxes, sizes) from the JSONs,
    pixels read from the tar on ``sample(i)``."""

    def __init__(
        self, folder: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        idx = _ShardIndex()
        idx._open(folder, max_pixels)
        records = []
        for i in range(len(idx.items)):
            t = idx.read_target(i)
            try:
                boxes = np.asarray(t.get("boxes", []), np.float32).reshape(-1, 4)
                rec = DetectionImage(
                    path=idx.where(i),
                    width=int(t["width"]),
                    height=int(t["height"]),
                    image_id=int(t.get("image_id", i)),
                    boxes=boxes,
                    labels=np.asarray(t.get("labels", []), np.int64).reshape(len(boxes)),
                    ann_file=idx.where(i) + ".json",
                )
            except (KeyError, ValueError, TypeError) as e:
                raise DataError(f"{idx.where(i)}.json: malformed detection target ({e})") from None
            records.append(rec)
        super().__init__(classes=list(idx.meta["classes"]), images=records, source=str(folder))
        self.index = idx
        self.rows = np.arange(len(records))  # item -> item of the shard index (see take)

    def take(self, indices: Any) -> ShardDetectionData:
        """The images at ``indices`` (a split or ``fraction=``), still reading the same tars."""
        rows = np.asarray(indices, np.int64).reshape(-1)
        out = copy.copy(self)
        out.images = [self.images[int(r)] for r in rows]
        out.rows = self.rows[rows]
        return out

    def shard_ids(self) -> np.ndarray:
        """Item -> shard index, int64 (N,)."""
        return self.index.shard_ids()[self.rows]

    def sample(self, i: int, masks: bool = False, **_: Any) -> Sample:
        s = self.index.read_sample(int(self.rows[i]))
        s.meta["index"] = i
        rec = self.images[i]
        s.meta.update(
            image_id=rec.image_id, iscrowd=rec.iscrowd.copy(), difficult=rec.difficult.copy()
        )
        if masks:  # shards keep boxes only: box-filled instance masks (as DetectionData does)
            s.masks = self.instance_masks(i)
        return s


class ShardSegData(_ShardIndex):
    """Segmentation shards: ``classes``, ``len``, ``sample(i)`` with ``semantic_mask``."""

    def __init__(
        self, folder: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self._open(folder, max_pixels)
        self.classes = [str(c) for c in self.meta["classes"]]

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int) -> Sample:
        s = self.read_sample(i)
        if s.semantic_mask is None:
            raise DataError(f"{self.where(i)}: no .mask.png member (segmentation shards)")
        return s

    def describe(self, i: int) -> str:
        return self.where(i)


def open_shards(folder: str | os.PathLike[str], **kw: Any) -> Any:
    """The random-access reader for the shard folder's task (``meta.json`` says which)."""
    task = read_meta(folder).get("task", "classify")
    cls = {"classify": ShardData, "detect": ShardDetectionData, "segment": ShardSegData}.get(task)
    if cls is None:
        raise DataError(f"{Path(folder) / META}: unknown task {task!r}")
    return cls(folder, **kw)


def shard_splits(folder: str | os.PathLike[str]) -> tuple[Any, Any | None]:
    """(train, val) readers of a packed folder: ``train/`` + ``val/`` shard folders, or the
    folder itself as train (val None: the caller splits)."""
    f = Path(folder)
    if is_shard_folder(f / "train"):
        val = open_shards(f / "val") if is_shard_folder(f / "val") else None
        return open_shards(f / "train"), val
    return open_shards(f), None


# ----------------------------------------------------------------------------- streaming
def reader_slot(shard_count: int) -> tuple[int, int]:
    """(this reader's index, number of readers) over DDP ranks x loader workers.

    Reader ``rank * workers + worker_id`` reads shards ``s`` with ``s % readers == index``.
    """
    import torch.distributed as dist

    world, rank = 1, 0
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    info = torch.utils.data.get_worker_info()
    workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
    readers = world * workers
    if readers > shard_count:
        raise DataError(
            f"{shard_count} shard(s) for {readers} readers ({world} ranks x {workers} workers): "
            "every reader needs its own shard; pack with a smaller max_count or use fewer workers"
        )
    return rank * workers + wid, readers


class ShardStream(torch.utils.data.IterableDataset):
    """Sequential reading of a shard folder; each rank x worker streams its own shards.

    Per epoch: the shard order is ``default_rng([seed, epoch]).permutation``, each reader
    takes every ``readers``-th shard of it, and samples pass through a shuffle buffer of
    ``buffer`` items seeded by ``(seed, epoch, reader)``. ``transform(sample, rng)`` gets
    ``default_rng([seed, epoch, key])`` like the map-style datasets. Call ``set_epoch``.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        transform: Callable[[Sample, np.random.Generator], Sample] | None = None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        buffer: int = 256,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.classes = [str(c) for c in self.meta["classes"]]
        self.transform, self.seed, self.shuffle = transform, seed, shuffle
        self.buffer, self.max_pixels = max(1, buffer), max_pixels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shard order and shuffle the next iteration uses."""
        self.epoch = int(epoch)

    def _samples(self, path: Path) -> Iterator[tuple[str, Sample]]:
        pending: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    key, _, ext = os.path.basename(m.name).partition(".")
                    f = tar.extractfile(m)
                    data = f.read() if f is not None else b""
                    # members of one key are consecutive: a new key closes the previous one
                    for done in [k for k in pending if k != key]:
                        yield done, self._build(path, done, pending.pop(done))
                    pending.setdefault(key, {})[ext.lower()] = data
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{path}: not a readable tar shard ({e})") from None
        for key, g in pending.items():
            yield key, self._build(path, key, g)

    def _build(self, path: Path, key: str, g: dict[str, bytes]) -> Sample:
        img = g.get("png") or g.get("jpg") or g.get("jpeg")
        where = f"{path}:{key}"
        if img is None:
            raise DataError(f"{where}: no .png/.jpg image member")
        return _decode_sample(img, g.get("json"), g.get("mask.png"), where, self.max_pixels)

    def __iter__(self) -> Iterator[Sample]:
        shards = [s["name"] for s in self.meta["shards"]]
        me, readers = reader_slot(len(shards))
        order = np.arange(len(shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
        mine = [self.folder / shards[s] for s in order[me::readers]]
        rng = np.random.default_rng([self.seed, self.epoch, me, 3])
        buf: list[tuple[str, Sample]] = []
        for path in mine:
            for item in self._samples(path):
                if not self.shuffle:
                    yield self._finish(*item)
                    continue
                buf.append(item)
                if len(buf) >= self.buffer:
                    j = int(rng.integers(len(buf)))
                    buf[j], buf[-1] = buf[-1], buf[j]
                    yield self._finish(*buf.pop())
        rng.shuffle(buf)  # type: ignore[arg-type]
        for item in buf:
            yield self._finish(*item)

    def _finish(self, key: str, s: Sample) -> Sample:
        if self.transform is None:
            return s
        k = int(key) if key.isdigit() else abs(hash(key)) % (2**31)
        return self.transform(s, np.random.default_rng([self.seed, self.epoch, k]))
