"""Geometric ops: resize, crops, flips, affine. Each draws its window/matrix once per call and
routes every target through the same kernels (see ``GeometricTransform``).

Sizes are ``(height, width)``; an int means a square. Registered names: ``resize``,
``center_crop``, ``random_resized_crop``, ``pad_random_crop``, ``hflip``, ``vflip``,
``affine``, ``random_affine``, ``random_perspective``, ``random_rotation``,
``random_crop_keep_boxes``, ``pad_to_size`` (letterboxing lives in ``letterbox.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.base import TRANSFORMS, GeometricTransform, Params

Size = int | Sequence[int]


def _pair(size: Size, name: str) -> tuple[int, int]:
    """int -> (s, s); (h, w) -> (h, w); rejects non-positive sizes."""
    hw = (int(size), int(size)) if np.isscalar(size) else tuple(int(v) for v in size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ConfigError(f"{name}: size must be a positive int or (height, width), got {size}")
    return hw  # type: ignore[return-value]


def _symmetric(v: float | Sequence[float], name: str) -> tuple[float, float]:
    """x -> (-x, x); (a, b) -> (a, b). Used for degrees and shear ranges."""
    if np.isscalar(v):
        if v < 0:
            raise ConfigError(f"{name}: a single value must be >= 0, got {v}")
        return -float(v), float(v)
    lo, hi = (float(x) for x in v)
    if lo > hi:
        raise ConfigError(f"{name}: range ({lo}, {hi}) has min > max")
    return lo, hi


@TRANSFORMS.register("resize")
class Resize(GeometricTransform):
    """Resize to ``size``.

    - ``keep_ratio=False``: int -> (s, s), (h, w) -> exactly (h, w).
    - ``keep_ratio=True``: int -> the shorter side becomes s (torchvision ``Resize(int)``), or
      the longer side with ``side="long"`` (albumentations ``LongestMaxSize``);
      (h, w) -> the largest size with the same aspect ratio that fits inside (h, w).
    ``interpolation="auto"`` = area when shrinking, bilinear when enlarging.
    """

    def __init__(
        self,
        size: Size,
        keep_ratio: bool = False,
        interpolation: str = "auto",
        side: str = "short",
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        self.size = size
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation
        if side not in ("short", "long"):
            raise ConfigError(f"Resize: side must be 'short' or 'long', got {side!r}")
        self.side = side
        _pair(size, "Resize")  # validate early

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an image of (height, width) is resized to."""
        if not self.keep_ratio:
            return _pair(self.size, "Resize")
        if np.isscalar(self.size):
            s = int(self.size)
            if (height <= width) == (self.side == "short"):
                return s, max(1, round(width * s / height))
            return max(1, round(height * s / width)), s
        th, tw = _pair(self.size, "Resize")
        r = min(th / height, tw / width)
        return max(1, round(height * r)), max(1, round(width * r))

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        return {"size": self.output_size(sample.height, sample.width)}

    def raster(self, x, params, *, interpolation, fill):
        return F.resize_image(x, params["size"], interpolation)

    def points(self, xy, params, in_size):
        return F.resize_points(xy, in_size, params["size"])


class _Window(GeometricTransform):
    """Shared by ops that cut a (top, left, height, width) window, optionally resizing it."""

    def raster(self, x, params, *, interpolation, fill):
        crop_fill = 0 if isinstance(fill, str) else fill
        resizing = "size" in params
        out = F.crop_image(
            x,
            params["top"],
            params["left"],
            params["height"],
            params["width"],
            crop_fill,
            copy=not resizing,  # the resize below makes the copy
        )
        if resizing:
            out = F.resize_image(out, params["size"], interpolation)
            if np.may_share_memory(out, x):  # resize was a no-op on the view
                out = out.copy()
        return out

    def points(self, xy, params, in_size):
        xy = F.crop_points(xy, params["top"], params["left"])
        if "size" in params:
            xy = F.resize_points(xy, (params["height"], params["width"]), params["size"])
        return xy


@TRANSFORMS.register("center_crop")
class CenterCrop(_Window):
    """Cut the central ``size`` window; an image smaller than it is padded with ``fill``.

    top = (H - h) // 2, left = (W - w) // 2 (negative = padding, split evenly).
    """

    def __init__(self, size: Size, fill: F.Fill = 0, p: float = 1.0, **box_filter: float):
        super().__init__(p, **box_filter)
        self.size = _pair(size, "CenterCrop")
        self.fill = fill

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = self.size
        return {
            "top": (sample.height - h) // 2,
            "left": (sample.width - w) // 2,
            "height": h,
            "width": w,
        }


def sample_rrc_window(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """The Inception-style random crop window -> (top, left, h, w).

    Up to ``attempts`` times: area fraction ~ U(scale), log aspect ratio (w/h) ~ U(log ratio);
    w = round(sqrt(A * r)), h = round(sqrt(A / r)); accept if it fits, at a uniform position.
    If nothing fits, fall back to the largest centred crop whose ratio is clamped to ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:  # too tall: keep the width, cut the height
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:  # too wide: keep the height, cut the width
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@TRANSFORMS.register("random_resized_crop")
class RandomResizedCrop(_Window):
    """Crop a random window (area fraction in ``scale``, aspect in ``ratio``), resize to ``size``.

    The standard ImageNet training augmentation (Szegedy et al. 2015); window sampling is
    ``sample_rrc_window`` (10 attempts, then a centred fallback).
    """

    def __init__(
        self,
        size: Size,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str = "auto",
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        self.size = _pair(size, "RandomResizedCrop")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(
                f"RandomResizedCrop: need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= "
                f"ratio[1], got scale={scale}, ratio={ratio}"
            )
        self.interpolation = interpolation

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        top, left, h, w = sample_rrc_window(
            sample.height, sample.width, self.scale, self.ratio, rng
        )
        return {"top": top, "left": left, "height": h, "width": w, "size": self.size}


@TRANSFORMS.register("pad_random_crop")
class PadRandomCrop(_Window):
    """Pad ``padding`` px on every side, then crop a random ``size`` window (CIFAR-style).

    ``fill`` is a pixel value or ``"reflect"`` (mirror padding for the image; masks are
    always padded with 0 and the semantic mask with 255, since mirrored pixels are not
    labelled objects).
    """

    def __init__(
        self,
        size: Size,
        padding: int = 4,
        fill: F.Fill | str = 0,
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        self.size = _pair(size, "PadRandomCrop")
        if padding < 0:
            raise ConfigError(f"PadRandomCrop: padding must be >= 0, got {padding}")
        if isinstance(fill, str) and fill != "reflect":
            raise ConfigError(f"PadRandomCrop: fill must be a number or 'reflect', got {fill!r}")
        self.padding = int(padding)
        self.fill = fill

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = self.size
        ph, pw = sample.height + 2 * self.padding, sample.width + 2 * self.padding
        # a padded image still smaller than the crop is centred (crop_image pads the rest)
        top = int(rng.integers(0, ph - h + 1)) if ph >= h else (ph - h) // 2
        left = int(rng.integers(0, pw - w + 1)) if pw >= w else (pw - w) // 2
        pad = (self.padding,) * 4
        return {"pad": pad, "top": top, "left": left, "height": h, "width": w}

    def raster(self, x, params, *, interpolation, fill):
        mode = "reflect" if fill == "reflect" else "constant"
        padded = F.pad_image(x, params["pad"], 0 if mode == "reflect" else fill, mode)
        return super().raster(padded, params, interpolation=interpolation, fill=fill)

    def points(self, xy, params, in_size):
        t, _, l, _ = params["pad"]
        return super().points(F.pad_points(xy, t, l), params, in_size)


@TRANSFORMS.register("hflip")
class HorizontalFlip(GeometricTransform):
    """Mirror left-right with probability ``p``: x' = W - x.

    ``keypoint_flip_index`` re-orders keypoints so left/right named points swap (pose data).
    """

    can_drop_boxes = False

    def __init__(self, p: float = 0.5, keypoint_flip_index: Sequence[int] | None = None):
        super().__init__(p)
        self.keypoint_flip_index = keypoint_flip_index

    def raster(self, x, params, *, interpolation, fill):
        return F.hflip_image(x)

    def points(self, xy, params, in_size):
        return F.hflip_points(xy, in_size[1])

    def keypoint_order(self, params):
        return self.keypoint_flip_index


@TRANSFORMS.register("vflip")
class VerticalFlip(GeometricTransform):
    """Mirror top-bottom with probability ``p``: y' = H - y."""

    can_drop_boxes = False

    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def raster(self, x, params, *, interpolation, fill):
        return F.vflip_image(x)

    def points(self, xy, params, in_size):
        return F.vflip_points(xy, in_size[0])


@TRANSFORMS.register("affine")
class Affine(GeometricTransform):
    """A fixed (non-random) affine warp: rotate ``angle`` degrees (counter-clockwise), scale,
    shear ``(sx, sy)`` degrees about ``center`` (pixel indices; None = the image centre), then
    translate ``(dx, dy)`` pixels. The building block of the AutoAugment-family ops.
    """

    def __init__(
        self,
        angle: float = 0.0,
        translate: Sequence[float] = (0.0, 0.0),
        scale: float = 1.0,
        shear: Sequence[float] = (0.0, 0.0),
        center: Sequence[float] | None = None,
        fill: F.Fill = 0,
        interpolation: str = "linear",
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        if scale <= 0:
            raise ConfigError(f"Affine: scale must be > 0, got {scale}")
        self.angle, self.scale = float(angle), float(scale)
        self.translate = (float(translate[0]), float(translate[1]))
        self.shear = (float(shear[0]), float(shear[1]))
        self.center = None if center is None else (float(center[0]), float(center[1]))
        self.fill, self.interpolation = fill, interpolation

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        c = self.center or ((sample.width - 1) / 2, (sample.height - 1) / 2)
        m = F.affine_matrix(self.angle, self.translate, self.scale, self.shear, c)
        return {"matrix": m, "size": (sample.height, sample.width)}

    def raster(self, x, params, *, interpolation, fill):
        return F.warp_image(x, params["matrix"], params["size"], interpolation, fill)

    def points(self, xy, params, in_size):
        return F.perspective_points(xy, params["matrix"])


@TRANSFORMS.register("random_affine")
class RandomAffine(Affine):
    """Random rotation, translation, scale, shear (and perspective) as ONE warp.

    - ``degrees``: x -> angle ~ U(-x, x) (counter-clockwise positive), or a (min, max) range.
    - ``translate``: fraction of the output size, x or (tx, ty) -> dx ~ U(-tx W, tx W), ...
    - ``scale``: x -> U(1 - x, 1 + x) (YOLO style), or a (min, max) range (torchvision).
    - ``shear``: x -> x-shear ~ U(-x, x); (a, b) -> x-shear range; (a, b, c, d) -> x and y.
    - ``perspective``: x -> the homography's last row (px, py) ~ U(-x, x) each (YOLO's
      ``perspective``, in 1/pixels; ~0.0005 is already strong).
    - ``out_size``: (h, w) or int of the output; None keeps the input size. The input centre
      lands on the output centre, so a YOLO 2s x 2s mosaic canvas warps down to s x s here
      (ultralytics' ``border=-s/2``).
    H = T(out centre + t) . R . S . Sh . P . T(-in centre): composed first, resampled once
    (cv2.warpAffine, or cv2.warpPerspective when perspective is on). Uncovered pixels get
    ``fill``.
    """

    def __init__(
        self,
        degrees: float | Sequence[float] = 0.0,
        translate: float | Sequence[float] = 0.0,
        scale: float | Sequence[float] = 0.0,
        shear: float | Sequence[float] = 0.0,
        fill: F.Fill = 0,
        interpolation: str = "linear",
        perspective: float = 0.0,
        out_size: Size | None = None,
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        GeometricTransform.__init__(self, p, **box_filter)
        self.degrees = _symmetric(degrees, "RandomAffine.degrees")
        t = (float(translate),) * 2 if np.isscalar(translate) else tuple(map(float, translate))
        if len(t) != 2 or not all(0 <= v <= 1 for v in t):
            raise ConfigError(f"RandomAffine.translate must be in [0, 1], got {translate}")
        self.translate = t
        if np.isscalar(scale):
            if not 0 <= scale < 1:
                raise ConfigError(
                    f"RandomAffine.scale as one number must be in [0, 1), got {scale}"
                )
            self.scale = (1.0 - float(scale), 1.0 + float(scale))
        else:
            self.scale = (float(scale[0]), float(scale[1]))
            if not 0 < self.scale[0] <= self.scale[1]:
                raise ConfigError(f"RandomAffine.scale range must be 0 < min <= max, got {scale}")
        sh = [shear] if np.isscalar(shear) else list(shear)
        if len(sh) not in (1, 2, 4):
            raise ConfigError(f"RandomAffine.shear takes 1, 2 or 4 numbers, got {shear}")
        self.shear_x = _symmetric(sh[0] if len(sh) == 1 else sh[:2], "RandomAffine.shear")
        self.shear_y = _symmetric(sh[2:4], "RandomAffine.shear") if len(sh) == 4 else (0.0, 0.0)
        if perspective < 0:
            raise ConfigError(f"RandomAffine.perspective must be >= 0, got {perspective}")
        self.perspective = float(perspective)
        self.out_size = None if out_size is None else _pair(out_size, "RandomAffine.out_size")
        self.fill = fill
        self.interpolation = interpolation

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = sample.height, sample.width
        oh, ow = self.out_size or (h, w)
        angle = float(rng.uniform(*self.degrees))
        dx = float(rng.uniform(-self.translate[0], self.translate[0]) * ow)
        dy = float(rng.uniform(-self.translate[1], self.translate[1]) * oh)
        s = float(rng.uniform(*self.scale))
        shear = (float(rng.uniform(*self.shear_x)), float(rng.uniform(*self.shear_y)))
        c_in = ((w - 1) / 2, (h - 1) / 2)
        # translate the input centre onto the output centre, then by (dx, dy)
        shift = (dx + (ow - 1) / 2 - c_in[0], dy + (oh - 1) / 2 - c_in[1])
        matrix = F.affine_matrix(angle, shift, s, shear, c_in)
        params = {"angle": angle, "translate": (dx, dy), "scale": s, "shear": shear}
        if self.perspective > 0:
            px, py = (float(v) for v in rng.uniform(-self.perspective, self.perspective, 2))
            centre = np.array([[1.0, 0, -c_in[0]], [0, 1.0, -c_in[1]], [0, 0, 1.0]])
            persp = np.array([[1.0, 0, 0], [0, 1.0, 0], [px, py, 1.0]])
            uncentre = np.linalg.inv(centre)
            # P acts on centred coordinates: H = A . C^-1 . P . C (A already holds its centring)
            matrix = F.to_homogeneous(matrix) @ uncentre @ persp @ centre
            params["perspective"] = (px, py)
        params.update(matrix=matrix, size=(oh, ow))
        return params


@TRANSFORMS.register("random_perspective")
class RandomPerspective(Affine):
    """Move each image corner inward by a random amount and warp with the homography.

    Corner offsets ~ U{0..int(d * half size)} per axis (torchvision's ``RandomPerspective``
    sampling with ``distortion_scale=d``); H = cv2.getPerspectiveTransform(corners, moved),
    one warpPerspective; boxes follow their four corners (exact: lines stay lines).
    """

    def __init__(
        self,
        distortion_scale: float = 0.5,
        fill: F.Fill = 0,
        interpolation: str = "linear",
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        GeometricTransform.__init__(self, p, **box_filter)
        if not 0 <= distortion_scale <= 1:
            raise ConfigError(
                f"RandomPerspective: distortion_scale must be in [0, 1], got {distortion_scale}"
            )
        self.distortion_scale = float(distortion_scale)
        self.fill, self.interpolation = fill, interpolation

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = sample.height, sample.width
        bw = int(self.distortion_scale * (w // 2)) + 1
        bh = int(self.distortion_scale * (h // 2)) + 1
        ox = rng.integers(0, bw, 4)  # inward x offset of tl, tr, br, bl
        oy = rng.integers(0, bh, 4)
        start = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        sign = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
        end = start + sign * np.stack([ox, oy], 1).astype(np.float32)
        matrix = cv2.getPerspectiveTransform(start, end)
        return {"corners": end, "matrix": matrix, "size": (h, w)}


@TRANSFORMS.register("random_crop_keep_boxes")
class RandomCropKeepBoxes(_Window):
    """A random crop that keeps every box whole (``keep="all"``) or one random box (``"one"``).

    Without ``size``: each side of the window is drawn between the image border and the
    kept region (albumentations' ``BBoxSafeRandomCrop``), so the crop size varies. With
    ``size=(h, w)``: a window of that size, uniform among positions containing the region;
    if the region is larger than the window it is centred on the region (boxes clipped), and
    an image smaller than the window is padded with ``fill``. Without boxes the kept region
    is one random pixel, i.e. an unconstrained random crop.
    """

    def __init__(
        self,
        size: Size | None = None,
        keep: str = "all",
        fill: F.Fill = 0,
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        if keep not in ("all", "one"):
            raise ConfigError(f"RandomCropKeepBoxes: keep must be 'all' or 'one', got {keep!r}")
        self.size = None if size is None else _pair(size, "RandomCropKeepBoxes")
        self.keep, self.fill = keep, fill

    def _region(self, sample: Sample, rng: np.random.Generator) -> tuple[int, int, int, int]:
        h, w = sample.height, sample.width
        boxes = sample.boxes
        if boxes is None or len(boxes) == 0:
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            return x, y, x + 1, y + 1
        if self.keep == "one":
            boxes = boxes[int(rng.integers(0, len(boxes)))][None]
        x1, y1 = np.floor(boxes[:, :2].min(0)).astype(int)
        x2, y2 = np.ceil(boxes[:, 2:].max(0)).astype(int)
        x1, x2 = int(np.clip(x1, 0, w - 1)), int(np.clip(x2, x1 + 1, w))
        y1, y2 = int(np.clip(y1, 0, h - 1)), int(np.clip(y2, y1 + 1, h))
        return x1, y1, x2, y2

    @staticmethod
    def _start(lo: int, hi: int, extent: int, length: int, rng: np.random.Generator) -> int:
        """Start of a ``length`` window on [0, extent) containing [lo, hi) when possible."""
        if extent < length:  # image smaller than the window: centre it (pads)
            return (extent - length) // 2
        first, last = max(0, hi - length), min(lo, extent - length)
        if first <= last:
            return int(rng.integers(first, last + 1))
        return int(np.clip(round((lo + hi - length) / 2), 0, extent - length))

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = sample.height, sample.width
        x1, y1, x2, y2 = self._region(sample, rng)
        if self.size is None:
            left, right = int(rng.integers(0, x1 + 1)), int(rng.integers(x2, w + 1))
            top, bottom = int(rng.integers(0, y1 + 1)), int(rng.integers(y2, h + 1))
            return {"top": top, "left": left, "height": bottom - top, "width": right - left}
        ch, cw = self.size
        top = self._start(y1, y2, h, ch, rng)
        left = self._start(x1, x2, w, cw, rng)
        return {"top": top, "left": left, "height": ch, "width": cw}


@TRANSFORMS.register("pad_to_size")
class PadToSize(_Window):
    """Pad to at least ``size=(h, w)`` (never crops): albumentations' ``PadIfNeeded``.

    ``position``: "center" (split evenly, extra pixel bottom/right), "top_left" (pad only
    bottom/right, so coordinates do not move) or "random". ``fill``: value or "reflect".
    """

    def __init__(
        self,
        size: Size,
        position: str = "center",
        fill: F.Fill | str = 0,
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(p, **box_filter)
        if position not in ("center", "top_left", "random"):
            raise ConfigError(
                f"PadToSize: position must be center, top_left or random, got {position!r}"
            )
        if isinstance(fill, str) and fill != "reflect":
            raise ConfigError(f"PadToSize: fill must be a number or 'reflect', got {fill!r}")
        self.size = _pair(size, "PadToSize")
        self.position, self.fill = position, fill

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        h, w = sample.height, sample.width
        ph, pw = max(0, self.size[0] - h), max(0, self.size[1] - w)
        if self.position == "center":
            top, left = ph // 2, pw // 2
        elif self.position == "top_left":
            top, left = 0, 0
        else:
            top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        pad = (top, ph - top, left, pw - left)
        return {"pad": pad, "top": 0, "left": 0, "height": h + ph, "width": w + pw}

    def raster(self, x, params, *, interpolation, fill):
        mode = "reflect" if fill == "reflect" else "constant"
        return F.pad_image(x, params["pad"], 0 if mode == "reflect" else fill, mode)

    def points(self, xy, params, in_size):
        t, _, l, _ = params["pad"]
        return F.pad_points(xy, t, l)


@TRANSFORMS.register("random_rotation")
class RandomRotation(RandomAffine):
    """Rotate by angle ~ U(-degrees, degrees) (or a range) about the centre; same size."""

    def __init__(
        self,
        degrees: float | Sequence[float],
        fill: F.Fill = 0,
        interpolation: str = "linear",
        p: float = 1.0,
        **box_filter: float,
    ) -> None:
        super().__init__(degrees=degrees, fill=fill, interpolation=interpolation, p=p, **box_filter)
