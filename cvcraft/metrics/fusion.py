"""The image-fusion evaluator: the standard no-reference and source-referenced fusion
metrics averaged over images, in the streaming evaluator protocol.

Per image (grey uint8 sources a = infrared, b = visible luma, fused f): EN, SD, SF, AG of f;
MI = MI(a, f) + MI(b, f); SSIM = (SSIM(a, f) + SSIM(b, f)) / 2; Q^{AB/F};
MSE = (MSE(a, f) + MSE(b, f)) / 2 and PSNR = 10 log10(255^2 / MSE) (lower MSE is better).
The functions are ``cvcraft.metrics.image``'s (one implementation); this file only accumulates them.
The state is per-metric sums and the image count, so ``merge`` is addition and any split of
the images over processes gives the same means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cvcraft.errors import DataError
from cvcraft.metrics.image import (
    average_gradient,
    entropy,
    fusion_mi,
    mse,
    qabf,
    spatial_frequency,
    ssim,
    standard_deviation,
)

FUSION_METRICS = ("en", "sd", "sf", "ag", "mi", "ssim", "qabf", "psnr", "mse")


def fusion_metrics(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    """The seven metrics of one fused image ``f`` of sources ``a``, ``b`` (uint8 HxW each)."""
    for name, x in (("a", a), ("b", b), ("f", f)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2:
            raise DataError(
                f"fusion metrics take uint8 HxW grey images; {name} is "
                f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
            )
    if not a.shape == b.shape == f.shape:
        raise DataError(f"sources {a.shape}, {b.shape} and fused {f.shape} differ in size")
    err = (mse(a, f) + mse(b, f)) / 2
    return {
        "en": entropy(f),
        "sd": standard_deviation(f),
        "sf": spatial_frequency(f),
        "ag": average_gradient(f),
        "mi": fusion_mi(a, b, f),
        "ssim": (ssim(a, f) + ssim(b, f)) / 2,
        "qabf": qabf(a, b, f),
        "psnr": float("inf") if err == 0 else float(10 * np.log10(255.0**2 / err)),
        "mse": err,
    }


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float [0, 1] (..., H, W) tensor -> uint8 numpy, rounded and clipped."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


class FusionEvaluator:
    """Mean fusion metrics over images. ``update(batch, outputs)`` reads ``outputs`` =
    {"fused", "infrared", "visible"}: float (N, 1, H, W) in [0, 1], and optional
    ``"sizes"`` (N, 2) to crop padded images back to (h, w)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(FUSION_METRICS, 0.0)
        self.n = 0

    def add(self, a: np.ndarray, b: np.ndarray, f: np.ndarray) -> None:
        """Accumulate one image's metrics (uint8 HxW arrays)."""
        for k, v in fusion_metrics(a, b, f).items():
            self.sums[k] += v
        self.n += 1

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        f, a, b = (to_uint8(outputs[k][:, 0]) for k in ("fused", "infrared", "visible"))
        sizes = outputs.get("sizes")
        for i in range(len(f)):
            h, w = (int(v) for v in sizes[i]) if sizes is not None else f.shape[1:]
            self.add(a[i, :h, :w], b[i, :h, :w], f[i, :h, :w])

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        for k in FUSION_METRICS:
            self.sums[k] += state["sums"][k]
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v / max(self.n, 1) for k, v in self.sums.items()}
        out["val_images"] = self.n
        return out
