"""The classical-CV commands through the CLI: `cvcraft imgproc OP ...`, `cvcraft calibrate`."""

import cv2
import numpy as np

from cvcraft.classic.canny import canny
from cvcraft.cli import main


def test_imgproc_canny_through_the_cli_equals_the_library(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64, 3), np.uint8)
    cv2.rectangle(img, (10, 12), (50, 44), (200, 180, 40), -1)
    img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
    src = tmp_path / "img.png"
    cv2.imwrite(str(src), img[..., ::-1])
    out = tmp_path / "edges.png"
    code = main(["imgproc", "canny", f"src={src}", "low=50", "high=150", f"out={out}"])
    assert code == 0, capsys.readouterr().err
    written = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    expect = canny(img, 50, 150)
    assert written.shape == expect.shape
    np.testing.assert_array_equal(written > 0, np.asarray(expect) > 0)


def test_imgproc_refuses_a_key_and_calibrate_names_the_missing_folder(tmp_path, capsys):
    assert main(["imgproc", "canny", "src=x.png", "lowe=3"]) == 2
    assert "unknown key 'lowe'" in capsys.readouterr().err
    assert main(["calibrate", f"images={tmp_path / 'nope'}"]) == 2
    assert "nope" in capsys.readouterr().err


def test_imgproc_hog_writes_the_hog_picture(tmp_path, capsys):
    from cvcraft.classic.cli_tools import to_display
    from cvcraft.classic.hog import hog_image

    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3)).astype(np.uint8), (5, 5), 2)
    src, out = tmp_path / "img.png", tmp_path / "hog.png"
    cv2.imwrite(str(src), img[..., ::-1])
    code = main(["imgproc", "hog", f"src={src}", "cell=6", "orientations=8", f"out={out}"])
    assert code == 0, capsys.readouterr().err
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    expect = to_display(hog_image(grey, 8, 6))
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_GRAYSCALE), expect)
