"""CIFAR-10 / CIFAR-100 "python version" batches, read without trusting the pickle.

The official files are Python pickles: a dict with ``data`` (uint8 (N, 3072), rows of
1024 R, 1024 G, 1024 B values of a 32x32 image), ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100), and a meta file with the class names. ``pickle.load`` on a downloaded file
runs any callable the file names (``os.system`` included), so we never call it. The
data arrays themselves are pickled numpy arrays, so a "no globals at all" unpickler could
not read a real CIFAR file; instead our ``find_class`` refuses every global except the
names numpy uses to pickle an array (``_reconstruct``, ``ndarray``, ``dtype``;
``_frombuffer`` for protocol 5) and ``_codecs.encode`` (how Python 3 writes bytes in
protocol 2). Even those map to inert stand-ins of ours that only record their arguments;
numpy's own functions are never called. After loading, a stand-in becomes an array via
``np.frombuffer`` of its raw bytes, for plain numeric dtypes only. Everything else a
pickle can hold without globals (dicts, lists, bytes, str, ints) loads as usual.

Files written by Python 2 (the official ones) have bytes keys (``b"data"``); files written
by Python 3 have str keys. Both are accepted.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from typing import Any

import numpy as np

from cvcraft.data.classification import ArrayData
from cvcraft.errors import DataError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


class _ArrayMarker:
    """Stand-in for ``numpy.ndarray`` passed to ``_reconstruct`` (never instantiated)."""


class _DTypeStub:
    """Records ``numpy.dtype(code, align, copy)`` and its pickled state (byte order)."""

    def __init__(self, code: Any = None, *_: Any) -> None:
        self.code = code.decode("latin1") if isinstance(code, bytes) else code
        self.order = "|"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1:
            order = state[1]
            self.order = order.decode("latin1") if isinstance(order, bytes) else str(order)
            if len(state) > 3 and state[3] is not None:  # fields: a structured dtype
                raise DataError("structured dtypes are not accepted")

    def to_numpy(self) -> np.dtype:
        try:
            dt = np.dtype(self.code)
        except TypeError:
            raise DataError(f"unsupported array dtype {self.code!r}") from None
        if dt.kind not in "biuf":  # no object arrays: they would hold arbitrary objects
            raise DataError(f"array dtype {dt} is not a plain numeric type")
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


class _ArrayStub:
    """Records ``_reconstruct(ndarray, shape, b'b')`` + ``__setstate__`` (numpy <= protocol 4)."""

    def __init__(self, *_: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        # state = (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(self.state, tuple) or len(self.state) != 5:
            raise DataError("malformed pickled array")
        _, shape, dtype, fortran, raw = self.state
        return _array_from(raw, dtype, shape, "F" if fortran else "C")


def _array_from(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, _DTypeStub):
        raise DataError("malformed pickled array (no dtype)")
    if isinstance(raw, str):  # Python 2 str read with latin1
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes | bytearray) or not isinstance(shape, tuple):
        raise DataError("malformed pickled array (no raw bytes)")
    dt = dtype.to_numpy()
    n = int(np.prod(shape, dtype=np.int64))
    if n * dt.itemsize != len(raw):
        raise DataError(
            f"pickled array of shape {shape} {dt} needs {n * dt.itemsize} bytes, has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dt).reshape(shape, order=order)  # type: ignore[call-overload]


class _BufferStub:
    """Records ``_frombuffer(buffer, dtype, shape, order)`` (numpy, pickle protocol 5)."""

    def __init__(self, buf: Any, dtype: Any, shape: Any, order: Any) -> None:
        self.args = (buf, dtype, shape, order)

    def to_numpy(self) -> np.ndarray:
        buf, dtype, shape, order = self.args
        return _array_from(bytes(buf), dtype, shape, "F" if order == "F" else "C")


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: Python 3 writes bytes this way in protocol <= 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise DataError("malformed pickled bytes")
    return text.encode(encoding)


_ALLOWED = {
    ("_codecs", "encode"): _encode,
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy.core.numeric", "_frombuffer"): _BufferStub,
    ("numpy._core.numeric", "_frombuffer"): _BufferStub,
    ("numpy", "ndarray"): _ArrayMarker,
    ("numpy", "dtype"): _DTypeStub,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no real global: only data and inert numpy-array stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (only plain data and numpy arrays are"
                " accepted)"
            ) from None


def _finish(obj: Any) -> Any:
    """Turn stand-ins into arrays and bytes keys into str, recursively."""
    if isinstance(obj, _ArrayStub | _BufferStub):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return {
            (k.decode("latin1") if isinstance(k, bytes) else k): _finish(v) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_finish(v) for v in obj]
    if isinstance(obj, _DTypeStub | _ArrayMarker):
        raise DataError("a bare numpy dtype/class object is not data")
    return obj


_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}


def _check_memo(raw: bytes) -> None:
    """Refuse memo indices a pickler never writes, before unpickling.

    Picklers number memo slots 0, 1, 2, ... in order; CPython's unpickler sizes its memo
    table by the largest index it is given, so a file whose ``LONG_BINPUT`` names slot
    175 million makes it allocate gigabytes from a 6 KB file (found by the long fuzz run).
    ``pickletools.genops`` walks the opcodes without executing any of them.
    """
    slots = 0
    for op, arg, pos in pickletools.genops(raw):
        if op.name not in _MEMO_OPS:
            continue
        if op.name != "MEMOIZE" and (not isinstance(arg, int) or not 0 <= arg <= slots):
            raise DataError(f"memo index {arg!r} at byte {pos} is out of order (not a pickle a "
                            "pickler wrote)")  # fmt: skip
        slots += 1


def safe_unpickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle file holding only plain data / numpy arrays; ``DataError`` otherwise."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{name}: cannot read file ({e.strerror or e})") from None
    try:
        # encoding="bytes": Python 2 str objects (keys, raw array data) stay bytes
        _check_memo(raw)
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
        return _finish(obj)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    except Exception as e:  # truncated / not a pickle / refused global
        raise DataError(f"{name}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None


def _get(d: Any, key: str, name: str) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"{name}: expected a dict at the top level, got {type(d).__name__}")
    if key not in d:
        raise DataError(f"{name}: key {key!r} missing (has {sorted(map(str, d))})")
    return d[key]


def find_cifar_dir(root: str | os.PathLike[str]) -> str | None:
    """The folder holding the CIFAR batches: ``root`` or its ``cifar-10-batches-py`` /
    ``cifar-100-python`` child; None when there is none."""
    root = os.fspath(root)
    for d in (
        root,
        os.path.join(root, "cifar-10-batches-py"),
        os.path.join(root, "cifar-100-python"),
    ):
        if os.path.isfile(os.path.join(d, "data_batch_1")) or (
            os.path.isfile(os.path.join(d, "train")) and os.path.isfile(os.path.join(d, "meta"))
        ):
            return d
    return None


def _names(values: Any, name: str, key: str) -> list[str]:
    if not isinstance(values, list):
        raise DataError(f"{name}: {key!r} must be a list of class names")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_cifar(root: str | os.PathLike[str], split: str = "train") -> ArrayData:
    """Read the CIFAR-10 or CIFAR-100 (fine labels) ``split`` ("train" | "test") as ArrayData.

    Images come out (N, 32, 32, 3) uint8 RGB: each 3072-value row is reshaped to (3, 32, 32)
    and transposed to HWC.
    """
    if split not in ("train", "test"):
        raise DataError(f"CIFAR split must be 'train' or 'test', got {split!r}")
    folder = find_cifar_dir(root)
    if folder is None:
        raise DataError(
            f"{os.fspath(root)}: no CIFAR batches found (expected data_batch_1..5 + test_batch +"
            " batches.meta for CIFAR-10, or train + test + meta for CIFAR-100)"
        )
    if os.path.isfile(os.path.join(folder, "data_batch_1")):
        files = list(CIFAR10_TRAIN) if split == "train" else ["test_batch"]
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        files = [split]
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    meta_path = os.path.join(folder, meta_file)
    if not os.path.isfile(meta_path):
        raise DataError(f"{meta_path}: CIFAR meta file with the class names is missing")
    classes = _names(_get(safe_unpickle(meta_path), names_key, meta_path), meta_path, names_key)

    images, labels = [], []
    for f in files:
        path = os.path.join(folder, f)
        if not os.path.isfile(path):
            raise DataError(f"{path}: CIFAR batch file is missing")
        d = safe_unpickle(path)
        data = _get(d, "data", path)
        lab = _get(d, labels_key, path)
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            shape = getattr(data, "shape", type(data).__name__)
            raise DataError(f"{path}: 'data' must be uint8 (N, 3072), got {shape}")
        lab = np.asarray(lab)
        if lab.ndim != 1 or len(lab) != len(data) or (lab.size and lab.dtype.kind not in "iu"):
            raise DataError(
                f"{path}: {labels_key!r} must be {len(data)} integers, got {lab.dtype} {lab.shape}"
            )
        images.append(data)
        labels.append(lab.astype(np.int64))
    flat = np.concatenate(images)
    hwc = np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    source = os.path.join(folder, files[0] if len(files) == 1 else "data_batch_1..5")
    return ArrayData(hwc, np.concatenate(labels), classes, source)
