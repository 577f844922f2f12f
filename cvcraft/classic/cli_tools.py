"""Runners for the ``cvcraft imgproc OP ...`` and ``cvcraft calibrate ...`` commands.

``run_imgproc(args)`` reads ``src``, applies the op named by ``args["op"]`` with the given
key=value parameters and writes PNGs (one per output, e.g. every Canny step with
``steps=true``). ``run_calibrate(args)`` calibrates a camera from a folder of checkerboard
photos and writes the result as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvcraft.classic import (
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
    selective_search,
)
from cvcraft.errors import ConfigError, DataError
from cvcraft.registry import did_you_mean

IMGPROC_KEYS: dict[str, str] = {
    "op": "the operation (positional): see `cvcraft imgproc help`; e.g. canny, gaussian, clahe",
    "src": "input image file",
    "out": "output PNG (default <src stem>_<op>.png); multi-output ops add _<name>",
    "ksize": "kernel / window size (odd)",
    "sigma": "Gaussian sigma (gaussian, unsharp, log, dog low, canny smoothing, noise)",
    "sigma2": "second sigma (dog high)",
    "low": "low threshold (canny)",
    "high": "high threshold (canny)",
    "steps": "true: write every Canny step (smoothed, magnitude, direction, nms, strong, weak, "
    "edges)",
    "l2": "true: L2 gradient magnitude in Canny",
    "d": "bilateral diameter",
    "sigma_color": "bilateral range sigma",
    "sigma_space": "bilateral spatial sigma",
    "amount": "unsharp amount / salt-and-pepper fraction",
    "shape": "structuring element: rect | ellipse | cross",
    "iterations": "erode/dilate iterations",
    "clip": "CLAHE clip limit",
    "tiles": "CLAHE tile grid",
    "block": "adaptive threshold block size (odd)",
    "offset": "adaptive threshold offset C",
    "method": "adaptive: mean | gaussian; lbp: default | ror | uniform; register: ecc | "
    "ecc_gradient | sift | orb",
    "ref": "reference image (match; the fixed image of register)",
    "levels": "pyramid levels",
    "threshold": "Hough votes",
    "min_length": "HoughP minimum segment length",
    "max_gap": "HoughP maximum gap",
    "min_dist": "Hough circles minimum centre distance",
    "min_radius": "Hough circles minimum radius",
    "max_radius": "Hough circles maximum radius",
    "space": "colour space: gray | hsv | hls | lab | ycbcr | yuv",
    "kind": "noise: gaussian | salt_pepper | poisson | speckle; resize: nearest | bilinear | "
    "bicubic | area | lanczos; register: translation | rigid | similarity | affine | homography",
    "size": "resize target HxW, e.g. 240x320",
    "h": "non-local means strength",
    "points": "LBP neighbours",
    "radius": "LBP radius",
    "max_features": "SIFT/ORB keypoint cap",
    "cell": "HOG cell size in pixels",
    "orientations": "HOG orientation bins",
    "seed": "noise seed (default 0)",
}

CALIBRATE_KEYS: dict[str, str] = {
    "images": "folder of checkerboard photos (png/jpg/bmp/tif) from one camera",
    "pattern": "inner corners per row x per column, e.g. 9x6",
    "square": "square side in your unit (e.g. 25 for 25 mm); sets the unit of translations",
    "out": "output JSON (default calibration.json)",
}


def _read(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such image file")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{p}: cannot decode this file as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_display(x: np.ndarray) -> np.ndarray:
    """An op's output as a uint8 image to save: bool -> 0/255, float -> |x| scaled to 0..255
    (images already in [0, 1] are scaled by 255)."""
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if x.dtype == np.uint8:
        return x
    f = x.astype(np.float64)
    if f.min() >= 0 and f.max() <= 1:
        return np.rint(f * 255).astype(np.uint8)
    a = np.abs(f)
    m = a.max()
    return np.rint(a / m * 255).astype(np.uint8) if m > 0 else np.zeros(a.shape, np.uint8)


class _Args:
    """Typed access to the key=value strings with defaults and errors naming the key."""

    def __init__(self, args: dict[str, Any]):
        self.a = args

    def _get(self, key: str, default: Any, cast: Callable[[str], Any]) -> Any:
        if key not in self.a or self.a[key] in (None, ""):
            if default is None:
                raise ConfigError(f"imgproc {self.a.get('op')} needs {key}=")
            return default
        try:
            return cast(self.a[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={self.a[key]!r} is not a valid {cast.__name__}") from None

    def f(self, key: str, default: float | None = None) -> float:
        return self._get(key, default, float)

    def i(self, key: str, default: int | None = None) -> int:
        return self._get(key, default, int)

    def s(self, key: str, default: str | None = None) -> str:
        return self._get(key, default, str)

    def b(self, key: str, default: bool = False) -> bool:
        return str(self.a.get(key, default)).lower() in ("1", "true", "yes", "on")


def _canny(img, a):
    st = canny.canny_steps(
        img, a.f("low", 50), a.f("high", 150), a.f("sigma", 0.0), a.i("ksize", 3), a.b("l2")
    )
    out = {"edges": st.edges}
    if a.b("steps"):
        direction = ((st.gradient.direction % 180) / 180 * 255).astype(np.uint8)
        out = {
            "1_smoothed": np.clip(st.smoothed, 0, 255).astype(np.uint8),
            "2_magnitude": st.gradient.magnitude,
            "3_direction": direction,
            "4_nms": st.nms,
            "5_strong": st.strong,
            "5_weak": st.weak,
            "6_edges": st.edges,
        }
    return out


def _first_order(g):
    return {"gx": g[0], "gy": g[1], "magnitude": edges.magnitude(*g)}


def _se(a):
    return morphology.structuring_element(a.s("shape", "rect"), a.i("ksize", 3))


def _grey(img):
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _draw_lines(img, lines):
    out = img.copy()
    h, w = img.shape[:2]
    for rho, theta in lines[:50]:
        c, s = np.cos(theta), np.sin(theta)
        x0, y0, L = c * rho, s * rho, 2 * (h + w)
        p1 = (int(x0 - L * s), int(y0 + L * c))
        p2 = (int(x0 + L * s), int(y0 - L * c))
        cv2.line(out, p1, p2, (255, 0, 0), 1, cv2.LINE_AA)
    return out


def _noise(img, a):
    rng = np.random.default_rng(a.i("seed", 0))
    kind = a.s("kind", "gaussian")
    if kind == "gaussian":
        return noise.gaussian_noise(img, a.f("sigma", 15), rng)
    if kind == "salt_pepper":
        return noise.salt_pepper_noise(img, a.f("amount", 0.05), rng)
    if kind == "poisson":
        return noise.poisson_noise(img, a.f("amount", 30), rng)
    if kind == "speckle":
        return noise.speckle_noise(img, a.f("sigma", 0.2), rng)
    raise ConfigError(f"kind={kind!r}: use gaussian, salt_pepper, poisson or speckle")


def _size(a):
    try:
        h, w = (int(v) for v in a.s("size").lower().split("x"))
    except ValueError:
        raise ConfigError(f"size={a.s('size')!r} must look like 240x320 (HxW)") from None
    return h, w


def _boxes(img, boxes):
    out = img.copy()
    for x1, y1, x2, y2 in boxes[:100].astype(int):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 1)
    return out


# op -> (one-line help, fn(image RGB uint8, args) -> {name: image})
OPS: dict[str, tuple[str, Callable[[np.ndarray, _Args], dict[str, np.ndarray]]]] = {
    "box": ("mean filter (ksize)", lambda im, a: {"": filters.box_filter(im, a.i("ksize", 5))}),
    "gaussian": (
        "Gaussian blur (sigma[, ksize])",
        lambda im, a: {"": filters.gaussian_blur(im, a.f("sigma", 2.0), a.i("ksize", 0) or None)},
    ),
    "median": (
        "median filter (ksize)",
        lambda im, a: {"": filters.median_blur(im, a.i("ksize", 5))},
    ),
    "bilateral": (
        "bilateral filter (d, sigma_color, sigma_space)",
        lambda im, a: {
            "": filters.bilateral_filter(
                im, a.i("d", 9), a.f("sigma_color", 50), a.f("sigma_space", 5)
            )
        },
    ),
    "unsharp": (
        "unsharp mask (sigma, amount)",
        lambda im, a: {"": filters.unsharp_mask(im, a.f("sigma", 2.0), a.f("amount", 1.0))},
    ),
    "sobel": (
        "Sobel gx, gy, magnitude (ksize)",
        lambda im, a: _first_order(edges.sobel(im, a.i("ksize", 3))),
    ),
    "scharr": ("Scharr gx, gy, magnitude", lambda im, a: _first_order(edges.scharr(im))),
    "prewitt": ("Prewitt gx, gy, magnitude", lambda im, a: _first_order(edges.prewitt(im))),
    "roberts": ("Roberts cross magnitude", lambda im, a: {"": edges.magnitude(*edges.roberts(im))}),
    "laplacian": ("Laplacian (ksize)", lambda im, a: {"": edges.laplacian(im, a.i("ksize", 1))}),
    "log": ("Laplacian of Gaussian (sigma)", lambda im, a: {"": edges.log(im, a.f("sigma", 2.0))}),
    "dog": (
        "difference of Gaussians (sigma, sigma2)",
        lambda im, a: {"": edges.dog(im, a.f("sigma", 1.0), a.f("sigma2", 1.6))},
    ),
    "canny": ("Canny edges (low, high, sigma, ksize=aperture, l2, steps=true)", _canny),
    "erode": (
        "erosion (shape, ksize, iterations)",
        lambda im, a: {"": morphology.erode(im, _se(a), a.i("iterations", 1))},
    ),
    "dilate": (
        "dilation (shape, ksize, iterations)",
        lambda im, a: {"": morphology.dilate(im, _se(a), a.i("iterations", 1))},
    ),
    "open": ("opening (shape, ksize)", lambda im, a: {"": morphology.opening(im, _se(a))}),
    "close": ("closing (shape, ksize)", lambda im, a: {"": morphology.closing(im, _se(a))}),
    "gradient": (
        "morphological gradient",
        lambda im, a: {"": morphology.morph_gradient(im, _se(a))},
    ),
    "tophat": ("white top-hat", lambda im, a: {"": morphology.tophat(im, _se(a))}),
    "blackhat": ("black-hat", lambda im, a: {"": morphology.blackhat(im, _se(a))}),
    "skeleton": (
        "morphological skeleton of the Otsu mask",
        lambda im, a: {
            "": morphology.skeleton(histograms.otsu_threshold(_grey(im))[1] > 0, _se(a))
        },
    ),
    "equalize": ("histogram equalisation", lambda im, a: {"": histograms.equalize(im)}),
    "clahe": (
        "CLAHE (clip, tiles)",
        lambda im, a: {"": histograms.clahe(im, a.f("clip", 2.0), a.i("tiles", 8))},
    ),
    "match": (
        "histogram matching to ref=",
        lambda im, a: {"": histograms.match_histograms(im, _read(a.s("ref")))},
    ),
    "otsu": ("Otsu threshold", lambda im, a: {"": histograms.otsu_threshold(_grey(im))[1]}),
    "adaptive": (
        "adaptive threshold (block, offset, method)",
        lambda im, a: {
            "": histograms.adaptive_threshold(
                _grey(im), a.i("block", 11), a.f("offset", 2), a.s("method", "mean")
            )
        },
    ),
    "pyramid": (
        "Gaussian + Laplacian pyramid levels (levels)",
        lambda im, a: {
            **{f"g{k}": g for k, g in enumerate(pyramids.gaussian_pyramid(im, a.i("levels", 4)))},
            **{
                f"l{k}": lap
                for k, lap in enumerate(pyramids.laplacian_pyramid(im, a.i("levels", 4)))
            },
        },
    ),
    "hough_lines": (
        "Hough lines on Canny edges (threshold, low, high)",
        lambda im, a: {
            "": _draw_lines(
                im,
                hough.hough_lines(
                    canny.canny(im, a.f("low", 50), a.f("high", 150)), a.i("threshold", 100)
                ),
            )
        },
    ),
    "hough_circles": (
        "Hough circles (min_dist, high, threshold, min/max_radius)",
        lambda im, a: {
            "": _draw_circles(
                im,
                hough.hough_circles(
                    _grey(im),
                    a.f("min_dist", 20),
                    a.f("high", 100),
                    a.f("threshold", 30),
                    a.i("min_radius", 0),
                    a.i("max_radius", 0),
                ),
            )
        },
    ),
    "color": (
        "convert to space= (channels written separately)",
        lambda im, a: _channels(color.rgb_to(im, a.s("space", "hsv"))),
    ),
    "noise": ("add noise (kind, sigma, amount, seed)", lambda im, a: {"": _noise(im, a)}),
    "denoise": ("non-local means (h)", lambda im, a: {"": noise.nl_means(im, a.f("h", 10))}),
    "resize": (
        "resize (size=HxW, kind)",
        lambda im, a: {"": interpolation.resize(im, _size(a), a.s("kind", "bilinear"))},
    ),
    "harris": ("Harris response", lambda im, a: {"": np.maximum(features.harris(im), 0)}),
    "sift": (
        "SIFT keypoints drawn",
        lambda im, a: {
            "": features.draw_keypoints(im, features.sift(im, a.i("max_features", 0))[0])
        },
    ),
    "orb": (
        "ORB keypoints drawn",
        lambda im, a: {
            "": features.draw_keypoints(im, features.orb(im, a.i("max_features", 500))[0])
        },
    ),
    "lbp": ("LBP codes (points, radius, method)", lambda im, a: {"": _lbp(im, a)}),
    "hog": (
        "HOG picture of the grey image (orientations, cell)",
        lambda im, a: {"": hog.hog_image(_grey(im), a.i("orientations", 9), a.i("cell", 8))},
    ),
    "register": (
        "align src onto ref= (method=ecc|ecc_gradient|sift|orb, kind=affine|...)",
        lambda im, a: _register(im, a),
    ),
    "selective_search": (
        "selective search proposals (first 100 drawn)",
        lambda im, a: {"": _boxes(im, selective_search.selective_search(im))},
    ),
}


def _register(im, a):
    fixed = _read(a.s("ref"))
    if fixed.shape[:2] != im.shape[:2]:
        im = interpolation.resize(im, fixed.shape[:2], "area")
    method = a.s("method", "ecc")
    kind = a.s("kind", "affine")
    if method in ("ecc", "ecc_gradient"):
        motion = {"rigid": "euclidean"}.get(kind, kind)
        on = "gradient" if method == "ecc_gradient" else "intensity"
        t, _ = geometry.register_ecc(im, fixed, motion, on=on)
    elif method in ("sift", "orb"):
        t, _ = features.register_features(im, fixed, kind, method)
    else:
        raise ConfigError(f"method={method!r}: use ecc, ecc_gradient, sift or orb")
    out = geometry.warp(im, t, fixed.shape[:2])
    overlay = ((out.astype(np.uint16) + fixed) // 2).astype(np.uint8)
    return {"registered": out, "overlay": overlay}


def _draw_circles(img, circles):
    out = img.copy()
    for x, y, r in circles[:50]:
        cv2.circle(out, (int(round(x)), int(round(y))), int(round(r)), (255, 0, 0), 2)
    return out


def _channels(x):
    return {"": x} if x.ndim == 2 else {f"c{k}": x[..., k] for k in range(x.shape[2])}


def _lbp(im, a):
    method = a.s("method", "uniform")
    p = a.i("points", 8)
    codes = lbp.local_binary_pattern(_grey(im), p, a.f("radius", 1.0), method)
    top = p + 1 if method == "uniform" else (1 << p) - 1
    return np.rint(codes / top * 255).astype(np.uint8)


def run_imgproc(args: dict[str, Any]) -> dict[str, Any]:
    """Apply ``args["op"]`` to ``args["src"]`` and write the result(s) as PNG.
    -> {"op", "outputs": [paths]}"""
    op = args.get("op")
    if op in (None, "", "help", "list"):
        print("cvcraft imgproc OP src=IMAGE [out=OUT.png] [key=value ...]\n\nops:")
        for name, (doc, _) in OPS.items():
            print(f"  {name:<17} {doc}")
        return {"op": None, "outputs": []}
    if op not in OPS:
        raise ConfigError(
            f"unknown imgproc op {op!r}.{did_you_mean(op, OPS)} Ops: {', '.join(OPS)}"
        )
    if not args.get("src"):
        raise ConfigError("imgproc needs src=IMAGE")
    img = _read(args["src"])
    results = OPS[op][1](img, _Args(args))
    src = Path(args["src"])
    out = Path(args.get("out") or f"{src.stem}_{op}.png")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for name, im in results.items():
        path = (
            out
            if (name == "" or len(results) == 1)
            else out.with_name(f"{out.stem}_{name}{out.suffix}")
        )
        disp = to_display(im)
        if disp.ndim == 3 and disp.shape[2] == 3:
            disp = cv2.cvtColor(disp, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), disp):
            raise DataError(f"cannot write {path}")
        written.append(str(path))
    for p in written:
        print(p)
    return {"op": op, "outputs": written}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def run_calibrate(args: dict[str, Any]) -> dict[str, Any]:
    """Calibrate from every image in ``images=DIR``; write JSON to ``out``. -> the result."""
    folder = Path(args.get("images") or "")
    if not folder.is_dir():
        raise DataError(f"images={folder} is not a folder of checkerboard photos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} has no {'/'.join(IMAGE_SUFFIXES)} images")
    pattern = args.get("pattern") or "9x6"
    try:
        square = float(args.get("square") or 1.0)
    except ValueError:
        raise ConfigError(f"square={args.get('square')!r} must be a number") from None
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files]
    bad = [str(p) for p, im in zip(files, imgs) if im is None]
    if bad:
        raise DataError(f"cannot decode {', '.join(bad)}")
    res = calibration.calibrate(imgs, pattern, square, names=[p.name for p in files])
    report = {
        "camera_matrix": res["camera_matrix"].tolist(),
        "dist_coeffs": res["dist_coeffs"].tolist(),
        "rms_reprojection_px": res["rms"],
        "per_view_rms_px": dict(zip(res["used"], res["per_view_rms"])),
        "image_size_hw": list(res["image_size"]),
        "pattern": str(pattern),
        "square": square,
        "used": res["used"],
        "skipped": res["skipped"],
    }
    out = Path(args.get("out") or "calibration.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    k = res["camera_matrix"]
    print(
        f"fx={k[0, 0]:.2f} fy={k[1, 1]:.2f} cx={k[0, 2]:.2f} cy={k[1, 2]:.2f} "
        f"rms={res['rms']:.3f}px from {len(res['used'])} views "
        f"(skipped {len(res['skipped'])}: pattern not found) -> {out}"
    )
    return report
