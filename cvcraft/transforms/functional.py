"""Pure augmentation kernels: no randomness, no Sample, just arrays in and arrays out.

The transform classes (``geometric.py``, ``color.py``, ``erase.py``) draw parameters and
call these; keeping them apart means a kernel is tested once against OpenCV/numpy and reused
by every target type (the torchvision v2 split between kernels and parameter sampling).

Conventions shared by every kernel:

- Rasters are HWC numpy arrays (uint8, or float32 where OpenCV allows). Instance masks are
  bool (N, H, W); semantic masks uint8 (H, W). Rasters keep their channel axis even when
  OpenCV drops a singleton one.
- Boxes and keypoints live in *continuous* pixel coordinates: pixel ``i`` covers ``[i, i+1)``
  so a box around pixels 10..19 is ``x1=10, x2=20`` and a horizontal flip is ``x' = W - x``.
  OpenCV matrices act on pixel *indices* (pixel centres at integers); the affine point
  kernels convert with a half-pixel shift so boxes, keypoints and pixels agree exactly.
- ``size`` arguments are ``(height, width)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from cvcraft.errors import ConfigError

try:  # optional: ships with albumentations; its byte translate is a ~5x faster 8-bit LUT
    import stringzilla as _stringzilla
except ImportError:  # pragma: no cover - the cv2.LUT path below is the fallback
    _stringzilla = None

Fill = float | Sequence[float]

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

# OpenCV's warp/resize/border functions accept at most this many channels; instance mask
# stacks (one channel per object) are processed in chunks of this size.
_CV_MAX_CHANNELS = 128


# --------------------------------------------------------------------------- helpers


def cv_interpolation(name: str, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Map an interpolation name to an OpenCV flag.

    ``"auto"`` picks INTER_AREA when the output has fewer pixels than the input (it averages,
    so it does not alias like bilinear does when shrinking) and INTER_LINEAR otherwise.
    """
    if name == "auto":
        shrinking = out_hw[0] * out_hw[1] < in_hw[0] * in_hw[1]
        return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    try:
        return INTERPOLATIONS[name]
    except KeyError:
        raise ConfigError(
            f"unknown interpolation {name!r}; use one of {['auto', *INTERPOLATIONS]}"
        ) from None


def _keep_hwc(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV returns (H, W) for single-channel input; restore the channel axis."""
    return out[..., None] if out.ndim == 2 and like.ndim == 3 else out


def _border_value(fill: Fill, channels: int) -> tuple[float, ...]:
    """Per-channel fill as the tuple OpenCV's ``borderValue`` expects (at most 4 entries)."""
    values = np.broadcast_to(np.asarray(fill, dtype=np.float64).reshape(-1), (channels,))
    return tuple(float(v) for v in values[:4])


def _fill_array(fill: Fill, channels: int, dtype: np.dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(fill, dtype=np.float64).reshape(-1), (channels,)).astype(
        dtype
    )


def map_masks(masks: np.ndarray, raster_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an HWC raster kernel to a bool (N, H, W) instance-mask stack -> bool (N, H', W').

    The stack is moved to channels-last uint8 and fed to OpenCV in chunks it accepts; the
    caller's kernel must use nearest interpolation and fill 0 so masks stay binary.
    """
    n, h, w = masks.shape
    if n == 0:  # still need the output size: run the kernel on one dummy channel
        out_h, out_w = raster_fn(np.zeros((h, w, 1), np.uint8)).shape[:2]
        return np.zeros((0, out_h, out_w), dtype=bool)
    hwc = np.ascontiguousarray(masks.transpose(1, 2, 0).astype(np.uint8))
    chunks = [raster_fn(hwc[..., i : i + _CV_MAX_CHANNELS]) for i in range(0, n, _CV_MAX_CHANNELS)]
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1) > 0


def map_boxes(boxes: np.ndarray, point_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Map xyxy boxes (N, 4) through a point transform: the box enclosing the 4 moved corners.

    Exact for flips, crops, pads, resizes and translations; for rotation/shear it is the
    smallest axis-aligned box containing the rotated box (so it can only grow).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack(
        [
            np.stack([x1, y1], -1),
            np.stack([x2, y1], -1),
            np.stack([x2, y2], -1),
            np.stack([x1, y2], -1),
        ],
        axis=1,
    )  # (N, 4, 2)
    moved = point_fn(corners.reshape(-1, 2).astype(np.float64)).reshape(-1, 4, 2)
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float32)


def map_keypoints(
    keypoints: np.ndarray,
    point_fn: Callable[[np.ndarray], np.ndarray],
    out_size: tuple[int, int],
) -> np.ndarray:
    """Map (N, K, 3) keypoints (x, y, visibility); points that leave the image get visibility 0.

    Inside means 0 <= x <= W and 0 <= y <= H (continuous coordinates, edges included).
    Coordinates of invisible points are still moved (so a later inverse transform could bring
    them back) but their visibility stays 0.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    out = kp.copy()
    xy = point_fn(kp[..., :2].reshape(-1, 2).astype(np.float64)).reshape(kp.shape[:-1] + (2,))
    out[..., :2] = xy
    h, w = out_size
    # inclusive bounds: a point on the right/bottom edge (e.g. x = 0 after a flip) is in
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w) & (xy[..., 1] >= 0) & (xy[..., 1] <= h)
    out[..., 2] = np.where(inside, kp[..., 2], 0.0)
    return out


def filter_boxes(
    moved: np.ndarray,
    out_size: tuple[int, int],
    *,
    min_area: float = 1.0,
    min_visibility: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip moved xyxy boxes to the image and decide which to keep -> (clipped (N,4), keep (N,)).

    visibility = area(clipped) / area(moved, unclipped): the fraction of the (transformed)
    object still inside the image. A box is kept when its clipped area is > 0, >= ``min_area``
    (pixels^2 of the output image) and its visibility is >= ``min_visibility``.
    """
    h, w = out_size
    clipped = moved.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    area = _area(clipped)
    full = _area(moved)
    visibility = np.divide(area, full, out=np.zeros_like(area), where=full > 0)
    keep = (area > 0) & (area >= min_area) & (visibility >= min_visibility)
    return clipped, keep


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


# --------------------------------------------------------------------------- flips


def hflip_image(image: np.ndarray) -> np.ndarray:
    """Mirror left-right: out[:, x] = in[:, W-1-x] (also works on any (H, W, ...) raster).

    cv2.flip copies whole pixels; numpy's reversed-stride copy of an HWC array moves one
    3-byte pixel at a time and is ~20x slower.
    """
    if image.ndim == 3 and image.shape[2] <= _CV_MAX_CHANNELS:
        return _keep_hwc(cv2.flip(image, 1), image)
    return np.ascontiguousarray(image[:, ::-1])


def vflip_image(image: np.ndarray) -> np.ndarray:
    """Mirror top-bottom: out[y] = in[H-1-y]."""
    if image.ndim == 3 and image.shape[2] <= _CV_MAX_CHANNELS:
        return _keep_hwc(cv2.flip(image, 0), image)
    return np.ascontiguousarray(image[::-1])


def hflip_masks(masks: np.ndarray) -> np.ndarray:
    """Mirror an (N, H, W) mask stack left-right."""
    return np.ascontiguousarray(masks[:, :, ::-1])


def vflip_masks(masks: np.ndarray) -> np.ndarray:
    """Mirror an (N, H, W) mask stack top-bottom."""
    return np.ascontiguousarray(masks[:, ::-1])


def hflip_points(xy: np.ndarray, width: int) -> np.ndarray:
    """x' = W - x on (M, 2) continuous coordinates."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[:, 0] = width - out[:, 0]
    return out


def vflip_points(xy: np.ndarray, height: int) -> np.ndarray:
    """y' = H - y on (M, 2) continuous coordinates."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[:, 1] = height - out[:, 1]
    return out


def hflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """xyxy boxes after a left-right flip: (W - x2, y1, W - x1, y2)."""
    return map_boxes(boxes, lambda p: hflip_points(p, width))


def vflip_boxes(boxes: np.ndarray, height: int) -> np.ndarray:
    """xyxy boxes after a top-bottom flip: (x1, H - y2, x2, H - y1)."""
    return map_boxes(boxes, lambda p: vflip_points(p, height))


def hflip_keypoints(
    keypoints: np.ndarray, width: int, flip_index: Sequence[int] | None = None
) -> np.ndarray:
    """Keypoints after a left-right flip; ``flip_index`` re-orders K so "left eye" stays left.

    Pose datasets name points by side; after mirroring, the point that was the left eye is
    on the right, so ``out[:, k] = flipped[:, flip_index[k]]``.
    """
    out = map_keypoints(keypoints, lambda p: hflip_points(p, width), (math.inf, width))
    return out[:, list(flip_index)] if flip_index is not None else out


def vflip_keypoints(keypoints: np.ndarray, height: int) -> np.ndarray:
    """Keypoints after a top-bottom flip."""
    return map_keypoints(keypoints, lambda p: vflip_points(p, height), (height, math.inf))


# --------------------------------------------------------------------------- resize


def resize_image(
    image: np.ndarray, size: tuple[int, int], interpolation: str = "auto"
) -> np.ndarray:
    """Resize an HWC raster to ``size=(h, w)`` with OpenCV (half-pixel-centre sampling)."""
    h, w = int(size[0]), int(size[1])
    if (h, w) == image.shape[:2]:
        return image
    flag = cv_interpolation(interpolation, image.shape[:2], (h, w))
    if flag == cv2.INTER_NEAREST:
        # INTER_NEAREST samples src[floor(x * s)], half a pixel off the centre-aligned
        # mapping boxes use; NEAREST_EXACT samples src[floor((x + 0.5) * s)], so masks
        # and boxes agree after a non-integer resize
        flag = cv2.INTER_NEAREST_EXACT
    return _keep_hwc(cv2.resize(image, (w, h), interpolation=flag), image)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool (N, H, W) mask stack with nearest interpolation."""
    return map_masks(masks, lambda m: resize_image(m, size, "nearest"))


def resize_points(
    xy: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """Scale continuous coordinates: x' = x * W'/W, y' = y * H'/H."""
    sy, sx = out_size[0] / in_size[0], out_size[1] / in_size[1]
    return np.asarray(xy, dtype=np.float64) * np.array([sx, sy])


def resize_boxes(
    boxes: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """Scale xyxy boxes by the resize factors."""
    return map_boxes(boxes, lambda p: resize_points(p, in_size, out_size))


# --------------------------------------------------------------------------- crop / pad


def crop_image(
    image: np.ndarray,
    top: int,
    left: int,
    height: int,
    width: int,
    fill: Fill = 0,
    copy: bool = True,
) -> np.ndarray:
    """Crop the window [top, top+height) x [left, left+width); parts outside are ``fill``.

    A window reaching past the border is allowed (CenterCrop of a smaller image pads, as in
    torchvision); a window inside the image is a copy of the slice, or the slice itself with
    ``copy=False`` (for a caller that resizes it next and so copies anyway).
    """
    top, left, height, width = int(top), int(left), int(height), int(width)
    h, w = image.shape[:2]
    y0, y1 = max(top, 0), min(top + height, h)
    x0, x1 = max(left, 0), min(left + width, w)
    if y0 == top and x0 == left and y1 == top + height and x1 == left + width:
        view = image[y0:y1, x0:x1]
        return view.copy() if copy else view
    out = np.empty((height, width) + image.shape[2:], dtype=image.dtype)
    out[...] = _fill_array(fill, image.shape[2] if image.ndim == 3 else 1, image.dtype).reshape(
        (-1,) if image.ndim == 3 else ()
    )
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def crop_masks(masks: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Crop a bool (N, H, W) stack; outside the image is False."""
    return crop_image(masks.transpose(1, 2, 0), top, left, height, width, 0).transpose(2, 0, 1)


def crop_points(xy: np.ndarray, top: float, left: float) -> np.ndarray:
    """Shift coordinates into the crop window: x' = x - left, y' = y - top."""
    return np.asarray(xy, dtype=np.float64) - np.array([left, top])


def crop_keypoints(
    keypoints: np.ndarray, top: int, left: int, height: int, width: int
) -> np.ndarray:
    """Shift keypoints into a crop window; those outside it become invisible."""
    return map_keypoints(keypoints, lambda p: crop_points(p, top, left), (height, width))


def pad_image(
    image: np.ndarray,
    padding: tuple[int, int, int, int],
    fill: Fill = 0,
    mode: str = "constant",
) -> np.ndarray:
    """Pad by ``padding=(top, bottom, left, right)``; ``mode`` is "constant" or "reflect".

    "reflect" mirrors without repeating the edge pixel (numpy/torchvision "reflect",
    OpenCV BORDER_REFLECT_101).
    """
    t, b, l, r = (int(v) for v in padding)
    if mode == "constant":
        border, value = cv2.BORDER_CONSTANT, _border_value(fill, _channels(image))
    elif mode == "reflect":
        border, value = cv2.BORDER_REFLECT_101, None
    else:
        raise ConfigError(f"unknown padding mode {mode!r}; use 'constant' or 'reflect'")
    if _channels(image) > 4 and mode == "constant":  # borderValue holds at most 4 channels
        return crop_image(image, -t, -l, image.shape[0] + t + b, image.shape[1] + l + r, fill)
    out = cv2.copyMakeBorder(image, t, b, l, r, border, value=value)
    return _keep_hwc(out, image)


def _channels(image: np.ndarray) -> int:
    return image.shape[2] if image.ndim == 3 else 1


def pad_points(xy: np.ndarray, top: float, left: float) -> np.ndarray:
    """x' = x + left, y' = y + top."""
    return np.asarray(xy, dtype=np.float64) + np.array([left, top])


def pad_masks(masks: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    """Pad a bool (N, H, W) stack with False."""
    return map_masks(masks, lambda m: pad_image(m, padding, 0))


# --------------------------------------------------------------------------- affine


def affine_matrix(
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    shear: tuple[float, float] = (0.0, 0.0),
    center: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """One 2x3 forward matrix for rotate + scale + shear about ``center``, then translate.

    M = T(center + translate) . R(angle) . S(scale) . Sh(shear) . T(-center), with ``angle`` in
    degrees counter-clockwise on screen (the OpenCV ``getRotationMatrix2D`` convention, so a
    pure rotation equals it exactly), ``shear=(sx, sy)`` in degrees
    (Sh = [[1, tan sx], [tan sy, 1]]) and ``center``/``translate`` in OpenCV pixel-index
    coordinates (the image centre is ((W-1)/2, (H-1)/2)). Composing first means the image is
    resampled once, not once per component.
    """
    a = math.radians(angle)
    cos, sin = math.cos(a) * scale, math.sin(a) * scale
    # y points down, so a counter-clockwise turn on screen is [[c, s], [-s, c]].
    rot_scale = np.array([[cos, sin], [-sin, cos]])
    shear_m = np.array(
        [[1.0, math.tan(math.radians(shear[0]))], [math.tan(math.radians(shear[1])), 1.0]]
    )
    linear = rot_scale @ shear_m
    c = np.asarray(center, dtype=np.float64)
    offset = c + np.asarray(translate, dtype=np.float64) - linear @ c
    return np.concatenate([linear, offset[:, None]], axis=1)


def _cv_warp(
    warp: Callable[..., np.ndarray],
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    interpolation: str,
    fill: Fill,
) -> np.ndarray:
    """Run cv2.warpAffine / cv2.warpPerspective with a constant ``fill`` border."""
    flag = cv_interpolation(interpolation, image.shape[:2], size)
    if flag == cv2.INTER_AREA:  # the warps have no area mode
        flag = cv2.INTER_LINEAR
    out = warp(
        image,
        np.asarray(matrix, dtype=np.float64),
        (int(size[1]), int(size[0])),
        flags=flag,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=_border_value(fill, _channels(image)),
    )
    return _keep_hwc(out, image)


def warp_affine_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    interpolation: str = "linear",
    fill: Fill = 0,
) -> np.ndarray:
    """Resample an HWC raster through a forward 2x3 matrix into ``size=(h, w)`` (one warp)."""
    return _cv_warp(cv2.warpAffine, image, matrix, size, interpolation, fill)


def warp_affine_masks(masks: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp a bool (N, H, W) stack with nearest interpolation (stays binary)."""
    return map_masks(masks, lambda m: warp_affine_image(m, matrix, size, "nearest", 0))


def affine_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply an OpenCV (pixel-index) 2x3 matrix to continuous coordinates.

    p' = M (p - 0.5) + 0.5: the half-pixel shifts move between the continuous convention
    (pixel centre at i + 0.5) and OpenCV's (pixel centre at i).
    """
    m = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(xy, dtype=np.float64) - 0.5
    return p @ m[:, :2].T + m[:, 2] + 0.5


def to_homogeneous(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix as 3x3 (last row 0 0 1); a 3x3 matrix is returned as float64."""
    m = np.asarray(matrix, dtype=np.float64)
    return m if m.shape == (3, 3) else np.vstack([m, [0.0, 0.0, 1.0]])


def warp_perspective_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    interpolation: str = "linear",
    fill: Fill = 0,
) -> np.ndarray:
    """Resample an HWC raster through a forward 3x3 homography into ``size=(h, w)``."""
    return _cv_warp(cv2.warpPerspective, image, matrix, size, interpolation, fill)


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    interpolation: str = "linear",
    fill: Fill = 0,
) -> np.ndarray:
    """One warp through a 2x3 (affine) or 3x3 matrix; an affine 3x3 uses the cheaper affine."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (3, 3) and np.allclose(m[2], [0.0, 0.0, 1.0]):
        m = m[:2]
    if m.shape == (2, 3):
        return warp_affine_image(image, m, size, interpolation, fill)
    return warp_perspective_image(image, m, size, interpolation, fill)


def perspective_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply an OpenCV (pixel-index) 2x3 or 3x3 matrix to continuous (M, 2) coordinates.

    p' = dehomogenize(H [p - 0.5, 1]) + 0.5 (the same half-pixel convention as
    ``affine_points``). Straight lines stay straight, so a box's 4 mapped corners still
    bound the mapped box exactly (as long as the box stays in front of the horizon).
    """
    m = to_homogeneous(matrix)
    p = np.asarray(xy, dtype=np.float64) - 0.5
    q = p @ m[:2, :2].T + m[:2, 2]
    w = p @ m[2, :2] + m[2, 2]
    # points behind the horizon (w <= 0) have no image; send them far away so boxes drop
    w = np.where(w > 1e-9, w, 1e-9)
    return q / w[:, None] + 0.5


# --------------------------------------------------------------------------- colour / erase


def apply_lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map a uint8 array through a (256,) table, or an HWC image per channel through (C, 256).

    Returns a new array. Uses stringzilla's byte translate when installed, else cv2.LUT
    (identical results; OpenCV 5's LUT is several times slower on one thread).
    """
    table = np.ascontiguousarray(table, dtype=np.uint8)
    if table.ndim == 2:  # one table per channel
        if _stringzilla is None and image.shape[2] <= 4:
            return _keep_hwc(cv2.LUT(image, np.ascontiguousarray(table.T[:, None, :])), image)
        planes = cv2.split(image) if image.shape[2] <= 4 else list(image.transpose(2, 0, 1))
        ident = np.arange(256, dtype=np.uint8)
        # identity tables (e.g. the S and V tables of a pure hue shift) skip their plane
        out = [
            pl if np.array_equal(t, ident) else apply_lut(np.ascontiguousarray(pl), t)
            for pl, t in zip(planes, table)
        ]
        return _keep_hwc(cv2.merge(out), image) if len(out) <= 4 else np.stack(out, axis=-1)
    if _stringzilla is not None:
        out = np.array(image, copy=True, order="C")
        _stringzilla.translate(memoryview(out.reshape(-1)), memoryview(table), inplace=True)
        return out
    if image.ndim == 3 and image.shape[2] > 4:
        return table[image]
    return _keep_hwc(cv2.LUT(image, table), image)


def hsv_jitter(
    image: np.ndarray, hue_shift: float = 0.0, sat_gain: float = 1.0, val_gain: float = 1.0
) -> np.ndarray:
    """Shift hue and scale saturation/value of an RGB image through three lookup tables.

    H' = (H + hue_shift * 180) mod 180 (OpenCV's 8-bit hue wheel is 0..179, so
    ``hue_shift`` is a fraction of the full wheel), S' = clip(S * sat_gain), V' = clip(V *
    val_gain). With uint8 each channel is one 256-entry LUT (the YOLO trick: cheap, no float
    image). Float32 images are taken as 0-255 RGB and done in float. Identity parameters
    return the input unchanged, because the RGB->HSV->RGB round trip is lossy in uint8.
    """
    if hue_shift == 0 and sat_gain == 1 and val_gain == 1:
        return image
    if image.dtype == np.uint8:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        x = np.arange(256, dtype=np.float64)
        lut_h = np.mod(x + hue_shift * 180.0, 180.0).astype(np.uint8)
        lut_s = np.clip(x * sat_gain, 0, 255).astype(np.uint8)
        lut_v = np.clip(x * val_gain, 0, 255).astype(np.uint8)
        return cv2.cvtColor(apply_lut(hsv, np.stack([lut_h, lut_s, lut_v])), cv2.COLOR_HSV2RGB)
    # float path: OpenCV float HSV has H in [0, 360) and S, V in [0, 1] for input in [0, 1]
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift * 360.0, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat_gain, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * val_gain, 0, 1)
    return (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0).astype(image.dtype)


def rects_mask(rects: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Union of integer xyxy rectangles (M, 4) as a bool (H, W) mask, without a loop.

    A 2-D difference array gets +1/-1 at each rectangle's corners; its 2-D cumulative sum
    counts how many rectangles cover each pixel (O(H*W + M)).
    """
    h, w = size
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    x1, y1 = r[:, 0].clip(0, w), r[:, 1].clip(0, h)
    x2, y2 = r[:, 2].clip(0, w), r[:, 3].clip(0, h)
    ok = (x2 > x1) & (y2 > y1)
    x1, y1, x2, y2 = x1[ok], y1[ok], x2[ok], y2[ok]
    diff = np.zeros((h + 1, w + 1), dtype=np.int32)
    np.add.at(diff, (y1, x1), 1)
    np.add.at(diff, (y1, x2), -1)
    np.add.at(diff, (y2, x1), -1)
    np.add.at(diff, (y2, x2), 1)
    return diff.cumsum(0).cumsum(1)[:h, :w] > 0


def clip_rects(rects: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Integer xyxy rectangles (M, 4) clipped to the image; empty ones removed."""
    h, w = size
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4).clip(0, [w, h, w, h])
    return r[(r[:, 2] > r[:, 0]) & (r[:, 3] > r[:, 1])]


def erase(image: np.ndarray, rects: np.ndarray, fill: Fill = 0) -> np.ndarray:
    """Return a copy with the integer xyxy rectangles (M, 4) set to ``fill`` (Cutout/erasing).

    ``fill`` is a scalar or per-channel value; rectangles are clipped to the image. One
    slice assignment per rectangle touches only the holes' pixels, where a coverage mask
    (``rects_mask``) costs a full-image pass; M is a handful of holes.
    """
    out = image.copy()
    c = _channels(image)
    h, w = image.shape[:2]
    fills = np.asarray(fill, dtype=np.float64).reshape(-1).tolist()
    value = [fills[i % len(fills)] for i in range(c)]
    # plain-int clipping: these few rectangles are cheaper in Python than in numpy calls
    for x1, y1, x2, y2 in np.asarray(rects, dtype=np.int64).reshape(-1, 4).tolist():
        x1, x2, y1, y2 = max(x1, 0), min(x2, w), max(y1, 0), min(y2, h)
        if x2 <= x1 or y2 <= y1:
            continue
        if c <= 4 and image.ndim == 3:  # filled cv2.rectangle: a fast per-row fill
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), value, thickness=-1)
        else:
            out[y1:y2, x1:x2] = np.asarray(value, dtype=image.dtype)
    return out
