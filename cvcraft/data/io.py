"""The one image decoder and encoder of the data pipeline.

``read_image`` turns any common image file into uint8 (H, W, 3) **RGB**, so every reader
and transform downstream sees one layout:

- 16-bit -> 8-bit by ``round(v / 257)`` (65535 = 255 * 257, so 0 -> 0 and 65535 -> 255);
- grayscale -> 3 equal channels;
- RGBA / gray+alpha -> the alpha channel is **dropped** (the colour stored under a
  transparent pixel is kept), as PIL's ``convert("RGB")`` and torchvision's default loader do;
- float images (some TIFFs) are taken as [0, 1] and scaled to [0, 255].

EXIF orientation is *not* applied (pixels in stored order), again like torchvision's loader.
The pixel count is read from the header *before* decoding so a decompression bomb is
refused cheaply; anything missing, empty, truncated or undecodable raises ``DataError``
naming the file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cvcraft.errors import ConfigError, DataError

# PIL refuses images above twice its MAX_IMAGE_PIXELS (89,478,485) as decompression bombs;
# we use the same number so a file PIL would refuse is refused here too, with a clear message.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "CVCRAFT_MAX_PIXELS"  # raises (or lowers) the limit for every command


def default_max_pixels() -> int:
    """The pixel limit an image may have: ``CVCRAFT_MAX_PIXELS`` if set, else Pillow's
    decompression-bomb threshold (``DEFAULT_MAX_PIXELS``)."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise ConfigError(f"{MAX_PIXELS_ENV}={value!r} must be a number of pixels") from None
    if limit < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={value!r} must be a positive number of pixels")
    return limit


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends with one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header without decoding pixels; None if PIL can't identify.

    ``Image.open`` is lazy: it parses only the header. PIL raises its own bomb error above
    2 x MAX_IMAGE_PIXELS; its message carries the pixel count, which we recover so the
    caller's ``max_pixels`` (not PIL's) decides.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:
        m = _BOMB_PIXELS.search(str(e))
        n = int(m.group(1)) if m else DEFAULT_MAX_PIXELS + 1
        return (n, 1)  # only the product matters to the caller
    except Exception:  # unidentified / exotic format: let OpenCV try (it has its own limit)
        return None


def _jpeg_truncated(data: bytes) -> bool:
    """A JPEG whose last scan (SOS, FFDA) is not followed by end-of-image (FFD9).

    Entropy-coded data stuffs every 0xFF with 0x00, so FFDA/FFD9 only occur as markers.
    Some decoders silently grey-fill a truncated file; this catches it first.
    """
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_overrun(data: bytes) -> str | None:
    """The first PNG chunk whose declared length runs past the end of the data, or None.

    A chunk is ``length (4, big-endian) + type (4) + data + CRC (4)``. OpenCV 5 sizes its
    read buffer from the declared length before checking it against the input, so a
    102-byte file declaring a 1.4 GB IDAT makes it allocate and fill that much for ~2 s
    (found by the long fuzz run). Walking the chunk headers costs one unpack per chunk.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, end = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if length > 2**31 - 1 or pos + 12 + length > end:
            shown = kind.decode("latin1") if kind.isalpha() else kind.hex()
            return f"chunk {shown} at byte {pos} declares {length} bytes, {end - pos - 12} remain"
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # round(v / 257) exactly, in integers: (v * 255 + 32767) // 65535
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype.kind == "f":
        return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {img.dtype}")


def decode_image(
    data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes to uint8 (H, W, 3) RGB; see ``read_image`` for the rules."""
    if len(data) == 0:
        raise DataError(f"{name}: file is empty (0 bytes); re-download or remove it")
    size = _header_size(data)
    if max_pixels == DEFAULT_MAX_PIXELS:  # not chosen by the caller: the user's limit, if set
        max_pixels = default_max_pixels()
    if size is not None and size[0] * size[1] > max_pixels:
        w, h = size
        dims = f"{w} x {h} = {w * h}" if h > 1 else f"{w}"
        raise DataError(
            f"{name}: image is {dims} pixels, above the limit of {max_pixels}"
            f" (a possible decompression bomb); if you trust the file, raise the limit with"
            f" the environment variable {MAX_PIXELS_ENV}={w * h}"
        )
    overrun = _png_overrun(data)
    if overrun is not None:
        raise DataError(f"{name}: PNG is truncated or corrupt ({overrun}); re-create it")
    if _jpeg_truncated(data):
        raise DataError(f"{name}: JPEG is truncated (no end-of-image marker); re-download it")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(f"{name}: not a decodable image (corrupt, truncated or unknown format)")
    try:
        img = _to_uint8(img)
    except ValueError as e:
        raise DataError(f"{name}: {e}; convert it to 8- or 16-bit") from None
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha: drop alpha
        return cv2.cvtColor(np.ascontiguousarray(img[..., 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:  # BGRA: drop alpha
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{name}: {channels}-channel image is not supported; save it as RGB")


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB; raise ``DataError`` naming the file if not.

    Bytes are read with numpy and decoded by OpenCV (``IMREAD_UNCHANGED``), which works on
    any path (non-ASCII too) and releases the GIL, so a thread pool decodes in parallel.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not an image file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read file ({e.strerror or e})") from None
    return decode_image(data, name=name, max_pixels=max_pixels)


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write uint8 RGB (H, W, 3), RGBA (H, W, 4) or gray (H, W) to ``path``; format from suffix.

    Parent folders are created. Encoding goes through ``cv2.imencode`` so non-ASCII paths work.
    """
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise DataError(
            f"{name}: cannot write {ext or 'no'} extension; use one of {sorted(IMAGE_EXTENSIONS)}"
        )
    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{name}: write_image needs uint8 or uint16 pixels, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    elif not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)):
        raise DataError(f"{name}: cannot write an image of shape {img.shape}")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise DataError(f"{name}: OpenCV could not encode the image as {ext}")
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(name)


def list_images(source: str | Path) -> list[Path]:
    """The image files ``source`` names: itself if a file, else every image under the folder
    (any depth, sorted); DataError if there are none."""
    p = Path(source)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {p}")
        return files
    raise DataError(f"source={source}: no such file or folder")
