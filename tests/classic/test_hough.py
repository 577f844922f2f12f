import cv2
import numpy as np
import pytest
import skimage.feature as skf
import skimage.transform as skt

from cvcraft.classic.hough import hough_circles, hough_lines, hough_lines_p
from cvcraft.errors import ConfigError, DataError


def _line_image():
    img = np.zeros((100, 120), np.uint8)
    cv2.line(img, (10, 90), (110, 20), 255, 1)
    return img


def test_hough_lines_matches_skimage_peak():
    img = _line_image()
    rho, theta = hough_lines(img, 50)[0]
    h, angles, dists = skt.hough_line(img > 0, theta=np.deg2rad(np.arange(-90, 90)))
    _, a, d = skt.hough_line_peaks(h, angles, dists, num_peaks=1)
    # skimage's theta is in [-90, 90), ours in [0, 180): same line up to sign of rho
    t_sk, d_sk = (a[0], d[0]) if a[0] >= 0 else (a[0] + np.pi, -d[0])
    assert theta == pytest.approx(t_sk, abs=np.deg2rad(1.01))
    assert rho == pytest.approx(d_sk, abs=1.01)
    # the line's own pixels lie on it
    ys, xs = np.nonzero(img)
    assert np.abs(xs * np.cos(theta) + ys * np.sin(theta) - rho).max() < 2.5


def test_hough_lines_p_recovers_the_segment_and_wraps_cv2():
    img = _line_image()
    seg = hough_lines_p(img, 30, min_length=20, max_gap=5)
    assert len(seg) >= 1
    x1, y1, x2, y2 = seg[np.argmax(np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]))]
    assert {(x1, y1), (x2, y2)} == {(10, 90), (110, 20)}
    ref = cv2.HoughLinesP(img, 1, np.pi / 180, 30, minLineLength=20, maxLineGap=5)
    np.testing.assert_array_equal(seg, ref.reshape(-1, 4))
    assert hough_lines_p(np.zeros((20, 20), np.uint8), 5).shape == (0, 4)
    assert hough_lines(np.zeros((20, 20), np.uint8), 5).shape == (0, 2)


def test_hough_circles_match_drawn_circle_and_skimage():
    img = np.zeros((100, 120), np.uint8)
    cv2.circle(img, (60, 45), 25, 200, -1)
    img = cv2.GaussianBlur(img, (5, 5), 1)
    x, y, r = hough_circles(img, 20, 100, 20, 10, 40)[0]
    assert abs(x - 60) <= 1 and abs(y - 45) <= 1 and abs(r - 25) <= 1.5
    radii = np.arange(15, 36)
    hs = skt.hough_circle(skf.canny(img, sigma=1), radii)
    _, cx, cy, rr = skt.hough_circle_peaks(hs, radii, total_num_peaks=1)
    assert abs(x - cx[0]) <= 1.5 and abs(y - cy[0]) <= 1.5 and abs(r - rr[0]) <= 1.5


def test_hough_errors():
    with pytest.raises(ConfigError, match="threshold"):
        hough_lines(np.zeros((10, 10), np.uint8), 0)
    with pytest.raises(DataError, match="channels"):
        hough_lines(np.zeros((10, 10, 3), np.uint8), 5)
    with pytest.raises(ConfigError, match="max_radius"):
        hough_circles(np.zeros((10, 10), np.uint8), 5, min_radius=10, max_radius=5)
    with pytest.raises(DataError, match="dtype"):
        hough_circles(np.zeros((10, 10)), 5)
