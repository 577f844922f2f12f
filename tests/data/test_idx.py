"""IDX (MNIST) files: header parsing, dtypes, gzip, size checks, pair finding."""

import gzip
import struct

import numpy as np
import pytest

from cvcraft.data.idx import find_idx_pair, read_idx, read_idx_file
from cvcraft.errors import DataError


def _write_idx(path, arr, code=0x08, gz=False):
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    big = arr.astype(arr.dtype.newbyteorder(">"))
    raw = header + big.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_read_idx_file_dtypes_and_gzip(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    _write_idx(tmp_path / "i.idx", imgs)
    np.testing.assert_array_equal(read_idx_file(tmp_path / "i.idx"), imgs)
    _write_idx(tmp_path / "i.idx.gz", imgs, gz=True)
    np.testing.assert_array_equal(read_idx_file(tmp_path / "i.idx.gz"), imgs)
    f = np.array([[1.5, -2.25], [3.0, 1e6]], dtype=np.float32)
    _write_idx(tmp_path / "f.idx", f, code=0x0D)
    out = read_idx_file(tmp_path / "f.idx")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, f)
    i16 = np.array([-300, 7, 32000], dtype=np.int16)
    _write_idx(tmp_path / "s.idx", i16, code=0x0B)
    np.testing.assert_array_equal(read_idx_file(tmp_path / "s.idx"), i16)


def test_size_mismatch_and_bad_header(tmp_path):
    imgs = np.zeros((3, 4, 5), np.uint8)
    _write_idx(tmp_path / "i.idx", imgs)
    raw = (tmp_path / "i.idx").read_bytes()
    (tmp_path / "i.idx").write_bytes(raw[:-7])
    with pytest.raises(
        DataError, match=r"i\.idx: dims \(3, 4, 5\) of uint8 need 60 data bytes, the file has 53"
    ):
        read_idx_file(tmp_path / "i.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match=r"bad\.idx: not an IDX file"):
        read_idx_file(tmp_path / "bad.idx")
    (tmp_path / "code.idx").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="unknown IDX dtype code 0x07"):
        read_idx_file(tmp_path / "code.idx")


def test_read_idx_pair_to_rgb_array_data(tmp_path):
    imgs = np.random.default_rng(1).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 2], np.uint8)
    (tmp_path / "raw").mkdir()
    _write_idx(tmp_path / "raw" / "train-images-idx3-ubyte.gz", imgs, gz=True)
    _write_idx(tmp_path / "raw" / "train-labels-idx1-ubyte.gz", labels, gz=True)
    _write_idx(tmp_path / "raw" / "train-labels-idx1-ubyte", labels)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:2])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:2])
    ip, lp = find_idx_pair(tmp_path, "train")
    assert ip.endswith("raw/train-images-idx3-ubyte.gz")
    assert lp.endswith("raw/train-labels-idx1-ubyte")  # uncompressed preferred
    d = read_idx(ip, lp)
    assert d.classes == [str(i) for i in range(10)] and d.labels.tolist() == labels.tolist()
    img = d.load_image(1)
    assert img.shape == (28, 28, 3)
    np.testing.assert_array_equal(img, np.repeat(imgs[1][..., None], 3, axis=2))
    assert find_idx_pair(tmp_path, "test")[0].endswith("t10k-images-idx3-ubyte")
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:3])
    with pytest.raises(DataError, match="has 2 images but .* has 3 labels"):
        read_idx(*find_idx_pair(tmp_path, "test"))
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        find_idx_pair(tmp_path / "raw" / "nothing", "train")
