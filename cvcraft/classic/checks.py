"""Argument checks shared by the classic ops: one clear error for a bad image or parameter.

Images are numpy arrays HxW (grey) or HxWxC (C = 1, 3 or 4), uint8 or float32/float64
(float images are expected in [0, 1] unless a function says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cvcraft.errors import ConfigError, DataError

IMAGE_DTYPES = (np.uint8, np.float32, np.float64)

BORDERS = {
    "reflect101": cv2.BORDER_REFLECT_101,  # gfedcb|abcdefgh|gfedcba (OpenCV's default)
    "reflect": cv2.BORDER_REFLECT,  # fedcba|abcdefgh|hgfedcb
    "replicate": cv2.BORDER_REPLICATE,  # aaaaaa|abcdefgh|hhhhhhh
    "constant": cv2.BORDER_CONSTANT,  # 000000|abcdefgh|0000000
}


def check_image(
    image: object,
    name: str = "image",
    *,
    channels: Sequence[int] = (1, 3, 4),
    dtypes: Sequence[type] = IMAGE_DTYPES,
) -> np.ndarray:
    """Return ``image`` as an ndarray after checking its type, rank, size, channels and dtype."""
    if not isinstance(image, np.ndarray):
        raise DataError(f"{name} must be a numpy array (HxW or HxWxC), got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise DataError(f"{name} must be HxW or HxWxC, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {image.shape}); pass an image with pixels")
    c = 1 if image.ndim == 2 else image.shape[2]
    if c not in channels:
        raise DataError(
            f"{name} has {c} channels (shape {image.shape}); this op takes "
            f"{' or '.join(map(str, channels))}"
        )
    if image.dtype.type not in dtypes:
        raise DataError(
            f"{name} has dtype {image.dtype}; this op takes "
            f"{', '.join(np.dtype(d).name for d in dtypes)} (convert with .astype)"
        )
    return image


def check_gray(image: object, name: str = "image", **kw: object) -> np.ndarray:
    """A single-channel image as HxW (an HxWx1 array is squeezed)."""
    img = check_image(image, name, channels=(1,), **kw)  # type: ignore[arg-type]
    return img[..., 0] if img.ndim == 3 else img


def to_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """HxW grey from grey, RGB or RGBA (BT.601 luma: 0.299 R + 0.587 G + 0.114 B)."""
    img = check_image(image, name)
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    code = cv2.COLOR_RGB2GRAY if img.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
    return cv2.cvtColor(img, code)


def check_ksize(k: object, name: str = "ksize", *, odd: bool = True, minimum: int = 1) -> int:
    """A kernel size: a positive int, odd when ``odd``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"{name} must be an int, got {k!r}")
    k = int(k)
    if k < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {k}")
    if odd and k % 2 == 0:
        raise ConfigError(f"{name} must be odd (the kernel needs a centre pixel), got {k}")
    return k


def check_positive(x: object, name: str, *, strict: bool = True) -> float:
    """A real number > 0 (or >= 0 when not ``strict``)."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v) or v < 0 or (strict and v == 0):
        raise ConfigError(f"{name} must be {'> 0' if strict else '>= 0'}, got {x!r}")
    return v


def border_flag(border: str) -> int:
    """OpenCV border flag from a name in ``BORDERS``."""
    try:
        return BORDERS[border]
    except KeyError:
        raise ConfigError(
            f"unknown border {border!r}; choose one of {', '.join(BORDERS)}"
        ) from None


def choice(value: str, name: str, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``, else a ConfigError naming them."""
    if value not in options:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(options)}")
    return value
