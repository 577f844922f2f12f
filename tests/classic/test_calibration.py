import json

import cv2
import numpy as np
import pytest

from cvcraft.classic.calibration import (
    board_points,
    calibrate,
    find_checkerboard,
    parse_pattern,
    render_checkerboard,
)
from cvcraft.classic.cli_tools import run_calibrate
from cvcraft.errors import ConfigError, DataError

K = np.array([[820.0, 0, 318.0], [0, 815.0, 243.0], [0, 0, 1]])


def views(n=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = rng.uniform(-0.45, 0.45, 3)
        t = np.array(
            [-100 + rng.uniform(-30, 30), -60 + rng.uniform(-30, 30), rng.uniform(450, 650)]
        )
        out.append((r, t, render_checkerboard(K, r, t, "9x6", 25.0)))
    return out


def test_rendered_corners_are_where_projectpoints_puts_them():
    r, t, img = views(1, seed=3)[0]
    found = find_checkerboard(img, "9x6")
    proj, _ = cv2.projectPoints(board_points("9x6", 25.0), r, t, K, None)
    assert found is not None
    assert np.abs(found - proj.reshape(-1, 2)).max() < 0.15


def test_calibration_recovers_the_known_camera():
    vs = views(10)
    res = calibrate([v[2] for v in vs], "9x6", 25.0)
    k = res["camera_matrix"]
    assert k[0, 0] == pytest.approx(K[0, 0], rel=0.01)
    assert k[1, 1] == pytest.approx(K[1, 1], rel=0.01)
    assert abs(k[0, 2] - K[0, 2]) < 3 and abs(k[1, 2] - K[1, 2]) < 3
    assert res["rms"] < 0.5 and max(res["per_view_rms"]) < 0.5
    assert len(res["used"]) + len(res["skipped"]) == 10 and len(res["used"]) >= 6
    # our per-view errors agree with OpenCV's overall RMS
    assert np.sqrt(np.mean(np.square(res["per_view_rms"]))) == pytest.approx(res["rms"], rel=0.05)


def test_run_calibrate_writes_json(tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    for i, (_, _, img) in enumerate(views(7, seed=1)):
        cv2.imwrite(str(folder / f"v{i}.png"), img)
    cv2.imwrite(str(folder / "blank.png"), np.full((480, 640), 128, np.uint8))
    out = tmp_path / "calib.json"
    rep = run_calibrate({"images": str(folder), "pattern": "9x6", "square": "25", "out": str(out)})
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep))
    assert saved["camera_matrix"][0][0] == pytest.approx(820, rel=0.01)
    assert "blank.png" in saved["skipped"] and saved["rms_reprojection_px"] < 0.5


def test_calibration_errors(tmp_path):
    with pytest.raises(ConfigError, match="9x6"):
        parse_pattern("nine by six")
    with pytest.raises(ConfigError, match=">= 2"):
        parse_pattern("1x6")
    with pytest.raises(DataError, match="needs >= 3"):
        calibrate([np.full((100, 100), 128, np.uint8)] * 3, "9x6", 25)
    with pytest.raises(DataError, match="one camera"):
        calibrate([np.zeros((10, 10), np.uint8), np.zeros((12, 10), np.uint8)], "9x6", 25)
    with pytest.raises(DataError, match="not a folder"):
        run_calibrate({"images": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="no "):
        run_calibrate({"images": str(tmp_path)})
