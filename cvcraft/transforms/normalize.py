"""Per-channel dataset statistics and normalization (Z-score, Min-Max, Robust).

``compute_stats`` streams over images once and returns JSON-ready statistics in 0-255
units; ``Normalizer`` (a torch module, run on the device after collate) and ``Normalize``
(a numpy transform on a Sample) turn them into x' = (x - offset) / scale with

- ``zscore``: offset = mean, scale = std                    (unit variance)
- ``minmax``: offset = min, scale = max - min                (maps to [0, 1])
- ``robust``: offset = median, scale = p_high - p_low        (outlier-resistant, e.g. 1/99)

Inputs are in 0-255 units whatever their dtype (uint8, or float holding 0-255 values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.errors import ConfigError, DataError
from cvcraft.structures import Sample
from cvcraft.transforms.base import TRANSFORMS, Params, Transform

MODES = ("zscore", "minmax", "robust")

# torchvision's ImageNet statistics, in 0-255 units (no percentiles: robust mode needs
# compute_stats on your data)
IMAGENET_STATS: dict[str, Any] = {
    "mean": [0.485 * 255, 0.456 * 255, 0.406 * 255],
    "std": [0.229 * 255, 0.224 * 255, 0.225 * 255],
    "min": [0.0, 0.0, 0.0],
    "max": [255.0, 255.0, 255.0],
}


def _percentile_from_hist(hist: np.ndarray, q: np.ndarray) -> np.ndarray:
    """numpy's default ("linear") percentile, computed exactly from value counts.

    hist: (C, 256) counts of values 0..255; q: (P,) in [0, 100] -> (C, P). For N sorted
    values, position v = q/100 * (N-1); result = a[floor v] + frac(v) * (a[floor v + 1] -
    a[floor v]); the value of rank k is the first bin whose cumulative count exceeds k.
    """
    cum = hist.cumsum(axis=1)  # (C, 256)
    n = cum[:, -1:]  # (C, 1)
    pos = q[None, :] / 100.0 * (n - 1)  # (C, P)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo

    def value_at(rank: np.ndarray) -> np.ndarray:
        return np.stack([np.searchsorted(c, r, side="right") for c, r in zip(cum, rank)])

    a_lo, a_hi = value_at(lo), value_at(hi)
    return a_lo + frac * (a_hi - a_lo)


class _RunningStats:
    """Per-channel count/mean/M2 (Chan et al. parallel update, float64), min, max, histogram."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.hist = np.zeros((channels, 256), dtype=np.int64)

    def update(self, image: np.ndarray) -> None:
        x = image.reshape(-1, image.shape[-1])  # (P, C)
        xf = x.astype(np.float64)
        nb = len(x)
        mean_b = xf.mean(axis=0)
        m2_b = ((xf - mean_b) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mean_b - self.mean
        # merging two groups' means and squared deviations is stable where sum(x^2) is not
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2_b + delta**2 * self.n * nb / n
        self.n = n
        self.min = np.minimum(self.min, xf.min(axis=0))
        self.max = np.maximum(self.max, xf.max(axis=0))
        # uint8: exact counts; float: values rounded into the 256 bins (percentiles to ~1 unit)
        codes = x if x.dtype == np.uint8 else np.clip(np.rint(xf), 0, 255).astype(np.int64)
        c = x.shape[1]
        offsets = (np.arange(c) * 256)[None, :]
        self.hist += np.bincount((codes + offsets).ravel(), minlength=256 * c).reshape(c, 256)


def compute_stats(
    images: Iterable[np.ndarray] | Callable[[int], np.ndarray],
    n: int | None = None,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    percentiles: Sequence[float] = (1.0, 99.0),
) -> dict[str, Any]:
    """Per-channel mean, std, min, max, median and percentiles over a stream of HWC images.

    ``images`` is an iterable of images, or a callable ``i -> image`` with ``n`` items; with
    ``max_samples < n`` a seeded random subset of indices is read (an iterable just stops
    after ``max_samples``). Mean/std are exact (float64 running moments, population std);
    min/max are exact; median and percentiles (numpy's linear method) are exact for uint8,
    ~1 unit for float input (256-bin histogram). Returns lists, so ``json.dumps`` works.
    """
    if callable(images):
        if n is None:
            raise ConfigError("compute_stats: pass n (the number of items) with a callable")
        idx = np.arange(n)
        if max_samples is not None and max_samples < n:
            idx = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
        stream: Iterable[np.ndarray] = (images(int(i)) for i in idx)
    else:
        stream = images
    acc: _RunningStats | None = None
    count = 0
    for image in stream:
        if max_samples is not None and count >= max_samples:
            break
        img = np.asarray(image)
        img = img[..., None] if img.ndim == 2 else img
        if img.ndim != 3:
            raise DataError(f"compute_stats: image #{count} has shape {img.shape}; expected HWC")
        if acc is None:
            acc = _RunningStats(img.shape[-1])
        elif img.shape[-1] != len(acc.mean):
            raise DataError(
                f"compute_stats: image #{count} has {img.shape[-1]} channels, the first had "
                f"{len(acc.mean)}; convert all images to the same channel count"
            )
        acc.update(img)
        count += 1
    if acc is None:
        raise DataError("compute_stats: no images were given")
    q = np.array([50.0, *percentiles], dtype=np.float64)
    pct = _percentile_from_hist(acc.hist, q)  # (C, 1 + P)
    return {
        "mean": acc.mean.tolist(),
        "std": np.sqrt(acc.m2 / acc.n).tolist(),
        "min": acc.min.tolist(),
        "max": acc.max.tolist(),
        "median": pct[:, 0].tolist(),
        "p_low": pct[:, 1].tolist(),
        "p_high": pct[:, -1].tolist(),
        "percentiles": [float(p) for p in percentiles],
        "count": count,
        "pixels": int(acc.n),
    }


def resolve_stats(stats: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """``"imagenet"`` -> IMAGENET_STATS; a dict passes through."""
    if isinstance(stats, str):
        if stats.lower() != "imagenet":
            raise ConfigError(f"unknown stats {stats!r}; use 'imagenet' or a compute_stats dict")
        return IMAGENET_STATS
    return stats


def offset_scale(stats: Mapping[str, Any] | str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (offset, scale) of x' = (x - offset) / scale for ``mode``.

    A channel with scale <= 0 (constant data) gets scale 1, so it maps to 0 instead of inf.
    """
    stats = resolve_stats(stats)
    if mode not in MODES:
        raise ConfigError(f"unknown normalization mode {mode!r}; use one of {MODES}")
    need = {"zscore": ["mean", "std"], "minmax": ["min", "max"]}.get(
        mode, ["median", "p_low", "p_high"]
    )
    missing = [k for k in need if k not in stats]
    if missing:
        raise ConfigError(
            f"normalization mode {mode!r} needs stats {missing}; compute them with "
            "cvcraft.transforms.normalize.compute_stats on your training images"
        )
    get = {k: np.asarray(stats[k], dtype=np.float64) for k in need}
    if mode == "zscore":
        offset, scale = get["mean"], get["std"]
    elif mode == "minmax":
        offset, scale = get["min"], get["max"] - get["min"]
    else:
        offset, scale = get["median"], get["p_high"] - get["p_low"]
    return offset, np.where(scale > 0, scale, 1.0)


STATS_SAMPLES = 5000  # images used to estimate a training set's normalization statistics


class Normalizer(nn.Module):
    """Device-side normalization of (N, C, H, W) or (C, H, W) uint8/float batches -> float.

    x' = (x - offset) * (1 / scale) with per-channel buffers, so ``.to(device)`` moves them and
    the uint8 batch from collate is converted and normalized on the GPU in one pass.
    """

    offset: torch.Tensor
    inv_scale: torch.Tensor

    def __init__(self, stats: Mapping[str, Any] | str = "imagenet", mode: str = "zscore"):
        super().__init__()
        offset, scale = offset_scale(stats, mode)
        self.mode = mode
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer(
            "inv_scale", torch.tensor(1.0 / scale, dtype=torch.float32).view(-1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != self.offset.shape[0]:
            raise DataError(
                f"Normalizer: input has {x.shape[-3]} channels (shape {tuple(x.shape)}), the "
                f"stats have {self.offset.shape[0]}; expected (N, C, H, W) or (C, H, W)"
            )
        x = x if x.is_floating_point() else x.float()
        return (x - self.offset) * self.inv_scale

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to 0-255 units: x * scale + offset."""
        return x / self.inv_scale + self.offset

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, channels={self.offset.shape[0]}"


@TRANSFORMS.register("normalize")
class Normalize(Transform):
    """Normalize a Sample's HWC image on the CPU -> float32 (same formula as ``Normalizer``).

    Prefer ``Normalizer`` on the device in training; this is for numpy-only pipelines.
    """

    def __init__(
        self, stats: Mapping[str, Any] | str = "imagenet", mode: str = "zscore", p: float = 1.0
    ):
        super().__init__(p)
        self.stats, self.mode = stats, mode
        offset, scale = offset_scale(stats, mode)
        self._offset = offset.astype(np.float32)
        self._inv_scale = (1.0 / scale).astype(np.float32)

    def apply(self, sample: Sample, params: Params) -> Sample:
        img = sample.image.astype(np.float32)
        return sample.replace(image=(img - self._offset) * self._inv_scale)


def denormalize(
    x: torch.Tensor | np.ndarray, stats: Mapping[str, Any] | str, mode: str = "zscore"
) -> torch.Tensor | np.ndarray:
    """Undo normalization for display: x * scale + offset, in 0-255 units (float).

    Torch tensors are channel-first ((N,) C, H, W); numpy arrays channel-last (H, W, C).
    """
    offset, scale = offset_scale(stats, mode)
    if isinstance(x, torch.Tensor):
        o = torch.as_tensor(offset, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        s = torch.as_tensor(scale, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return x.float() * s + o
    return np.asarray(x, dtype=np.float32) * scale.astype(np.float32) + offset.astype(np.float32)


class Preprocess(nn.Module):
    """uint8 NCHW RGB batch -> float normalized batch (grayscale first if in_chans == 1)."""

    def __init__(self, stats: dict[str, Any] | None, mode: str, in_chans: int) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.norm = Normalizer(stats, mode) if mode != "none" and stats else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.norm is not None:
            x = self.norm(x)
        else:
            x = x / 255.0
        if self.in_chans == 1 and x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)  # after normalization: mean of normalized channels
        return x
