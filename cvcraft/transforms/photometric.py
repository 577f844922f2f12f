"""Photometric ops: colour, tone, blur, noise, compression. Only the image changes; boxes,
masks and keypoints pass through untouched.

Kernels (module-level functions) are deterministic and take uint8 HWC RGB (float32 in
0..255 accepted); the classes draw parameters from the call's Generator. On uint8 every
per-pixel tone curve is one 256-entry lookup table (``cv2.LUT``), which is why brightness,
gamma, posterize or solarize cost about a memory copy.

Where torchvision defines the op (``transforms.v2.functional``) the uint8 results follow
its definitions: float32 arithmetic, clamp to [0, 255], then truncation (not rounding) to
uint8; posterize/solarize/invert/equalize/autocontrast/gamma/brightness are bit-exact.
Saturation/sharpness/grayscale use OpenCV's rounding blend and luma (within 1-2 levels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from cvcraft.errors import ConfigError
from cvcraft.structures import Sample
from cvcraft.transforms import functional as F
from cvcraft.transforms.base import TRANSFORMS, Params, Transform

Range = float | Sequence[float]

_X = np.arange(256, dtype=np.float32)  # the uint8 domain, as float32 like torchvision


# --------------------------------------------------------------------------- kernels


def _to_uint8_trunc(values: np.ndarray) -> np.ndarray:
    """clamp to [0, 255] then truncate: torchvision's float -> uint8 cast after its ops."""
    return np.clip(values, 0, 255).astype(np.uint8)


apply_lut = F.apply_lut


def tone_curve(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a per-pixel tone curve ``fn`` (float32 0..255 in, any range out).

    uint8: evaluated once on the 256 input levels, clamped, truncated, used as a LUT.
    float32: evaluated on the image itself and clamped to [0, 255].
    """
    if image.dtype == np.uint8:
        return apply_lut(image, _to_uint8_trunc(fn(_X)))
    return np.clip(fn(image.astype(np.float32, copy=False)), 0, 255).astype(np.float32)


def _gray_like(image: np.ndarray) -> np.ndarray:
    """Luma replicated to the image's channels (cvtColor is ~50x faster than np.repeat)."""
    g = _gray(image)
    if image.shape[2] == 3 and image.dtype in (np.uint8, np.float32):
        return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    return np.repeat(g[..., None], image.shape[2], axis=2)


def _gray(image: np.ndarray) -> np.ndarray:
    """Luma (H, W) as the image's dtype: 0.299 R + 0.587 G + 0.114 B (OpenCV, rounded)."""
    if image.shape[2] == 1:
        return image[..., 0]
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)


def _blend(a: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    """ratio * a + (1 - ratio) * b, saturated to the dtype's range (OpenCV rounds)."""
    if a.dtype == np.uint8:
        return F._keep_hwc(cv2.addWeighted(a, ratio, b, 1.0 - ratio, 0.0), a)
    return np.clip(a * ratio + b * (1.0 - ratio), 0, 255).astype(np.float32)


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """x' = factor * x (blend with black); factor 0 = black, 1 = unchanged."""
    f = np.float32(factor)
    return tone_curve(image, lambda x: x * f)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """x' = factor * x + (1 - factor) * mean(luma): blend with the image's mean grey."""
    mean = np.float32(cv2.mean(_gray(image))[0])
    f = np.float32(factor)
    return tone_curve(image, lambda x: x * f + mean * (np.float32(1) - f))


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """x' = factor * x + (1 - factor) * luma(x) per pixel; 0 = greyscale, 2 = doubly vivid."""
    if image.shape[2] == 1:
        return image
    return _blend(image, _gray_like(image), factor)


def adjust_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotate every hue by ``shift`` (fraction of the wheel, in [-0.5, 0.5]) in HSV space."""
    return F.hsv_jitter(image, hue_shift=shift)


def adjust_gamma(image: np.ndarray, gamma: float, gain: float = 1.0) -> np.ndarray:
    """x' = 255 * clip(gain * (x / 255) ** gamma, 0, 1); gamma < 1 brightens the shadows."""
    g, k = np.float32(gamma), np.float32(gain)
    if image.dtype == np.uint8:  # torchvision scales float -> uint8 by (255 + 1 - 1e-3)
        v = np.clip((_X / np.float32(255)) ** g * k, 0, 1) * np.float32(255.999)
        return apply_lut(image, v.astype(np.uint8))
    return tone_curve(image, lambda x: np.clip((x / 255) ** g * k, 0, 1) * 255)


def to_grayscale(image: np.ndarray, channels: int = 3) -> np.ndarray:
    """Luma replicated to ``channels`` (1 or 3) channels."""
    return _gray_like(image) if channels > 1 else _gray(image)[..., None]


def invert(image: np.ndarray) -> np.ndarray:
    """x' = 255 - x."""
    if image.dtype == np.uint8:
        return F._keep_hwc(cv2.bitwise_not(image), image)
    return (255 - image).astype(np.float32)


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the top ``bits`` bits of each uint8 value (x & ~(2^(8-bits) - 1))."""
    if not 0 <= bits <= 8:
        raise ConfigError(f"posterize: bits must be in [0, 8], got {bits}")
    if image.dtype != np.uint8:  # float: quantize to 2^bits levels of width 256 / 2^bits
        step = np.float32(2 ** (8 - bits))
        return tone_curve(image, lambda x: np.floor(x / step) * step)
    mask = (0xFF << (8 - bits)) & 0xFF
    return apply_lut(image, np.arange(256, dtype=np.uint8) & np.uint8(mask))


def solarize(image: np.ndarray, threshold: float) -> np.ndarray:
    """Invert the values >= ``threshold``: x' = 255 - x where x >= t, else x."""
    t = np.float32(threshold)
    return tone_curve(image, lambda x: np.where(x >= t, 255 - x, x))


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Stretch each channel so its min -> 0 and max -> 255 (flat channels unchanged)."""
    if image.dtype == np.uint8:  # min/max from the histograms: one pass, no strided reduce
        present = _channel_hist(image) > 0
        lo = np.argmax(present, axis=1).astype(np.float32)
        hi = (255 - np.argmax(present[:, ::-1], axis=1)).astype(np.float32)
    else:
        flat = image.reshape(-1, image.shape[2])
        lo, hi = flat.min(0).astype(np.float32), flat.max(0).astype(np.float32)
    flat_ch = hi == lo
    inv = (hi - lo) * np.float32(1 / 255)  # the same float32 steps as torchvision
    lo[flat_ch], inv[flat_ch] = 0.0, 1.0
    if image.dtype == np.uint8:
        return apply_lut(image, _to_uint8_trunc((_X[None] - lo[:, None]) / inv[:, None]))
    return np.clip((image - lo) / inv, 0, 255).astype(np.float32)


def _channel_hist(image: np.ndarray) -> np.ndarray:
    """(C, 256) int64 histograms of a uint8 HWC image."""
    c = image.shape[2]
    if c <= 4:
        return np.stack(
            [cv2.calcHist([image], [i], None, [256], [0, 256]).reshape(-1) for i in range(c)]
        ).astype(np.int64)
    codes = image.reshape(-1, c).astype(np.int64) + np.arange(c) * 256
    return np.bincount(codes.ravel(), minlength=256 * c).reshape(c, 256)


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalization per channel with PIL's ``ImageOps.equalize`` rounding.

    step = (N - count of the brightest present value) // 255; lut[0] = 0,
    lut[k] = min(255, (cdf[k-1] + step // 2) // step); channels with step 0 are unchanged.
    Float32 input is quantized to uint8 first.
    """
    src = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    hist = _channel_hist(src)  # (C, 256)
    cdf = hist.cumsum(1)
    last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)  # brightest value present
    step = (cdf[:, -1] - hist[np.arange(len(hist)), last]) // 255  # (C,)
    safe = np.maximum(step, 1)[:, None]
    lut = np.zeros_like(hist)
    lut[:, 1:] = np.clip((cdf[:, :-1] + safe // 2) // safe, 0, 255)
    lut[step == 0] = np.arange(256)  # nothing to spread: identity
    out = apply_lut(src, lut.astype(np.uint8))
    return out if image.dtype == np.uint8 else out.astype(np.float32)


_SHARPEN_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


def adjust_sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with a smoothed copy: x' = factor * x + (1 - factor) * blur(x) (PIL's SHARPEN).

    blur = the 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13; factor 0 = smooth, 1 = unchanged,
    2 = sharpened. The one-pixel border is left unchanged, as in PIL and torchvision.
    """
    h, w = image.shape[:2]
    if h <= 2 or w <= 2:
        return image
    blurred = F._keep_hwc(cv2.filter2D(image, -1, _SHARPEN_KERNEL), image)
    out = _blend(image, blurred, factor)
    out[0], out[-1], out[:, 0], out[:, -1] = image[0], image[-1], image[:, 0], image[:, -1]
    return out


def gaussian_blur(image: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    """Gaussian blur with an odd ``kernel_size`` and ``sigma`` (reflect-101 border)."""
    return F._keep_hwc(cv2.GaussianBlur(image, (kernel_size, kernel_size), sigma), image)


def median_blur(image: np.ndarray, kernel_size: int) -> np.ndarray:
    """Median of each ``kernel_size`` square window (replicated border); removes speckle."""
    src = image if image.dtype == np.uint8 or kernel_size <= 5 else image.astype(np.uint8)
    out = F._keep_hwc(cv2.medianBlur(src, kernel_size), image)
    return out.astype(image.dtype, copy=False)


def add_noise(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """x' = saturate(x + noise), rounded; ``noise`` is float32 broadcastable to the image."""
    noise = np.broadcast_to(noise, image.shape).astype(np.float32, copy=False)
    if image.dtype == np.uint8:
        return F._keep_hwc(cv2.add(image, noise, dtype=cv2.CV_8U), image)
    return np.clip(image + noise, 0, 255).astype(np.float32)


def salt_and_pepper(image: np.ndarray, salt: np.ndarray, pepper: np.ndarray) -> np.ndarray:
    """Set the (H, W) ``salt`` pixels to 255 and the ``pepper`` pixels to 0 (all channels)."""
    out = image.copy()
    out[salt] = 255
    out[pepper] = 0
    return out


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100) and decode: blocking and ringing artifacts.

    The encoder's colour transform expects BGR, so channels are swapped around the codec.
    """
    if not 1 <= quality <= 100:
        raise ConfigError(f"jpeg_compress: quality must be in [1, 100], got {quality}")
    src = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    c = src.shape[2]
    bgr = src[..., 0] if c == 1 else cv2.cvtColor(src, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 1/3-channel images
        raise ConfigError("jpeg_compress: OpenCV could not encode the image")
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR)
    out = dec[..., None] if c == 1 else cv2.cvtColor(dec, cv2.COLOR_BGR2RGB)
    return out if image.dtype == np.uint8 else out.astype(np.float32)


def channel_shuffle(image: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Re-order the channels: out[..., i] = image[..., order[i]]."""
    order = [int(i) for i in order]
    if image.shape[2] > 4:
        return np.ascontiguousarray(image[..., order])
    out = np.empty_like(image)
    pairs = [v for i, src in enumerate(order) for v in (src, i)]
    cv2.mixChannels([image], [out], pairs)
    return out


def clahe(
    image: np.ndarray, clip_limit: float = 4.0, tile_grid_size: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (Zuiderveld 1994) on lightness.

    RGB images are equalized on L of CIE-Lab (so hues do not shift); 1-channel directly.
    Each tile's histogram is clipped at ``clip_limit`` x its mean bin and the excess spread
    evenly; tiles are blended bilinearly (OpenCV's ``createCLAHE``).
    """
    src = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(tile_grid_size))
    if src.shape[2] == 1:
        out = op.apply(src[..., 0])[..., None]
    else:
        lab = cv2.cvtColor(src, cv2.COLOR_RGB2LAB)
        lab[..., 0] = op.apply(lab[..., 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return out if image.dtype == np.uint8 else out.astype(np.float32)


# --------------------------------------------------------------------------- classes


def _range(v: Range, name: str, *, around: float | None = None, lo: float = 0.0) -> tuple:
    """x -> (around - x, around + x) (or (x, x) when ``around`` is None); (a, b) -> (a, b).

    Values are clamped at ``lo`` (factors cannot be negative).
    """
    if np.isscalar(v):
        a, b = (around - v, around + v) if around is not None else (v, v)
    else:
        a, b = (float(x) for x in v)
    a, b = max(float(a), lo), float(b)
    if a > b:
        raise ConfigError(f"{name}: range ({a}, {b}) has min > max")
    return a, b


class ImageOp(Transform):
    """A transform that changes only the image: ``kernel(image, params) -> image``."""

    def kernel(self, image: np.ndarray, params: Params) -> np.ndarray:
        raise NotImplementedError

    def apply(self, sample: Sample, params: Params) -> Sample:
        return sample.replace(image=self.kernel(sample.image, params))


class _FactorOp(ImageOp):
    """factor ~ U(range); a scalar x means U(max(0, 1 - x), 1 + x) (torchvision ColorJitter)."""

    fn: Callable[[np.ndarray, float], np.ndarray]

    def __init__(self, factor: Range = 0.2, p: float = 1.0) -> None:
        super().__init__(p)
        self.factor = _range(factor, type(self).__name__, around=1.0)

    def make_params(self, sample: Sample, rng: np.random.Generator) -> Params:
        return {"factor": float(rng.uniform(*self.factor))}

    def kernel(self, image, params):
        return type(self).fn(image, params["factor"])


@TRANSFORMS.register("brightness")
class Brightness(_FactorOp):
    """Random brightness: ``adjust_brightness`` with factor ~ U(range)."""

    fn = staticmethod(adjust_brightness)


@TRANSFORMS.register("contrast")
class Contrast(_FactorOp):
    """Random contrast: ``adjust_contrast`` with factor ~ U(range)."""

    fn = staticmethod(adjust_contrast)


@TRANSFORMS.register("saturation")
class Saturation(_FactorOp):
    """Random saturation: ``adjust_saturation`` with factor ~ U(range)."""

    fn = staticmethod(adjust_saturation)


@TRANSFORMS.register("sharpness")
class Sharpness(_FactorOp):
    """Random sharpness: ``adjust_sharpness`` with factor ~ U(range)."""

    fn = staticmethod(adjust_sharpness)


@TRANSFORMS.register("hue")
class Hue(ImageOp):
    """Random hue rotation: shift ~ U(-h, h) (or a range), a fraction of the colour wheel."""

    def __init__(self, hue: Range = 0.1, p: float = 1.0) -> None:
        super().__init__(p)
        self.hue = _range(hue, "Hue", around=0.0, lo=-0.5)
        if self.hue[1] > 0.5:
            raise ConfigError(f"Hue: shift must be within [-0.5, 0.5], got {hue}")

    def make_params(self, sample, rng):
        return {"shift": float(rng.uniform(*self.hue))}

    def kernel(self, image, params):
        return adjust_hue(image, params["shift"])


@TRANSFORMS.register("color_jitter")
class ColorJitter(ImageOp):
    """Brightness, contrast, saturation and hue jitter in a random order (torchvision's).

    Each argument is a scalar x (factor ~ U(1 - x, 1 + x); hue shift ~ U(-x, x)) or a
    (min, max) range; 0 disables that component (and draws nothing for it).
    """

    def __init__(
        self,
        brightness: Range = 0.0,
        contrast: Range = 0.0,
        saturation: Range = 0.0,
        hue: Range = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.brightness = _range(brightness, "ColorJitter.brightness", around=1.0)
        self.contrast = _range(contrast, "ColorJitter.contrast", around=1.0)
        self.saturation = _range(saturation, "ColorJitter.saturation", around=1.0)
        self.hue = _range(hue, "ColorJitter.hue", around=0.0, lo=-0.5)

    def make_params(self, sample, rng):
        ranges = {
            "brightness": (self.brightness, 1.0),
            "contrast": (self.contrast, 1.0),
            "saturation": (self.saturation, 1.0),
            "hue": (self.hue, 0.0),
        }
        ops = [(k, float(rng.uniform(*r))) for k, (r, ident) in ranges.items() if r != (ident,) * 2]
        order = rng.permutation(len(ops)).tolist()
        return {"ops": [ops[i] for i in order]}

    def kernel(self, image, params):
        fns = {
            "brightness": adjust_brightness,
            "contrast": adjust_contrast,
            "saturation": adjust_saturation,
            "hue": adjust_hue,
        }
        for name, value in params["ops"]:
            image = fns[name](image, value)
        return image


@TRANSFORMS.register("gamma")
class RandomGamma(ImageOp):
    """Random gamma curve: gamma ~ U(range) then ``adjust_gamma``."""

    def __init__(self, gamma: Range = (0.8, 1.2), gain: float = 1.0, p: float = 1.0) -> None:
        super().__init__(p)
        self.gamma = _range(gamma, "RandomGamma", around=1.0, lo=1e-3)
        self.gain = float(gain)

    def make_params(self, sample, rng):
        return {"gamma": float(rng.uniform(*self.gamma))}

    def kernel(self, image, params):
        return adjust_gamma(image, params["gamma"], self.gain)


@TRANSFORMS.register("grayscale")
class Grayscale(ImageOp):
    """Convert to luma, kept as ``channels`` (3 by default, so models need no change)."""

    def __init__(self, channels: int = 3, p: float = 1.0) -> None:
        super().__init__(p)
        if channels not in (1, 3):
            raise ConfigError(f"Grayscale: channels must be 1 or 3, got {channels}")
        self.channels = channels

    def kernel(self, image, params):
        return to_grayscale(image, self.channels)


class _FixedOp(ImageOp):
    """A parameter-free kernel (the randomness is only ``p``)."""

    fn: Callable[[np.ndarray], np.ndarray]

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p)

    def kernel(self, image, params):
        return type(self).fn(image)


@TRANSFORMS.register("equalize")
class Equalize(_FixedOp):
    """Histogram equalization per channel (``equalize``)."""

    fn = staticmethod(equalize)


@TRANSFORMS.register("autocontrast")
class AutoContrast(_FixedOp):
    """Per-channel min-max stretch (``autocontrast``)."""

    fn = staticmethod(autocontrast)


@TRANSFORMS.register("invert")
class Invert(_FixedOp):
    """Negative image (``invert``)."""

    fn = staticmethod(invert)


@TRANSFORMS.register("posterize")
class Posterize(ImageOp):
    """Keep ``bits`` bits per channel; an int or an inclusive (min, max) range."""

    def __init__(self, bits: int | Sequence[int] = 4, p: float = 1.0) -> None:
        super().__init__(p)
        lo, hi = (int(bits),) * 2 if np.isscalar(bits) else (int(bits[0]), int(bits[1]))
        if not 0 <= lo <= hi <= 8:
            raise ConfigError(f"Posterize: bits must be in [0, 8], got {bits}")
        self.bits = (lo, hi)

    def make_params(self, sample, rng):
        return {"bits": int(rng.integers(self.bits[0], self.bits[1] + 1))}

    def kernel(self, image, params):
        return posterize(image, params["bits"])


@TRANSFORMS.register("solarize")
class Solarize(ImageOp):
    """Invert pixels above a threshold; ``threshold`` is a value or a (min, max) range."""

    def __init__(self, threshold: Range = 128.0, p: float = 1.0) -> None:
        super().__init__(p)
        self.threshold = _range(threshold, "Solarize")

    def make_params(self, sample, rng):
        return {"threshold": float(rng.uniform(*self.threshold))}

    def kernel(self, image, params):
        return solarize(image, params["threshold"])


def _odd_sizes(kernel_size: int | Sequence[int], name: str) -> list[int]:
    lo, hi = (int(kernel_size),) * 2 if np.isscalar(kernel_size) else map(int, kernel_size)
    sizes = [k for k in range(lo, hi + 1) if k % 2 == 1 and k >= 1]
    if not sizes:
        raise ConfigError(f"{name}: kernel_size {kernel_size} contains no odd size >= 1")
    return sizes


@TRANSFORMS.register("gaussian_blur")
class GaussianBlur(ImageOp):
    """Gaussian blur: kernel size drawn from the odd values in ``kernel_size`` (int or
    range), sigma ~ U(``sigma``)."""

    def __init__(
        self, kernel_size: int | Sequence[int] = (3, 7), sigma: Range = (0.1, 2.0), p: float = 1.0
    ) -> None:
        super().__init__(p)
        self.sizes = _odd_sizes(kernel_size, "GaussianBlur")
        self.sigma = _range(sigma, "GaussianBlur", lo=1e-3)

    def make_params(self, sample, rng):
        k = self.sizes[int(rng.integers(len(self.sizes)))]
        return {"kernel_size": k, "sigma": float(rng.uniform(*self.sigma))}

    def kernel(self, image, params):
        return gaussian_blur(image, params["kernel_size"], params["sigma"])


@TRANSFORMS.register("median_blur")
class MedianBlur(ImageOp):
    """Median filter with a kernel size drawn from the odd values in ``kernel_size``."""

    def __init__(self, kernel_size: int | Sequence[int] = (3, 7), p: float = 1.0) -> None:
        super().__init__(p)
        self.sizes = _odd_sizes(kernel_size, "MedianBlur")

    def make_params(self, sample, rng):
        return {"kernel_size": self.sizes[int(rng.integers(len(self.sizes)))]}

    def kernel(self, image, params):
        return median_blur(image, params["kernel_size"])


def _noise_rng(params: Params) -> np.random.Generator:
    # big noise fields are regenerated from a drawn seed, so params stay small and replayable
    return np.random.default_rng(params["seed"])


def seeded_normal(shape: tuple[int, ...], seed: int, mean: float, std: float) -> np.ndarray:
    """float32 N(mean, std^2) noise from OpenCV's RNG seeded with ``seed``.

    cv2.randn is ~4x faster than numpy's Generator for image-sized fields; seeding the
    calling thread's OpenCV RNG from the transform's own draw keeps it reproducible.
    """
    cv2.setRNGSeed(int(seed) % (2**31))
    out = np.empty((int(np.prod(shape[:-1])), int(shape[-1])), np.float32)
    cv2.randn(out, float(mean), float(std))
    return out.reshape(shape)


@TRANSFORMS.register("gaussian_noise")
class GaussianNoise(ImageOp):
    """Additive Gaussian noise: x' = x + N(mean, std^2), std ~ U(``std``) in 0..255 units.

    ``per_channel=False`` draws one noise value per pixel shared by its channels.
    """

    def __init__(
        self, std: Range = (5.0, 25.0), mean: float = 0.0, per_channel: bool = True, p: float = 1.0
    ) -> None:
        super().__init__(p)
        self.std = _range(std, "GaussianNoise")
        self.mean, self.per_channel = float(mean), per_channel

    def make_params(self, sample, rng):
        return {"std": float(rng.uniform(*self.std)), "seed": int(rng.integers(2**63))}

    def noise(self, shape: tuple[int, ...], params: Params) -> np.ndarray:
        """The float32 noise field the call adds (regenerated from the recorded seed)."""
        h, w, c = shape
        shape = (h, w, c if self.per_channel else 1)
        return seeded_normal(shape, params["seed"], self.mean, params["std"])

    def kernel(self, image, params):
        return add_noise(image, self.noise(image.shape, params))


@TRANSFORMS.register("salt_pepper")
class SaltAndPepper(ImageOp):
    """Impulse noise: a fraction ~ U(``amount``) of pixels become 255 (salt) or 0 (pepper),
    salt with probability ``salt_vs_pepper``."""

    def __init__(
        self, amount: Range = (0.01, 0.06), salt_vs_pepper: float = 0.5, p: float = 1.0
    ) -> None:
        super().__init__(p)
        self.amount = _range(amount, "SaltAndPepper")
        if self.amount[1] > 1 or not 0 <= salt_vs_pepper <= 1:
            raise ConfigError(
                f"SaltAndPepper: need amount <= 1 and 0 <= salt_vs_pepper <= 1, got "
                f"{amount}, {salt_vs_pepper}"
            )
        self.salt_vs_pepper = float(salt_vs_pepper)

    def make_params(self, sample, rng):
        return {"amount": float(rng.uniform(*self.amount)), "seed": int(rng.integers(2**63))}

    def kernel(self, image, params):
        u = _noise_rng(params).random(image.shape[:2], np.float32)
        cut = np.float32(params["amount"] * self.salt_vs_pepper)
        return salt_and_pepper(image, u < cut, (u >= cut) & (u < np.float32(params["amount"])))


@TRANSFORMS.register("jpeg")
class JpegCompression(ImageOp):
    """JPEG artifacts at a quality drawn uniformly from the inclusive ``quality`` range."""

    def __init__(self, quality: int | Sequence[int] = (50, 95), p: float = 1.0) -> None:
        super().__init__(p)
        lo, hi = (int(quality),) * 2 if np.isscalar(quality) else map(int, quality)
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(f"JpegCompression: quality must be in [1, 100], got {quality}")
        self.quality = (lo, hi)

    def make_params(self, sample, rng):
        return {"quality": int(rng.integers(self.quality[0], self.quality[1] + 1))}

    def kernel(self, image, params):
        return jpeg_compress(image, params["quality"])


@TRANSFORMS.register("channel_shuffle")
class ChannelShuffle(ImageOp):
    """Random permutation of the channels (colour-invariance augmentation)."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p)

    def make_params(self, sample, rng):
        return {"order": rng.permutation(sample.image.shape[2]).tolist()}

    def kernel(self, image, params):
        return channel_shuffle(image, params["order"])


@TRANSFORMS.register("clahe")
class CLAHE(ImageOp):
    """CLAHE on lightness with clip limit ~ U(``clip_limit``) (scalar x means U(1, x))."""

    def __init__(
        self,
        clip_limit: Range = 4.0,
        tile_grid_size: Sequence[int] = (8, 8),
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.clip_limit = (1.0, float(clip_limit)) if np.isscalar(clip_limit) else clip_limit
        self.clip_limit = _range(self.clip_limit, "CLAHE", lo=1e-3)
        self.tile_grid_size = (int(tile_grid_size[0]), int(tile_grid_size[1]))

    def make_params(self, sample, rng):
        return {"clip_limit": float(rng.uniform(*self.clip_limit))}

    def kernel(self, image, params):
        return clahe(image, params["clip_limit"], self.tile_grid_size)


TRANSFORMS.register("random_gamma", RandomGamma)
TRANSFORMS.register("to_gray", Grayscale)
