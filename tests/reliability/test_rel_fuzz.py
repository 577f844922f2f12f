"""Hostile input: fuzzed images, IDX, CIFAR pickles, COCO/YOLO/VOC structures, checkpoints and
tar shards give a result or a cvcraft error — never another exception, a hang or a huge
allocation.

Default run: ``CVCRAFT_FUZZ_EXAMPLES`` (default 25) cases per target, a few seconds each.
Long run (RELIABILITY.md): ``CVCRAFT_FUZZ_EXAMPLES=5000 python benchmarks/fuzz.py``.
Per case: hypothesis ``deadline`` (time) and a tracemalloc peak (memory; numpy's buffers
are traced) bound the work.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcraft.data.cifar import read_cifar, safe_unpickle
from cvcraft.data.detection import read_coco, read_voc, read_yolo
from cvcraft.data.idx import read_idx_file
from cvcraft.data.io import decode_image, write_image
from cvcraft.data.shapes import make_shapes
from cvcraft.data.webdataset import ShardData, write_shards
from cvcraft.engine.checkpoint import load_checkpoint, save_checkpoint
from cvcraft.errors import CvcraftError, DataError

N = int(os.environ.get("CVCRAFT_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    derandomize=True,  # a failure reproduces: the same examples every run
    max_examples=N,
    deadline=5000,  # ms per case: a hang fails the test
    suppress_health_check=list(HealthCheck),
    database=None,
)
MAX_PEAK = 64 << 20  # bytes traced per case


def bounded(fn, *args, **kw):
    """Run ``fn``; only CvcraftError may escape, and at most MAX_PEAK bytes may be allocated."""
    tracemalloc.start()
    try:
        return fn(*args, **kw)
    except CvcraftError:
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PEAK, f"{fn.__name__} allocated {peak / 1e6:.0f} MB"


@st.composite
def mutate(draw, seed: bytes) -> bytes:
    """The valid seed with bytes overwritten / inserted / deleted, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


def _image_bytes(ext: str) -> bytes:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(ext, rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


PNG, JPG = _image_bytes(".png"), _image_bytes(".jpg")


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + PNG[33:]


# ----------------------------------------------------------------------------- image decoder
@FUZZ
@given(st.one_of(mutate(PNG), mutate(JPG), st.binary(max_size=256)))
def test_decoder_fuzz(data):
    img = bounded(decode_image, data, max_pixels=1 << 20)
    if img is not None:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_png_chunk_overrun_refused_before_decoding():
    """Found by the 3000-case run: a 10 x 12 PNG whose IDAT declares 1.4 GB made OpenCV spend
    ~2 s allocating (memory tracemalloc cannot see). Refused from the chunk headers now."""
    idat = PNG.index(b"IDAT") - 4
    bad = PNG[:idat] + struct.pack(">I", 1_375_732_095) + PNG[idat + 4 :]
    with pytest.raises(DataError, match="chunk IDAT at byte 33 declares 1375732095 bytes"):
        decode_image(bad)
    with pytest.raises(DataError, match="truncated or corrupt"):
        decode_image(PNG[: len(PNG) - 20])  # cut inside the last chunk
    assert decode_image(PNG).shape[2] == 3  # a whole file still decodes


@FUZZ
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_decoder_pixel_limit_before_allocation(w, h):
    """A header declaring w x h > the limit is refused from the header alone."""
    data = _png_header(w, h)
    if w * h > 4096:
        with pytest.raises(DataError, match="limit|decodable"):
            bounded_raise(decode_image, data, max_pixels=4096)
    else:
        bounded(decode_image, data, max_pixels=4096)


def bounded_raise(fn, *args, **kw):
    tracemalloc.start()
    try:
        return fn(*args, **kw)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MAX_PEAK


def test_decompression_bomb_png_is_refused():
    """A 20000 x 20000 PNG that compresses to a few hundred KB: refused by the pixel limit."""
    rows = zlib.compress(b"\x00" * (20000 * 3 + 1) * 200, 9)  # first 200 rows are enough
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    with pytest.raises(DataError, match="decompression bomb"):
        bounded_raise(decode_image, data, max_pixels=10_000_000)


# ----------------------------------------------------------------------------- IDX
IDX = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + bytes(range(24))


@FUZZ
@given(
    st.one_of(
        mutate(IDX),
        st.builds(
            lambda code, dims, body: (
                b"\x00\x00"
                + bytes([code, len(dims)])
                + b"".join(struct.pack(">I", d) for d in dims)
                + body
            ),
            st.sampled_from([8, 9, 11, 12, 13, 14, 7]),
            st.lists(st.integers(0, 2**32 - 1), max_size=8),
            st.binary(max_size=64),
        ),  # fmt: skip
    ),
    st.booleans(),
)
def test_idx_fuzz(data, gz):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f-idx3-ubyte"
        p.write_bytes(zlib.compress(data, wbits=31) if gz else data)  # wbits=31: gzip
        arr = bounded(read_idx_file, p)
        if arr is not None:
            assert arr.size * arr.itemsize <= len(data)


def test_idx_gzip_bomb_stops_at_header(tmp_path):
    """16 bytes declared, 128 MB of zeros compressed to ~130 KB: refused without inflating it
    (the 64 MB allocation bound would fail if the reader inflated the whole stream)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    body = comp.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 16))
    zeros = b"\x00" * (1 << 24)
    for _ in range(8):
        body += comp.compress(zeros)
    body += comp.flush()
    p = tmp_path / "bomb-idx1-ubyte.gz"
    p.write_bytes(body)
    with pytest.raises(DataError, match="truncated or corrupt"):
        bounded_raise(read_idx_file, p)


def test_idx_zero_dim_with_huge_others_is_refused(tmp_path):
    """Found by the 3000-case run: dims (0, 515475, 1044849, 17124922) need 0 data bytes, so
    the size check passed and numpy's reshape raised a bare ValueError."""
    p = tmp_path / "zero-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x04" + struct.pack(">IIII", 0, 515475, 1044849, 17124922))
    with pytest.raises(DataError, match="impossibly large"):
        bounded_raise(read_idx_file, p)
    p.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 0, 5))  # a real empty file
    assert bounded(read_idx_file, p).shape == (0, 5)


# ----------------------------------------------------------------------------- CIFAR
def test_cifar_far_memo_index_refused_before_unpickling(tmp_path):
    """Found by the 3000-case run: one LONG_BINPUT naming memo slot 175 million made CPython's
    unpickler allocate 2.8 GB for a 100-byte file. Now refused by the opcode pre-scan."""
    good = _cifar_batch(2)
    bad = good.replace(b"q\x01", b"r" + struct.pack("<I", 175_726_962), 1)
    (tmp_path / "data_batch_1").write_bytes(bad)
    with pytest.raises(DataError, match="memo index 175726962"):
        bounded_raise(safe_unpickle, tmp_path / "data_batch_1")
    for proto in (2, 3, 4, 5):  # real pickles of every protocol still load
        (tmp_path / "ok").write_bytes(_cifar_batch(proto))
        assert bounded(safe_unpickle, tmp_path / "ok")["labels"] == [0, 1]


def _cifar_batch(proto: int) -> bytes:
    d = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    return pickle.dumps(d, protocol=proto)


@FUZZ
@given(st.one_of(mutate(_cifar_batch(2)), mutate(_cifar_batch(4)), st.binary(max_size=200)))
def test_cifar_pickle_fuzz(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data_batch_1"
        p.write_bytes(data)
        bounded(safe_unpickle, p)


def test_cifar_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    for name in ("data_batch_1", "batches.meta", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps({"data": Evil(), "label_names": ["a"]}))
    with pytest.raises(DataError, match="refusing to load global"):
        read_cifar(tmp_path)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def ckpt_bytes():
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(4.0)}, "epoch": 1}, buf)
    return buf.getvalue()


@FUZZ
@given(data=st.data())
def test_checkpoint_fuzz(ckpt_bytes, data):
    blob = data.draw(st.one_of(mutate(ckpt_bytes), st.binary(max_size=128)))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.pt"
        p.write_bytes(blob)
        bounded(load_checkpoint, p, verify=False)


def test_checkpoint_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, p)
    with (
        pytest.warns(UserWarning, match="no .*sha256"),
        pytest.raises(CvcraftError, match="weights_only"),
    ):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()
    save_checkpoint(tmp_path / "ok.pt", {"w": torch.ones(2)})  # the sidecar path still works
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["w"], torch.ones(2))


# ----------------------------------------------------------------------------- COCO / YOLO / VOC
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def coco_docs(draw):
    img = {"id": 1, "file_name": "a.png", "width": 10, "height": 12}
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 4], "iscrowd": 0}
    doc = {"images": [img], "annotations": [ann], "categories": [{"id": 1, "name": "x"}]}
    cat = doc["categories"][0]
    for _ in range(draw(st.integers(1, 3))):  # replace a field anywhere with any JSON value
        where = draw(st.sampled_from([doc, img, ann, cat]))
        key = draw(st.sampled_from([*sorted(where), "extra"]))
        where[key] = draw(json_values)
    return doc


@pytest.fixture(scope="module")
def det_root():
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_image(root / "images" / "a.png", np.zeros((12, 10, 3), np.uint8))
        yield root


@FUZZ
@given(coco_docs())
def test_coco_structure_fuzz(det_root, doc):
    p = det_root / "ann.json"
    p.write_text(json.dumps(doc))
    bounded(read_coco, p, det_root / "images")


@FUZZ
@given(
    st.lists(
        st.lists(
            st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.text(max_size=3)),
            max_size=8,
        ).map(lambda r: " ".join(map(str, r))),
        max_size=5,
    ),  # fmt: skip
    json_values,
)
def test_yolo_structure_fuzz(det_root, lines, names):
    lab = det_root / "labels" / "a.txt"
    lab.parent.mkdir(exist_ok=True)
    lab.write_text("\n".join(lines))
    cfg = {"path": ".", "train": "images", "names": names}
    (det_root / "data.yaml").write_text(yaml.safe_dump(cfg))
    bounded(read_yolo, det_root / "data.yaml", "train")


VOC = (
    b"<annotation><filename>a.png</filename><size><width>10</width><height>12</height></size>"
    b"<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>5</ymax>"
    b"</bndbox></object></annotation>"
)


@FUZZ
@given(mutate(VOC))
def test_voc_fuzz(det_root, xml):
    (det_root / "Annotations").mkdir(exist_ok=True)
    (det_root / "JPEGImages").mkdir(exist_ok=True)
    (det_root / "JPEGImages" / "a.png").write_bytes((det_root / "images" / "a.png").read_bytes())
    (det_root / "Annotations" / "a.xml").write_bytes(xml)
    bounded(read_voc, det_root)


def test_voc_entity_expansion_refused(tmp_path):
    lol = b"".join(
        b'<!ENTITY l%d "%s">' % (i, b"&l%d;" % (i - 1) * 10 if i else b"lol") for i in range(10)
    )
    xml = b"<?xml version='1.0'?><!DOCTYPE a [" + lol + b"]><annotation>&l9;</annotation>"
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_bytes(xml)
    with pytest.raises(DataError, match="DTD|entity|DOCTYPE"):
        bounded_raise(read_voc, tmp_path)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../x.png"])
def test_annotation_paths_cannot_escape_root(det_root, name):
    doc = {
        "images": [{"id": 1, "file_name": name, "width": 10, "height": 12}],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    p = det_root / "escape.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="outside the dataset root"):
        read_coco(p, det_root / "images")
    data = read_coco(p, det_root / "images", allow_outside_root=True)  # the user allows it
    assert len(data) == 1


# ----------------------------------------------------------------------------- tar shards
@pytest.fixture(scope="module")
def shard_bytes():
    with tempfile.TemporaryDirectory() as d:
        write_shards(make_shapes(3, 16, 0, "train"), d, max_count=10)
        yield (Path(d) / "shard-000000.tar").read_bytes(), (Path(d) / "meta.json").read_bytes()


@FUZZ
@given(data=st.data())
def test_shard_fuzz(shard_bytes, data):
    tar, meta = shard_bytes
    blob = data.draw(mutate(tar))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "shard-000000.tar").write_bytes(blob)
        (Path(d) / "meta.json").write_bytes(meta)
        ds = bounded(ShardData, d)
        if ds is not None:
            for i in range(len(ds)):
                bounded(ds.load_image, i)
