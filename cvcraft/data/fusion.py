"""Infrared-visible image pairs for image fusion: two aligned folders, or synthetic pairs.

``load_fusion(data)`` accepts:

- ``"synthetic"`` / ``"synthetic:N"``: N generated aligned pairs (the embedded default: no
  download), each a textured visible scene and an infrared view of the same scene in which a
  few "warm" objects glow and the texture is faint;
- a folder with ``infrared/`` and ``visible/`` sub-folders holding files of the same relative
  name (the layout of RoadScene, TNO, MSRS): a file without its partner, or a pair whose
  sizes differ, is a ``DataError`` naming the file.

A sample is the visible image (uint8 HWC RGB) with the infrared image as
``extras["infrared"]`` (uint8 HxW grey), a registered ``image`` target, so every geometric
transform (crop, flip, resize, affine) moves the pair together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cvcraft.data.io import IMAGE_EXTENSIONS, read_image
from cvcraft.errors import DataError
from cvcraft.structures import Sample, register_target

INFRARED = "infrared"
register_target(INFRARED, "image")

ACCEPTED = "'synthetic' or 'synthetic:N'; a folder with infrared/ and visible/ sub-folders"


class FusionData:
    """Aligned (visible, infrared) pairs: ``classes`` (none), ``len``, ``sample``, ``subset``."""

    classes: list[str] = []

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, i: int) -> Sample:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"pair {i}"

    def subset(self, indices: Sequence[int] | np.ndarray) -> SubsetFusionData:
        return SubsetFusionData(self, np.asarray(indices, dtype=np.int64))


class SubsetFusionData(FusionData):
    """Some pairs of another ``FusionData`` (after the held-out split or ``fraction``)."""

    def __init__(self, base: FusionData, indices: np.ndarray) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, i: int) -> Sample:
        s = self.base.sample(int(self.indices[i]))
        s.meta["index"] = i
        return s

    def describe(self, i: int) -> str:
        return self.base.describe(int(self.indices[i]))


def _grey(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 luma (H, W) (BT.601, as OpenCV)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class PairFolderData(FusionData):
    """Pairs read from ``infrared/`` and ``visible/`` files of the same relative name."""

    def __init__(self, infrared: list[str], visible: list[str]) -> None:
        self.infrared, self.visible = infrared, visible

    def __len__(self) -> int:
        return len(self.visible)

    def describe(self, i: int) -> str:
        return self.visible[i]

    def sample(self, i: int) -> Sample:
        vis = read_image(self.visible[i])
        ir = _grey(read_image(self.infrared[i]))
        if ir.shape != vis.shape[:2]:
            raise DataError(
                f"{self.infrared[i]}: infrared image is {ir.shape[1]}x{ir.shape[0]} but its "
                f"visible partner {self.visible[i]} is {vis.shape[1]}x{vis.shape[0]}; fusion "
                "needs registered pairs of one size (resize or crop them together first)"
            )
        meta = {"path": self.visible[i], "infrared_path": self.infrared[i],
                "orig_size": vis.shape[:2], "index": i}  # fmt: skip
        return Sample(image=vis, meta=meta, extras={INFRARED: ir})


def _files(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return {str(p.relative_to(folder).with_suffix("")): str(p) for p in files}


def pair_fusion_folders(root: str | Path) -> PairFolderData:
    """The pairs under ``root/infrared`` and ``root/visible``, matched by relative path
    without extension. Any file without its partner is an error naming it."""
    root = Path(root)
    dirs = {k: root / k for k in (INFRARED, "visible")}
    for k, d in dirs.items():
        if not d.is_dir():
            raise DataError(f"{d}: {k} folder not found; fusion data needs {ACCEPTED}")
    ir, vis = _files(dirs[INFRARED]), _files(dirs["visible"])
    for have, other, name in ((ir, vis, "visible"), (vis, ir, INFRARED)):
        lone = sorted(set(have) - set(other))
        if lone:
            raise DataError(
                f"{have[lone[0]]} has no {name} partner (no {dirs[name] / lone[0]}.*); "
                f"{len(lone)} file(s) are unpaired: pairs need the same file name in both folders"
            )
    if not vis:
        raise DataError(f"{root}: no images in {dirs['visible']} and {dirs[INFRARED]}")
    keys = sorted(vis)
    return PairFolderData([ir[k] for k in keys], [vis[k] for k in keys])


class SyntheticPairs(FusionData):
    """Generated aligned pairs of ``size`` x ``size``; pair i is fixed by (seed, i).

    Visible: a smooth random background, a few rectangles of random colour and a fine
    texture (detail the infrared lacks). Infrared: a dim blurred copy of the scene's luma
    plus 1-3 bright Gaussian "warm" blobs (targets the visible image barely shows).
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0) -> None:
        self.n, self.size, self.seed = int(n), int(size), int(seed)

    def __len__(self) -> int:
        return self.n

    def describe(self, i: int) -> str:
        return f"synthetic[{i}]"

    def sample(self, i: int) -> Sample:
        s = self.size
        rng = np.random.default_rng([self.seed, 17, i])
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        base = 60 + 80 * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1)) ** 2
        vis = np.repeat(base[..., None], 3, 2) + rng.uniform(0, 40, 3)
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = rng.integers(0, s - 4, 2)
            w, h = rng.integers(4, s // 2, 2)
            vis[y0 : y0 + h, x0 : x0 + w] = rng.uniform(30, 230, 3)
        vis += rng.normal(0, 12, (s, s, 1))  # texture: visible-only detail
        vis = np.clip(vis, 0, 255).astype(np.uint8)
        ir = 0.4 * cv2.GaussianBlur(_grey(vis).astype(np.float32), (0, 0), 2.0)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0.1, 0.9, 2)
            r = rng.uniform(0.04, 0.12)
            ir += rng.uniform(120, 200) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        ir = np.clip(ir, 0, 255).astype(np.uint8)
        meta = {"path": self.describe(i), "orig_size": (s, s), "index": i}
        return Sample(image=vis, meta=meta, extras={INFRARED: ir})


@dataclass
class FusionSplits:
    """Train and held-out pairs; fusion has no classes (``classes`` is empty)."""

    train: FusionData
    val: FusionData
    classes: list[str] = field(default_factory=list)
    source: str = ""


def split_pairs(data: FusionData, val_fraction: float, seed: int) -> tuple[FusionData, FusionData]:
    """A seeded random held-out split (at least one pair on each side)."""
    n = len(data)
    if n < 2:
        raise DataError(f"{n} pair(s) cannot be split into train and val; add pairs")
    order = np.random.default_rng([seed, 3]).permutation(n)
    k = min(n - 1, max(1, round(n * val_fraction)))
    return data.subset(np.sort(order[k:])), data.subset(np.sort(order[:k]))


def load_fusion(
    data: str, val_fraction: float = 0.2, seed: int = 0, imgsz: int = 64
) -> FusionSplits:
    """The pairs ``data`` names, split into train and held-out val (see the module doc)."""
    m = re.fullmatch(r"synthetic(?::(\d+))?", str(data))
    if m:
        n = int(m.group(1) or 200)
        full: FusionData = SyntheticPairs(n + max(1, round(n * val_fraction)), imgsz, seed)
        k = len(full) - n  # the last pairs are the held-out ones
        return FusionSplits(full.subset(np.arange(n)), full.subset(np.arange(n, n + k)),
                            source="synthetic")  # fmt: skip
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data={data}: not a fusion dataset; use {ACCEPTED}")
    train, val = split_pairs(pair_fusion_folders(root), val_fraction, seed)
    return FusionSplits(train, val, source=str(root))
