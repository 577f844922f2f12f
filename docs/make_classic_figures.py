"""Draw docs/img/classic_*.png: every classic op of docs/classic.md on one example image.

    python docs/make_classic_figures.py

The example scene is drawn here (no download), so the pictures always show what the current
code does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cvcraft.classic import (  # noqa: E402
    calibration,
    canny,
    color,
    edges,
    features,
    filters,
    geometry,
    histograms,
    hog,
    hough,
    interpolation,
    lbp,
    morphology,
    noise,
    pyramids,
)

OUT = ROOT / "docs" / "img"


def scene(size: int = 192, seed: int = 0) -> np.ndarray:
    """A small RGB scene: sky gradient, sun, house, fence, text and grass texture."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    sky = np.linspace(230, 120, size // 2)[:, None, None] * np.array([0.55, 0.75, 1.0])
    img[: size // 2] = sky.astype(np.uint8)
    grass = rng.normal(0, 18, (size - size // 2, size, 1)) + np.array([70, 140, 60])
    img[size // 2 :] = np.clip(grass, 0, 255).astype(np.uint8)
    cv2.circle(img, (150, 38), 18, (250, 210, 60), -1)
    cv2.rectangle(img, (40, 80), (110, 140), (180, 90, 70), -1)
    cv2.fillPoly(img, [np.array([[32, 82], [75, 48], [118, 82]])], (120, 50, 40))
    cv2.rectangle(img, (66, 108), (84, 140), (70, 50, 40), -1)
    cv2.rectangle(img, (48, 92), (60, 104), (200, 230, 250), -1)
    for x in range(124, 190, 9):
        cv2.line(img, (x, 112), (x, 150), (235, 235, 225), 2)
    cv2.line(img, (120, 120), (192, 120), (235, 235, 225), 2)
    cv2.putText(
        img, "cvcraft", (30, 178), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (250, 250, 250), 2, cv2.LINE_AA
    )
    return img


def panel(items: list[tuple[str, np.ndarray]], name: str, cols: int | None = None) -> None:
    cols = cols or len(items)
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, im) in zip(axes.ravel(), items):
        if im.dtype == np.bool_:
            im = im.astype(np.uint8) * 255
        if im.ndim == 2 and im.dtype != np.uint8:
            a = np.abs(im.astype(np.float64))
            im = (a / max(a.max(), 1e-12) * 255).astype(np.uint8)
        ax.imshow(
            im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest"
        )
        ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / f"classic_{name}.png", dpi=72)
    plt.close(fig)


def main() -> None:
    rgb = scene()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(1)
    sp = noise.salt_pepper_noise(rgb, 0.05, rng)

    panel(
        [
            ("input", rgb),
            ("box 5", filters.box_filter(rgb, 5)),
            ("gaussian s=2", filters.gaussian_blur(rgb, 2.0)),
            ("salt & pepper", sp),
            ("median 3 of it", filters.median_blur(sp, 3)),
            ("bilateral 9", filters.bilateral_filter(rgb, 9, 60, 5)),
            ("unsharp s=2 a=1.5", filters.unsharp_mask(rgb, 2.0, 1.5)),
        ],
        "filters",
        4,
    )

    panel(
        [
            ("roberts", edges.magnitude(*edges.roberts(grey))),
            ("prewitt", edges.magnitude(*edges.prewitt(grey))),
            ("sobel gx", edges.sobel(grey)[0]),
            ("sobel |g|", edges.magnitude(*edges.sobel(grey))),
            ("scharr |g|", edges.magnitude(*edges.scharr(grey))),
            ("laplacian", edges.laplacian(grey)),
            ("LoG s=2", edges.log(grey, 2.0)),
            ("DoG 1/1.6", edges.dog(grey, 1.0, 1.6)),
        ],
        "edges",
        4,
    )

    st = canny.canny_steps(grey, 40, 120, sigma=1.4)
    direction = ((st.gradient.direction % 180) / 180 * 255).astype(np.uint8)
    weak_strong = st.strong.astype(np.uint8) * 255 + st.weak.astype(np.uint8) * 110
    panel(
        [
            ("1 smoothed s=1.4", np.clip(st.smoothed, 0, 255).astype(np.uint8)),
            ("2 |gradient|", st.gradient.magnitude),
            ("2 direction", direction),
            ("3 non-max supp.", st.nms),
            ("4 strong / weak", weak_strong),
            ("5 hysteresis", st.edges),
        ],
        "canny",
        3,
    )

    _, mask = histograms.otsu_threshold(grey)
    se = morphology.structuring_element("ellipse", 5)
    panel(
        [
            ("Otsu mask", mask),
            ("erode", morphology.erode(mask, se)),
            ("dilate", morphology.dilate(mask, se)),
            ("open", morphology.opening(mask, se)),
            ("close", morphology.closing(mask, se)),
            ("gradient", morphology.morph_gradient(grey, se)),
            ("top-hat", morphology.tophat(grey, morphology.structuring_element("rect", 15))),
            ("black-hat", morphology.blackhat(grey, morphology.structuring_element("rect", 15))),
            ("skeleton", morphology.skeleton(mask > 0, morphology.structuring_element("cross", 3))),
        ],
        "morphology",
        5,
    )

    dark = (grey.astype(np.float64) * 0.35 + 20).astype(np.uint8)
    hist_img = np.full((100, 128), 255, np.uint8)
    h = histograms.histogram(dark, 128, (0, 256))[0]
    for x, v in enumerate(h):
        cv2.line(hist_img, (x, 99), (x, 99 - int(v / h.max() * 95)), 0, 1)
    panel(
        [
            ("dark input", dark),
            ("its histogram", hist_img),
            ("equalised", histograms.equalize(dark)),
            ("CLAHE 2.0", histograms.clahe(dark, 2.0, 8)),
            ("matched to input", np.rint(histograms.match_histograms(dark, grey)).astype(np.uint8)),
            ("adaptive mean", histograms.adaptive_threshold(grey, 15, 5)),
            ("Otsu", histograms.otsu_threshold(grey)[1]),
        ],
        "histograms",
        4,
    )

    g = pyramids.gaussian_pyramid(rgb, 4)
    lap = pyramids.laplacian_pyramid(grey, 4)
    other = cv2.applyColorMap(grey[:, ::-1].copy(), cv2.COLORMAP_TWILIGHT)[..., ::-1]
    m = np.zeros(grey.shape)
    m[:, :96] = 1
    hard = np.where(m[..., None] > 0, rgb, other)
    panel(
        [
            *[(f"G{k} {x.shape[1]}px", x) for k, x in enumerate(g)],
            *[(f"L{k}", x) for k, x in enumerate(lap[:3])],
            ("hard seam", hard),
            ("pyramid blend", pyramids.blend(rgb, other, m, 5)),
        ],
        "pyramids",
        4,
    )

    e = canny.canny(filters.median_blur(grey, 5), 40, 120, sigma=1.0)
    lines_img = rgb.copy()
    for rho, theta in hough.hough_lines(e, 45)[:10]:
        c, s = np.cos(theta), np.sin(theta)
        p1 = (int(c * rho - 400 * s), int(s * rho + 400 * c))
        p2 = (int(c * rho + 400 * s), int(s * rho - 400 * c))
        cv2.line(lines_img, p1, p2, (255, 0, 0), 1)
    seg_img = rgb.copy()
    for x1, y1, x2, y2 in hough.hough_lines_p(e, 20, 15, 3):
        cv2.line(seg_img, (int(x1), int(y1)), (int(x2), int(y2)), (255, 0, 0), 2)
    circ_img = rgb.copy()
    for x, y, r in hough.hough_circles(filters.gaussian_blur(grey, 2.0), 30, 100, 20, 12, 25):
        cv2.circle(circ_img, (int(x), int(y)), int(r), (255, 0, 0), 2)
    panel(
        [
            ("canny", e),
            ("Hough lines", lines_img),
            ("probabilistic", seg_img),
            ("circles", circ_img),
        ],
        "hough",
    )

    hsv = color.rgb_to(rgb, "hsv")
    lab = color.rgb_to(rgb, "lab")
    ycc = color.rgb_to(rgb, "ycbcr")
    yuv = color.rgb_to(rgb, "yuv")
    hls = color.rgb_to(rgb, "hls")
    panel(
        [
            ("grey (BT.601)", color.rgb_to_gray(rgb)),
            ("HSV: H", (hsv[..., 0] * 255 // 179)),
            ("HSV: S", hsv[..., 1]),
            ("HLS: L", hls[..., 1]),
            ("Lab: L", lab[..., 0]),
            ("Lab: a", lab[..., 1]),
            ("YCbCr: Cb", ycc[..., 1]),
            ("YCbCr: Cr", ycc[..., 2]),
            ("YUV: V", yuv[..., 2]),
        ],
        "color",
        5,
    )

    gn = noise.gaussian_noise(rgb, 25, rng)
    panel(
        [
            ("gaussian s=25", gn),
            ("salt & pepper 5%", sp),
            ("poisson peak 20", noise.poisson_noise(rgb, 20, rng)),
            ("speckle s=0.3", noise.speckle_noise(rgb, 0.3, rng)),
            ("NL-means of gaussian", noise.nl_means(gn, 20)),
            ("bilateral of gaussian", filters.bilateral_filter(gn, 9, 60, 5)),
        ],
        "noise",
        3,
    )

    crop = rgb[30:54, 130:170]
    panel(
        [
            (k, interpolation.resize(crop, (96, 160), k))
            for k in ("nearest", "bilinear", "bicubic", "lanczos")
        ]
        + [
            ("area 1/4", interpolation.resize(rgb, (48, 48), "area")),
            ("nearest 1/4", interpolation.resize(rgb, (48, 48), "nearest")),
        ],
        "interpolation",
        3,
    )

    hmat = np.array([[0.9, 0.12, 12.0], [-0.08, 0.95, 20.0], [4e-4, -2e-4, 1.0]])
    moving = geometry.warp(rgb, hmat)
    ka, da = features.orb(cv2.resize(moving, (384, 384)), 400)
    kb, db = features.orb(cv2.resize(rgb, (384, 384)), 400)
    mt = features.match_descriptors(da, db, 0.8)
    big_a, big_b = cv2.resize(moving, (384, 384)), cv2.resize(rgb, (384, 384))
    matches_img = features.draw_matches(big_a, ka, big_b, kb, mt[:40])
    t, _ = features.register_features(moving, rgb, "homography", "sift")
    back = geometry.warp(moving, t)
    panel(
        [
            ("warped (homography)", moving),
            ("ORB ratio-test matches", matches_img),
            ("SIFT+RANSAC registered", back),
            ("|registered - input|", np.abs(back.astype(int) - rgb).mean(2)),
        ],
        "geometry",
    )

    codes = lbp.local_binary_pattern(grey, 8, 1, "uniform")
    hr = features.harris(grey, 2, 3, 0.04)
    panel(
        [
            ("Harris response", np.maximum(hr, 0) ** 0.5),
            ("SIFT keypoints", features.draw_keypoints(rgb, features.sift(rgb)[0])),
            ("ORB keypoints", features.draw_keypoints(big_b, features.orb(big_b, 150)[0])),
            ("LBP uniform codes", (codes / 9 * 255).astype(np.uint8)),
            ("HOG cells (8 px, 9 bins)", hog.hog_image(grey, 9, 8) ** 0.5),
        ],
        "features",
    )

    cam = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    board = calibration.render_checkerboard(
        cam, [0.3, -0.35, 0.1], [-90, -60, 420], "9x6", 25, (240, 320)
    )
    corners = calibration.find_checkerboard(board, "9x6")
    drawn = cv2.cvtColor(board, cv2.COLOR_GRAY2RGB)
    cv2.drawChessboardCorners(drawn, (9, 6), corners.reshape(-1, 1, 2), True)
    panel([("rendered view", board), ("detected corners", drawn)], "calibration")
    print("wrote", sorted(p.name for p in OUT.glob("classic_*.png")))


if __name__ == "__main__":
    main()
