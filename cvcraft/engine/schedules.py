"""Learning-rate schedules stepped per iteration, each a pure function of the step.

A schedule is ``factor(step, total_steps, **kw) -> float``; the lr of every parameter group is
``group["initial_lr"] * factor(step)``, so per-group multipliers (``optim.param_groups``) are
kept. Being pure, a schedule resumes exactly from the step counter alone — no recursive state
to drift (torch's ``CosineAnnealingLR`` is recursive; these use closed forms). The configured
lr is the *peak*: decaying schedules start at it, ``cyclic`` and ``one_cycle`` reach it.

Warmup is composed in front, as ``SequentialLR([LinearLR, main], milestones=[W])`` does: for
``step < W`` the factor rises linearly from ``warmup_start_factor`` towards 1, then the main
schedule runs over the remaining ``total_steps - W`` steps from its own step 0.
Past their end, decaying schedules hold their final value; ``cyclic`` keeps cycling.
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from cvcraft.errors import ConfigError
from cvcraft.registry import Registry

SCHEDULES: Registry[Callable[..., float]] = Registry("lr schedule")


def config_keys(*keys: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Mark which of its keyword arguments a schedule takes from the run config
    (``min_factor`` <- ``min_lr_ratio``, ``step_size``/``milestones`` in epochs, ``gamma``,
    ``power``); the others keep the schedule's own defaults."""

    def mark(fn: Callable[..., float]) -> Callable[..., float]:
        fn.config_keys = keys  # type: ignore[attr-defined]
        return fn

    return mark


@SCHEDULES.register("constant")
def constant_factor(step: int, total_steps: int) -> float:
    """1 everywhere (the lr as configured; useful with warmup only)."""
    return 1.0


@SCHEDULES.register("step")
@config_keys("step_size", "gamma")
def step_factor(step: int, total_steps: int, *, step_size: int, gamma: float = 0.1) -> float:
    """``gamma ** (step // step_size)`` — decay by ``gamma`` every ``step_size`` steps."""
    return gamma ** (step // step_size)


@SCHEDULES.register("multistep")
@config_keys("milestones", "gamma")
def multistep_factor(
    step: int, total_steps: int, *, milestones: Sequence[int], gamma: float = 0.1
) -> float:
    """``gamma ** (number of milestones <= step)`` — decay at each listed step."""
    return gamma ** bisect.bisect_right(sorted(milestones), step)


@SCHEDULES.register("linear")
@config_keys("min_factor")
def linear_factor(
    step: int, total_steps: int, *, min_factor: float = 0.0, start_factor: float = 1.0
) -> float:
    """Straight line from ``start_factor`` at step 0 to the end factor ``min_factor`` at
    ``total_steps`` (``LinearLR(start_factor, end_factor=min_factor, total_iters=T)``)."""
    t = min(step, total_steps) / total_steps
    return start_factor + (min_factor - start_factor) * t


@SCHEDULES.register("cosine")
@config_keys("min_factor")
def cosine_factor(step: int, total_steps: int, *, min_factor: float = 0.0) -> float:
    """Half cosine from 1 to ``min_factor``: ``m + (1 - m) * (1 + cos(pi * t / T)) / 2``
    (SGDR without restarts; the closed form of ``CosineAnnealingLR(T_max=T, eta_min=m*lr)``)."""
    t = min(step, total_steps) / total_steps
    return min_factor + (1.0 - min_factor) * (1.0 + math.cos(math.pi * t)) / 2.0


@SCHEDULES.register("cosine_restarts")
@config_keys("min_factor", "cycles")
def cosine_restarts_factor(
    step: int, total_steps: int, *, cycles: int = 1, min_factor: float = 0.0
) -> float:
    """SGDR with equal cycles (Loshchilov & Hutter 2017), the schedule of snapshot ensembles
    (Huang et al. 2017): ``cycles`` half cosines of L = ceil(T / cycles) steps, each from 1 to
    ``min_factor``, ``m + (1 - m) * (1 + cos(pi * (t mod L) / L)) / 2``; the closed form of
    ``CosineAnnealingWarmRestarts(T_0=L, eta_min=m*lr)``. Past the end it holds the last step."""
    if cycles < 1:
        raise ConfigError(f"cosine_restarts: cycles={cycles} must be >= 1")
    length = math.ceil(total_steps / cycles)
    t = (min(step, total_steps - 1) % length) / length
    return min_factor + (1.0 - min_factor) * (1.0 + math.cos(math.pi * t)) / 2.0


@SCHEDULES.register("poly")
@config_keys("power")
def poly_factor(
    step: int, total_steps: int, *, power: float = 1.0, min_factor: float = 0.0
) -> float:
    """``m + (1 - m) * (1 - t/T) ** power`` (DeepLab's "poly"; ``PolynomialLR`` when m = 0)."""
    t = min(step, total_steps) / total_steps
    return min_factor + (1.0 - min_factor) * (1.0 - t) ** power


@SCHEDULES.register("cyclic")
def cyclic_factor(
    step: int,
    total_steps: int,
    *,
    min_factor: float = 0.1,
    step_size_up: int | None = None,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> float:
    """Cyclical LR (Smith 2017) between ``min_factor`` and 1, starting at the bottom.

    One cycle = ``step_size_up`` steps up + ``step_size_down`` down (default: two cycles over
    ``total_steps``, symmetric). The amplitude is scaled per ``mode``: ``triangular`` 1,
    ``triangular2`` halves every cycle, ``exp_range`` ``gamma ** step``. Equals torch's
    ``CyclicLR(base_lr=min_factor*lr, max_lr=lr)`` with ``cycle_momentum=False``.
    """
    up = step_size_up if step_size_up is not None else max(1, total_steps // 4)
    down = step_size_down if step_size_down is not None else up
    size = up + down
    ratio = up / size
    cycle = math.floor(1 + step / size)
    x = 1.0 + step / size - cycle  # position within the cycle, in [0, 1)
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if mode == "triangular":
        scale = 1.0
    elif mode == "triangular2":
        scale = 1.0 / 2.0 ** (cycle - 1)
    elif mode == "exp_range":
        scale = gamma**step
    else:
        raise ConfigError(f"cyclic mode {mode!r} unknown; use triangular, triangular2, exp_range")
    return min_factor + (1.0 - min_factor) * height * scale


@SCHEDULES.register("one_cycle")
def one_cycle_factor(
    step: int,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """One-cycle (Smith & Topin 2018): from ``1/div_factor`` up to 1 over the first
    ``pct_start`` of training, then down to ``1/(div_factor*final_div_factor)``.

    ``anneal`` is ``"cos"`` or ``"linear"``. Phase boundaries follow torch's ``OneCycleLR``
    (up phase ends at step ``pct_start*T - 1``, down phase at ``T - 1``) so the two agree
    step for step; the momentum cycling of ``OneCycleLR`` is not done here.
    """
    if anneal not in ("cos", "linear"):
        raise ConfigError(f"one_cycle anneal {anneal!r} unknown; use 'cos' or 'linear'")
    start = 1.0 / div_factor
    end = start / final_div_factor
    up_end = pct_start * total_steps - 1.0
    down_end = total_steps - 1.0
    if up_end <= 0 or down_end <= up_end:
        raise ConfigError(
            f"one_cycle needs pct_start*total_steps > 1 and pct_start < 1 - 1/total_steps; got "
            f"pct_start={pct_start}, total_steps={total_steps}"
        )
    step = min(step, total_steps - 1)
    if step <= up_end:
        a, b, pct = start, 1.0, step / up_end
    else:
        a, b, pct = 1.0, end, (step - up_end) / (down_end - up_end)
    if anneal == "cos":
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    return a + (b - a) * pct


def warmup_factor(step: int, warmup_steps: int, start_factor: float) -> float:
    """Linear warmup ``s + (1 - s) * step / W`` (``LinearLR(start_factor=s, total_iters=W)``)."""
    return start_factor + (1.0 - start_factor) * min(step, warmup_steps) / warmup_steps


def _with_warmup(
    main: Callable[[int], float], warmup_steps: int, start_factor: float, step: int
) -> float:
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps, start_factor)
    return main(step - warmup_steps)


def make_lr_factor(
    name: str,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.1,
    **kw: Any,
) -> Callable[[int], float]:
    """The pure ``step -> factor`` function for schedule ``name`` with warmup composed in front.

    Keyword arguments are checked against the schedule's signature now, so a typo in a config
    fails before training starts.
    """
    fn = SCHEDULES.get(name)
    try:
        inspect.signature(fn).bind(0, 1, **kw)
    except TypeError as e:
        params = [p for p in inspect.signature(fn).parameters if p not in ("step", "total_steps")]
        raise ConfigError(
            f"schedule {name!r}: bad arguments {sorted(kw)} ({e}); it accepts {params}"
        ) from None
    if warmup_steps < 0 or total_steps <= warmup_steps:
        raise ConfigError(
            f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, "
            f"total_steps={total_steps}"
        )
    if not 0.0 <= warmup_start_factor <= 1.0:
        raise ConfigError(f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}")
    main = partial(fn, total_steps=total_steps - warmup_steps, **kw)
    main(0)  # surface value errors (bad mode, ...) at build time
    if warmup_steps == 0:
        return main
    return partial(_with_warmup, main, warmup_steps, warmup_start_factor)


class Scheduler:
    """Sets ``lr = initial_lr * lr_factor(step)`` in every optimizer group.

    Call ``step()`` once after each ``optimizer.step()``. The state is just the step counter,
    so ``load_state_dict`` continues the sequence exactly. Groups without ``initial_lr``
    (an optimizer not built by ``build_optimizer``) get their current lr recorded as it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr_factor: Callable[[int], float]):
        self.optimizer = optimizer
        self.lr_factor = lr_factor
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        f = self.lr_factor(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def step(self) -> None:
        """Advance one iteration and set the new lr."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The lr of each group as last set."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.1,
    **kw: Any,
) -> Scheduler:
    """A ``Scheduler`` for registered schedule ``name`` over ``total_steps`` iterations.

    ``warmup_steps`` linear warmup steps come first, starting at ``warmup_start_factor``
    (0.1: small enough to tame the first large updates of a fresh net, large enough that
    the first steps still learn; ultralytics uses 0.1 for bias groups, torch's LinearLR 1/3).
    ``**kw`` go to the schedule (``step_size``, ``milestones``, ``gamma``, ``min_factor``,
    ``power``, ``mode``, ``pct_start``, ``div_factor``, ...).
    """
    fn = make_lr_factor(
        name, total_steps, warmup_steps=warmup_steps, warmup_start_factor=warmup_start_factor, **kw
    )
    return Scheduler(optimizer, fn)
