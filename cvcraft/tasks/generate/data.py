"""The ``generate`` task's data: every image held in memory as one uint8 tensor (N, C, H, W).

A generative model reads each image many times and small sets (MNIST's 10,000 digits,
synthetic shapes) fit in memory, so the images are read once, resized to ``imgsz`` and kept;
batches are index lookups. Grey data (every image R = G = B, e.g. MNIST) becomes 1 channel.
An MNIST-style IDX folder with only the ``t10k`` files (the shared copy) is used as
training data, split into train/val by ``val_fraction``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from cvcraft.data import load_classification
from cvcraft.data.classification import ClassificationData
from cvcraft.data.idx import find_idx_pair, read_idx
from cvcraft.data.shapes import make_shapes
from cvcraft.errors import DataError


@dataclass
class ImageSplits:
    """Train/val images (N, C, H, W) uint8 with labels (N,) int64 and the class names."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])


def _sources(data: str, imgsz: int, seed: int, val_fraction: float) -> tuple[Any, Any, list]:
    """(train, val, classes) ClassificationData for ``data``."""
    m = re.fullmatch(r"shapes(?::(\d+))?", data)
    if m and not os.path.exists(data):
        n = int(m.group(1) or 2000)
        train = make_shapes(n, imgsz, seed, "train")
        return train, make_shapes(max(1, n // 5), imgsz, seed, "val"), train.classes
    if os.path.isdir(data) and not os.path.isdir(os.path.join(data, "train")):
        for split in ("train", "test"):  # an IDX folder: its train files, else its t10k ones
            try:
                images, labels = find_idx_pair(data, split)
            except DataError:
                continue
            full = read_idx(images, labels)
            order = np.random.default_rng([seed, 11]).permutation(len(full))
            n_val = max(1, int(len(full) * val_fraction))
            return (
                full.subset(np.sort(order[n_val:])),
                full.subset(np.sort(order[:n_val])),
                full.classes,
            )
    splits = load_classification(data, val_fraction=val_fraction, seed=seed, imgsz_hint=imgsz)
    return splits.train, splits.val, list(splits.classes)


def to_tensor(data: ClassificationData, imgsz: int) -> torch.Tensor:
    """Every image of ``data`` as uint8 (N, 3, imgsz, imgsz) (area-resized when it shrinks)."""
    if len(data) == 0:
        raise DataError(f"{data!r} has no images")
    out = np.empty((len(data), imgsz, imgsz, 3), np.uint8)
    for i in range(len(data)):
        img = data.load_image(i)
        if img.shape[:2] != (imgsz, imgsz):
            shrink = img.shape[0] > imgsz or img.shape[1] > imgsz
            img = cv2.resize(
                img, (imgsz, imgsz), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[i] = img
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def is_grey(images: torch.Tensor) -> bool:
    """Whether every image (N, 3, H, W) has R = G = B."""
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


def load_image_splits(
    data: str,
    imgsz: int,
    *,
    channels: str = "auto",
    seed: int = 0,
    val_fraction: float = 0.1,
    need_channels: int | None = None,
) -> ImageSplits:
    """Read ``data`` into memory at ``imgsz``; ``channels`` "1"/"3"/"auto" (grey data -> 1).

    ``need_channels`` (a checkpoint's) must match what the data gives: a grey model is not
    silently fed colour images converted to grey, nor the reverse (DataError).
    """
    train_src, val_src, classes = _sources(str(data), imgsz, seed, val_fraction)
    train, val = to_tensor(train_src, imgsz), to_tensor(val_src, imgsz)
    grey = is_grey(train) and is_grey(val)
    c = (1 if grey else 3) if channels == "auto" else int(channels)
    if c == 1 and not grey:
        raise DataError(f"{data}: channels=1 asked, but the images are colour; use channels=3")
    if need_channels is not None and need_channels != c:
        kind = {1: "grey (1 channel)", 3: "RGB (3 channels)"}
        raise DataError(
            f"{data} has {kind[c]} images, but the checkpoint was trained on "
            f"{kind[need_channels]} images; use data of the kind it was trained on"
        )
    if c == 1:
        train, val = train[:, :1].contiguous(), val[:, :1].contiguous()
    return ImageSplits(
        train,
        torch.as_tensor(np.asarray(train_src.labels), dtype=torch.int64),
        val,
        torch.as_tensor(np.asarray(val_src.labels), dtype=torch.int64),
        list(classes),
    )


class InMemoryImages(torch.utils.data.Dataset):
    """Items keyed by ``(epoch, index)`` (the platform's sampler): image, label, index."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Any) -> int:
        return int(key[1])

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """{"images": uint8 (B, C, H, W), "labels": int64 (B,), "index": int64 (B,)}."""
        idx = torch.tensor(indices, dtype=torch.int64)
        return {"images": self.images[idx], "labels": self.labels[idx], "index": idx}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator's tanh range): x / 127.5 - 1."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clamped and rounded."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
