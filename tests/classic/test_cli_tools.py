import cv2
import numpy as np
import pytest

from cvcraft.classic.canny import canny_steps
from cvcraft.classic.cli_tools import IMGPROC_KEYS, OPS, run_imgproc, to_display
from cvcraft.errors import ConfigError, DataError


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((60, 80, 3), np.uint8)
    cv2.circle(img, (40, 30), 15, (200, 100, 50), -1)
    cv2.rectangle(img, (5, 5), (25, 20), (50, 200, 90), -1)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    return path, img[..., ::-1].copy()  # file is BGR, image RGB


def test_canny_steps_are_written(src, tmp_path):
    path, rgb = src
    res = run_imgproc(
        {
            "op": "canny",
            "src": str(path),
            "out": str(tmp_path / "c.png"),
            "low": "30",
            "high": "90",
            "steps": "true",
            "sigma": "1",
        }
    )
    names = [p.split("c_")[-1] for p in res["outputs"]]
    assert names == [
        "1_smoothed.png",
        "2_magnitude.png",
        "3_direction.png",
        "4_nms.png",
        "5_strong.png",
        "5_weak.png",
        "6_edges.png",
    ]
    edges = cv2.imread(res["outputs"][-1], cv2.IMREAD_GRAYSCALE)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(edges > 0, canny_steps(grey, 30, 90, 1.0).edges)


def test_single_output_ops_match_the_library(src, tmp_path):
    path, rgb = src
    res = run_imgproc(
        {"op": "gaussian", "src": str(path), "out": str(tmp_path / "g.png"), "sigma": "1.5"}
    )
    out = cv2.imread(res["outputs"][0])[..., ::-1]
    from cvcraft.classic.filters import gaussian_blur

    np.testing.assert_array_equal(out, gaussian_blur(rgb, 1.5))


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_runs(src, tmp_path, op):
    path, _ = src
    args = {
        "op": op,
        "src": str(path),
        "out": str(tmp_path / f"{op}.png"),
        "size": "30x40",
        "ref": str(path),
    }
    res = run_imgproc(args)
    assert res["outputs"] and all(cv2.imread(p) is not None for p in res["outputs"])


def test_to_display():
    assert to_display(np.array([[True, False]])).tolist() == [[255, 0]]
    assert to_display(np.array([[-2.0, 1.0]])).tolist() == [[255, 128]]
    assert to_display(np.array([[0.5]])).tolist() == [[128]]


def test_imgproc_errors(src, tmp_path):
    path, _ = src
    with pytest.raises(ConfigError, match="Did you mean"):
        run_imgproc({"op": "cany", "src": str(path)})
    with pytest.raises(DataError, match="no such"):
        run_imgproc({"op": "canny", "src": str(tmp_path / "missing.png")})
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="decode"):
        run_imgproc({"op": "canny", "src": str(bad)})
    with pytest.raises(ConfigError, match="ksize"):
        run_imgproc({"op": "median", "src": str(path), "ksize": "four"})
    with pytest.raises(ConfigError, match="odd"):
        run_imgproc({"op": "median", "src": str(path), "ksize": "4"})
    with pytest.raises(ConfigError, match="src"):
        run_imgproc({"op": "canny"})
    assert set(IMGPROC_KEYS) >= {"op", "src", "out", "low", "high", "steps"}
    assert run_imgproc({"op": "help"})["outputs"] == []


def test_register_op_aligns_src_onto_ref(tmp_path):
    from cvcraft.classic.geometry import warp

    rng = np.random.default_rng(0)
    x = cv2.GaussianBlur(rng.random((120, 120)), (0, 0), 3)
    fixed = np.clip((x - x.mean()) / x.std() * 50 + 128, 0, 255).astype(np.uint8)
    fixed = np.dstack([fixed] * 3)
    t = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0, 0, 1]])
    moving = warp(fixed, np.linalg.inv(t))
    cv2.imwrite(str(tmp_path / "f.png"), fixed)
    cv2.imwrite(str(tmp_path / "m.png"), moving)
    res = run_imgproc(
        {
            "op": "register",
            "src": str(tmp_path / "m.png"),
            "ref": str(tmp_path / "f.png"),
            "out": str(tmp_path / "r.png"),
            "kind": "translation",
        }
    )
    reg = cv2.imread(res["outputs"][0])
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(reg[inner].astype(int) - fixed[inner]).mean() < 4  # two resamplings
    assert np.abs(moving[inner].astype(int) - fixed[inner]).mean() > 10
    with pytest.raises(ConfigError, match="method"):
        run_imgproc(
            {
                "op": "register",
                "src": str(tmp_path / "m.png"),
                "ref": str(tmp_path / "f.png"),
                "method": "surf",
            }
        )
