"""read_image/write_image: every pixel layout becomes uint8 RGB; bad files name themselves."""

import cv2
import numpy as np
import pytest
from PIL import Image

from cvcraft.data.io import IMAGE_EXTENSIONS, is_image_file, read_image, write_image
from cvcraft.errors import DataError

RNG = np.random.default_rng(0)


def _rand(shape, dtype=np.uint8, hi=256):
    return RNG.integers(0, hi, shape).astype(dtype)


def test_rgb_png_roundtrip_is_exact_and_rgb_ordered(tmp_path):
    rgb = _rand((7, 9, 3))
    p = tmp_path / "a.png"
    write_image(p, rgb)
    np.testing.assert_array_equal(read_image(p), rgb)
    # the file itself is BGR on disk, as OpenCV and every viewer expect
    np.testing.assert_array_equal(cv2.imread(str(p))[..., ::-1], rgb)


def test_jpeg_matches_opencv_decode(tmp_path):
    bgr = _rand((16, 20, 3))
    p = tmp_path / "b.JPG"
    cv2.imwrite(str(p), bgr)
    expected = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_image(p), expected)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _rand((5, 6))
    p = tmp_path / "g.png"
    cv2.imwrite(str(p), gray)
    out = read_image(p)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))


def test_rgba_drops_alpha(tmp_path):
    bgra = _rand((4, 5, 4))
    bgra[0, 0, 3] = 0  # a transparent pixel keeps its stored colour
    p = tmp_path / "rgba.png"
    cv2.imwrite(str(p), bgra)
    np.testing.assert_array_equal(read_image(p), cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB))


def test_gray_alpha_png_drops_alpha(tmp_path):
    la = _rand((4, 5, 2))
    p = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(p)
    np.testing.assert_array_equal(read_image(p), np.repeat(la[..., :1], 3, axis=2))


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_scaled_by_257_with_rounding(tmp_path, channels):
    shape = (6, 7, 3) if channels == 3 else (6, 7)
    img16 = _rand(shape, np.uint16, 65536)
    img16.flat[:4] = [0, 65535, 128, 129]  # ends and the rounding boundary (128/257 < 0.5)
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), img16)
    expected = np.round(img16.astype(np.float64) / 257).astype(np.uint8)
    expected = cv2.cvtColor(expected, cv2.COLOR_GRAY2RGB if channels == 1 else cv2.COLOR_BGR2RGB)
    out = read_image(p)
    np.testing.assert_array_equal(out, expected)
    # OpenCV's own scaling agrees
    ref = cv2.convertScaleAbs(img16, alpha=1 / 257)
    ref = cv2.cvtColor(ref, cv2.COLOR_GRAY2RGB if channels == 1 else cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, ref)
    if channels == 1:  # hand-computed: 0 -> 0, 65535 -> 255, 128/257 -> 0, 129/257 -> 1
        assert out[0, :4, 0].tolist() == [0, 255, 0, 1]


def test_corrupt_file_error_names_it(tmp_path):
    p = tmp_path / "noise.jpg"
    p.write_bytes(bytes(RNG.integers(0, 256, 500, dtype=np.uint8)))
    with pytest.raises(DataError, match="noise.jpg"):
        read_image(p)


def test_truncated_jpeg_error_names_it(tmp_path):
    p = tmp_path / "cut.jpg"
    ok, buf = cv2.imencode(".jpg", _rand((64, 64, 3)))
    p.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg.*truncated"):
        read_image(p)


def test_truncated_png_error_names_it(tmp_path):
    p = tmp_path / "cut.png"
    ok, buf = cv2.imencode(".png", _rand((64, 64, 3)))
    p.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=r"cut\.png"):
        read_image(p)


def test_empty_missing_and_directory(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png.*empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(DataError, match=r"gone\.png: file not found"):
        read_image(tmp_path / "gone.png")
    with pytest.raises(DataError, match="directory"):
        read_image(tmp_path)


def test_pixel_limit_checked_from_header(tmp_path):
    p = tmp_path / "wide.png"
    write_image(p, _rand((50, 100, 3)))
    with pytest.raises(DataError, match=r"100 x 50 = 5000 pixels.*CVCRAFT_MAX_PIXELS=5000"):
        read_image(p, max_pixels=4999)
    assert read_image(p, max_pixels=5000).shape == (50, 100, 3)


def test_pixel_limit_above_pils_own_bomb_limit(tmp_path, monkeypatch):
    # PIL refuses > 2 * MAX_IMAGE_PIXELS itself; our message and our limit still apply
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    p = tmp_path / "big.png"
    write_image(p, _rand((50, 100, 3)))
    with pytest.raises(DataError, match=r"5000 pixels.*above the limit of 4000"):
        read_image(p, max_pixels=4000)
    assert read_image(p, max_pixels=10_000).shape == (50, 100, 3)


def test_unicode_path_and_extensions(tmp_path):
    p = tmp_path / "dossier é" / "ça.png"
    rgb = _rand((3, 3, 3))
    write_image(p, rgb)
    np.testing.assert_array_equal(read_image(p), rgb)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)
    assert is_image_file("X/Y.JPEG") and is_image_file("a.TiF") and not is_image_file("a.txt")
    with pytest.raises(DataError, match="extension"):
        write_image(tmp_path / "a.gif", rgb)
