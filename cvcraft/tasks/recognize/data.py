"""Synthetic digit strings composed from MNIST digit images, for the recognition task.

A line is ``min_len..max_len`` random digit images (in training each slightly rotated,
scaled, sheared and shifted when ``jitter``) cropped to their ink columns, placed
left to right with 1-6 px gaps (squeezed to fit when too wide), at a random position on a
black ``imgsz x line_width`` canvas; its label is the digit sequence. The digit *images* are
split once (``val_fraction`` held out, by ``split_seed``), so train and val strings never
share an image. Training strings are drawn anew each epoch from
``default_rng([seed, epoch, index])`` (the platform's per-item generator: the same on resume
and for any worker count); val strings are fixed (epoch 0, ``split_seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cvcraft.data.idx import find_idx_pair, read_idx
from cvcraft.errors import DataError

DIGITS = list("0123456789")


def load_digit_images(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits of ``folder`` (the t10k files, else the train files): uint8 (N, 28, 28)
    white-on-black images and int64 (N,) labels."""
    if not Path(folder).is_dir():
        raise DataError(
            f"data={folder}: no such folder; point data= at a folder with the MNIST IDX files "
            "(t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
        )
    try:
        images, labels = find_idx_pair(folder, "test")
    except DataError:
        images, labels = find_idx_pair(folder, "train")
    data = read_idx(images, labels, classes=DIGITS)
    x = data.images[..., 0] if data.images.ndim == 4 else data.images
    if x.ndim != 3 or (data.labels > 9).any():
        raise DataError(f"{images}: expected (N, H, W) digit images with labels 0-9")
    return np.ascontiguousarray(x), data.labels


def split_digits(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) digit-image indices, seeded; val gets ``val_fraction``."""
    perm = np.random.default_rng([seed, 11]).permutation(n)
    k = max(1, int(round(n * val_fraction)))
    if k >= n:
        raise DataError(f"{n} digit images cannot be split with val_fraction={val_fraction}")
    return np.sort(perm[k:]), np.sort(perm[:k])


def ink_crop(img: np.ndarray) -> np.ndarray:
    """The columns of a digit image that hold ink (all of it if blank)."""
    cols = np.flatnonzero(img.max(0) > 0)
    return img[:, cols[0] : cols[-1] + 1] if cols.size else img


def jitter_digit(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random small affine change of one digit (the classic MNIST augmentation): rotation
    +-10 deg, scale 0.85-1.1, shear +-0.2, vertical shift +-2 px, about the image centre."""
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-10, 10), rng.uniform(0.85, 1.1))
    shear = rng.uniform(-0.2, 0.2)
    m[0, 1] += shear
    m[0, 2] -= shear * h / 2  # shear about the centre row
    m[1, 2] += rng.integers(-2, 3)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def compose_line(
    digits: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    min_len: int,
    max_len: int,
    height: int = 32,
    width: int = 128,
    jitter: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """One line: uint8 (height, width) image of random digits and its label list;
    ``jitter`` moves each digit (:func:`jitter_digit`) before it is placed."""
    k = int(rng.integers(min_len, max_len + 1))
    pick = rng.integers(0, len(digits), size=k)
    imgs = [jitter_digit(digits[i], rng) if jitter else digits[i] for i in pick]
    crops = [ink_crop(d) for d in imgs]
    gaps = rng.integers(1, 7, size=k - 1)
    h = crops[0].shape[0]
    strip = np.zeros((h, sum(c.shape[1] for c in crops) + int(gaps.sum())), np.uint8)
    x = 0
    for c, g in zip(crops, np.append(gaps, 0)):
        strip[:, x : x + c.shape[1]] = np.maximum(strip[:, x : x + c.shape[1]], c)
        x += c.shape[1] + int(g)
    rows = min(height, int(round(h * height / 32)))  # 28 px digits in a 32 px line
    cols = min(width - 2, int(round(strip.shape[1] * rows / h)))
    strip = cv2.resize(strip, (cols, rows), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width), np.uint8)
    y0 = int(rng.integers(0, height - rows + 1))
    x0 = int(rng.integers(0, width - cols + 1))
    canvas[y0 : y0 + rows, x0 : x0 + cols] = strip
    return canvas, [int(labels[i]) for i in pick]


class DigitStrings(torch.utils.data.Dataset):
    """``n`` composed lines over some digit images; items keyed by ``(epoch, index)``.

    ``fixed=True`` (val) ignores the epoch, so the strings are the same every time.
    """

    def __init__(self, digits: np.ndarray, labels: np.ndarray, n: int, seed: int,
                 min_len: int, max_len: int, height: int, width: int,
                 fixed: bool = False, jitter: bool = False) -> None:  # fmt: skip
        self.digits, self.labels, self.n, self.seed = digits, labels, n, seed
        self.min_len, self.max_len, self.height, self.width = min_len, max_len, height, width
        self.fixed, self.jitter = fixed, jitter
        self.classes = DIGITS

    def __len__(self) -> int:
        return self.n

    def line(self, epoch: int, index: int) -> tuple[np.ndarray, list[int]]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else epoch, index, 5])
        return compose_line(self.digits, self.labels, rng, self.min_len, self.max_len,
                            self.height, self.width, self.jitter)  # fmt: skip

    def __getitem__(self, key: Any) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image, label = self.line(int(epoch), int(index))
        return {"image": image, "label": label, "index": int(index)}


@dataclass
class DigitSplits:
    train: DigitStrings
    val: DigitStrings
    classes: list[str]


def load_digit_strings(cfg: Any) -> DigitSplits:
    """Train and val line datasets from ``cfg.data`` with disjoint digit images."""
    digits, labels = load_digit_images(cfg.data)
    # The split and the val lines follow split_seed, not seed: a run with another seed (or a
    # fine-tune of a checkpoint) holds out the same digit images and scores the same lines.
    tr, va = split_digits(len(digits), cfg.val_fraction, cfg.split_seed)
    common = dict(min_len=cfg.min_len, max_len=cfg.max_len, height=cfg.imgsz,
                  width=cfg.line_width)  # fmt: skip
    return DigitSplits(
        train=DigitStrings(
            digits[tr], labels[tr], cfg.train_strings, cfg.seed, jitter=cfg.jitter, **common
        ),  # fmt: skip
        val=DigitStrings(
            digits[va], labels[va], cfg.val_strings, cfg.split_seed, fixed=True, **common
        ),  # fmt: skip
        classes=DIGITS,
    )


def collate_lines(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Lines of one width -> ``images`` uint8 (B, 1, H, W), ``targets`` the concatenated
    labels shifted by one (class 0 is the CTC blank), ``target_lengths``, ``texts``."""
    widths = {it["image"].shape[1] for it in items}
    if len(widths) != 1:
        raise DataError(f"a batch of lines must share one width, got {sorted(widths)}")
    images = torch.from_numpy(np.stack([it["image"] for it in items]))[:, None]
    return {
        "images": images,
        "targets": torch.tensor([c + 1 for it in items for c in it["label"]], dtype=torch.long),
        "target_lengths": torch.tensor([len(it["label"]) for it in items], dtype=torch.long),
        "texts": ["".join(DIGITS[c] for c in it["label"]) for it in items],
        "index": torch.tensor([it["index"] for it in items]),
    }
