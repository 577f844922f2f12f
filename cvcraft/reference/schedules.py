"""Learning-rate schedules as closed forms of the step number t (0-based).

- step:          ``lr0 gamma^floor(t / s)``
- multistep:     ``lr0 gamma^(number of milestones <= t)``
- exponential:   ``lr0 gamma^t``
- cosine:        ``lr_min + (lr0 - lr_min) (1 + cos(pi t / T)) / 2`` (SGDR without restarts;
  held at lr_min after T, where torch's recursive form would rise again)
- warm restarts: the cosine restarted at the end of each period, period ``T_i = T0 mult^i``
- polynomial:    ``lr0 (1 - min(t, T) / T)^power``
- linear warmup: ``lr0 (s + (1 - s) min(t, W) / W)``, then the main schedule from its step 0
- one-cycle:     cosine from ``lr_max / div`` up to ``lr_max`` over ``pct T`` steps, then
  down to ``lr_max / (div final_div)`` (Smith & Topin 2018)
Why warm up: with Adam/large batches the first updates use poor curvature estimates; a
small lr for the first W steps avoids the early divergence (Goyal et al. 2017).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from cvcraft.errors import ConfigError


def step_lr(t: int, lr0: float, step_size: int, gamma: float = 0.1) -> float:
    """Decay by ``gamma`` every ``step_size`` steps."""
    return lr0 * gamma ** (t // step_size)


def multistep_lr(t: int, lr0: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """Decay by ``gamma`` at each milestone."""
    return lr0 * gamma ** bisect.bisect_right(sorted(milestones), t)


def exponential_lr(t: int, lr0: float, gamma: float) -> float:
    """Decay by ``gamma`` every step."""
    return lr0 * gamma**t


def cosine_lr(t: int, lr0: float, total: int, lr_min: float = 0.0) -> float:
    """Half a cosine from ``lr0`` at t = 0 to ``lr_min`` at t = ``total``."""
    return lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * min(t, total) / total)) / 2


def cosine_restarts_lr(t: int, lr0: float, t0: int, mult: int = 1, lr_min: float = 0.0) -> float:
    """SGDR (Loshchilov & Hutter 2017): cosine over periods t0, t0 mult, t0 mult^2, ..."""
    period, start = t0, 0
    while t >= start + period:  # find the period t falls in
        start += period
        period *= mult
    return lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * (t - start) / period)) / 2


def polynomial_lr(t: int, lr0: float, total: int, power: float = 1.0) -> float:
    """``lr0 (1 - t / T)^power``, 0 from t = T on (DeepLab's "poly")."""
    return lr0 * (1 - min(t, total) / total) ** power


def warmup(
    main: Callable[[int], float], t: int, lr0: float, steps: int, start_factor: float = 0.1
) -> float:
    """Linear warmup from ``start_factor lr0`` to ``lr0`` over ``steps``, then ``main(t - W)``."""
    if steps < 1:
        raise ConfigError(f"warmup steps={steps} must be >= 1")
    if t < steps:
        return lr0 * (start_factor + (1 - start_factor) * t / steps)
    return main(t - steps)


def one_cycle_lr(
    t: int,
    lr_max: float,
    total: int,
    pct_start: float = 0.3,
    div: float = 25.0,
    final_div: float = 1e4,
) -> float:
    """One-cycle with cosine annealing; the phase boundaries of torch's ``OneCycleLR``
    (the peak at step ``pct T - 1``, the end at ``T - 1``)."""
    lo, end = lr_max / div, lr_max / (div * final_div)
    peak = pct_start * total - 1
    if peak <= 0:
        raise ConfigError(f"one_cycle needs pct_start * total > 1, got {pct_start} * {total}")
    cos = lambda a, b, x: b + (a - b) * (1 + math.cos(math.pi * x)) / 2  # noqa: E731
    if t <= peak:
        return cos(lo, lr_max, t / peak)
    return cos(lr_max, end, (t - peak) / (total - 1 - peak))
