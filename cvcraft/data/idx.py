"""IDX files (MNIST, Fashion-MNIST, EMNIST): a tiny big-endian n-d array format.

Layout: two zero bytes, a dtype code (0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dims, then each dim as big-endian uint32,
then the values row-major. Files may be gzip-compressed (``.gz`` or by magic bytes).
Grayscale images are kept (N, H, W, 1) and become 3 equal RGB channels when loaded
(``ArrayData``), so the whole pipeline is RGB.
"""

from __future__ import annotations

import glob
import math
import os
import sys
import zlib

import numpy as np

from cvcraft.data.classification import ArrayData
from cvcraft.errors import DataError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _gunzip_bounded(raw: bytes) -> bytes:
    """Decompress a gzip IDX file, never more than its header says it holds (+1 byte).

    A gzip bomb (a few MB expanding to many GB) is stopped after the header: the dims
    announce the data size, and decompression stops one byte past it, so the size check
    below sees the mismatch without the memory ever being allocated.
    """
    d = zlib.decompressobj(wbits=31)  # 31 = gzip container
    pending = raw

    def more(out: bytes, upto: int) -> bytes:
        nonlocal pending
        if upto <= len(out):  # max_length 0 would mean "unlimited": never pass it
            return out
        out += d.decompress(pending, upto - len(out))
        pending = d.unconsumed_tail
        return out

    out = more(b"", 4)
    if len(out) < 4:
        return out
    head = 4 + 4 * out[3]
    out = more(out, head)
    if len(out) < head or out[2] not in IDX_DTYPES:
        return out
    dims = np.frombuffer(out, ">u4", count=out[3], offset=4)
    want = head + math.prod(int(x) for x in dims) * np.dtype(IDX_DTYPES[out[2]]).itemsize
    if want > sys.maxsize // 2:  # more than any machine holds: let the size check refuse it
        return out
    return more(out, want + 1)


def read_idx_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (raw or gzip) to a native-endian numpy array of its dims."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip_bounded(raw)
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: cannot read/decompress ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"{name}: unknown IDX dtype code 0x{code:02X} "
            f"(known: {', '.join(f'0x{c:02X}' for c in IDX_DTYPES)})"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{name}: header truncated ({len(raw)} bytes, {ndim} dims need {head})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dt = np.dtype(IDX_DTYPES[code])
    # Python ints: a hostile header's dims (up to 255 x 2**32) would overflow int64 and could
    # wrap around to the file's real size
    expected = math.prod(dims) * dt.itemsize
    actual = len(raw) - head
    # a zero dim makes the byte count 0 whatever the others say; numpy still refuses a shape
    # whose other dims multiply past its index range, so bound those too
    if math.prod(d for d in dims if d) * dt.itemsize >= 2**62:
        raise DataError(f"{name}: dims {dims} describe an impossibly large array; corrupt header")
    if expected != actual:
        raise DataError(
            f"{name}: dims {dims} of {dt.name} need {expected} data bytes, "
            f"the file has {actual}; it is truncated or corrupt"
        )
    return np.frombuffer(raw, dt, offset=head).reshape(dims).astype(dt.newbyteorder("="))


def read_idx(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    classes: list[str] | None = None,
) -> ArrayData:
    """Images (N, H, W) or (N, H, W, C) ubyte + labels (N,) -> ``ArrayData``.

    ``classes`` defaults to ``["0", ..., str(max label)]``; pass the list explicitly when a
    split might lack the highest class.
    """
    images = read_idx_file(images_path)
    labels = read_idx_file(labels_path)
    ipath, lpath = os.fspath(images_path), os.fspath(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(
            f"{ipath}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{lpath}: expected integer labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{ipath} has {len(images)} images but {lpath} has {len(labels)} labels")
    if classes is None:
        classes = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
    return ArrayData(images, labels.astype(np.int64), classes, ipath)


def find_idx_pair(root: str | os.PathLike[str], split: str = "train") -> tuple[str, str]:
    """Find ``<split>-images-idx3-ubyte[.gz]`` and ``<split>-labels-idx1-ubyte[.gz]``.

    ``split`` "train" -> ``train-*``; "test"/"val" -> ``t10k-*`` (the MNIST naming).
    Looks in ``root`` and ``root/raw`` (torchvision's layout); prefix-named variants such as
    EMNIST's ``emnist-digits-train-images-idx3-ubyte`` match too. Uncompressed wins over .gz.
    """
    root = os.fspath(root)
    prefix = {"train": "train", "test": "t10k", "val": "t10k", "t10k": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"IDX split must be 'train' or 'test', got {split!r}")
    if prefix == "t10k":  # EMNIST calls it "test"
        prefixes = ["t10k", "test"]
    else:
        prefixes = ["train"]

    def find(kind: str, idx: str) -> str:
        hits: list[str] = []
        for d in (root, os.path.join(root, "raw")):
            for p in prefixes:
                hits += glob.glob(os.path.join(glob.escape(d), f"*{p}-{kind}-{idx}-ubyte"))
                hits += glob.glob(os.path.join(glob.escape(d), f"*{p}-{kind}-{idx}-ubyte.gz"))
        hits = sorted(set(hits), key=lambda h: (h.endswith(".gz"), h))
        distinct = sorted({h.removesuffix(".gz") for h in hits})
        if not hits:
            raise DataError(
                f"{root}: no {prefixes[0]}-{kind}-{idx}-ubyte[.gz] file found "
                "(looked in the folder and its raw/ sub-folder)"
            )
        if len(distinct) > 1:
            raise DataError(
                f"{root}: several IDX {kind} files match split {split!r}: "
                f"{distinct}; point to a folder with one dataset"
            )
        return hits[0]

    return find("images", "idx3"), find("labels", "idx1")
