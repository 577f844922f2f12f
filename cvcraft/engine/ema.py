"""Exponential moving average of model weights (Polyak averaging) for evaluation.

The averaged weights sit in a flatter region of the loss than the last iterate and usually
evaluate better. Update: ``ema = d * ema + (1 - d) * param`` for every float parameter and
buffer (BN running stats included); integer buffers (``num_batches_tracked``) are copied.

Warmup (as in ultralytics/YOLOv5): early on the EMA would be dominated by the random init, so
the decay ramps up with the number of EMA updates ``u``: ``d(u) = decay * (1 - exp(-u / tau))``.
With ``tau = 2000`` the effective decay is ~0.63*decay after 2000 updates and ~decay after
~10,000. ``warmup_tau=None`` uses ``d = decay`` from the start.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from cvcraft.engine.optim import unwrap_model


class ModelEMA:
    """Keeps ``self.module``, an eval-mode deep copy of the model holding the averaged weights.

    ``every`` > 1 updates the average only on every ``every``-th call to ``update`` (cheaper);
    the decay is per *EMA update*, so the horizon in optimizer steps is ``every`` times longer.
    DDP/DataParallel wrappers are unwrapped (the average lives on the bare model).
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.9999,
        warmup_tau: float | None = 2000.0,
        every: int = 1,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"EMA every must be >= 1, got {every}")
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.warmup_tau = warmup_tau
        self.every = every
        self.updates = 0  # EMA updates applied (drives the warmup)
        self.calls = 0  # calls to update(), for ``every``

    def current_decay(self, updates: int | None = None) -> float:
        """``decay * (1 - exp(-updates / tau))`` (or ``decay`` without warmup)."""
        u = self.updates if updates is None else updates
        if self.warmup_tau is None:
            return self.decay
        return self.decay * (1.0 - math.exp(-u / self.warmup_tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after ``optimizer.step()``)."""
        self.calls += 1
        if self.calls % self.every:
            return
        self.updates += 1
        d = self.current_decay()
        src = unwrap_model(model).state_dict()
        dst = self.module.state_dict()
        if src.keys() != dst.keys():
            raise ValueError("ModelEMA.update: model keys differ from the averaged copy's")
        floats_dst, floats_src = [], []
        for k, v in dst.items():
            s = src[k].detach()
            if v.dtype.is_floating_point:
                floats_dst.append(v)
                floats_src.append(s.to(v.dtype))
            else:
                v.copy_(s)
        if floats_dst:
            # lerp(ema, p, 1-d) = ema + (1-d)(p - ema) = d*ema + (1-d)*p; one fused call.
            torch._foreach_lerp_(floats_dst, floats_src, 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights plus counters, so a resume continues the warmup where it was."""
        return {
            "module": self.module.state_dict(),
            "updates": self.updates,
            "calls": self.calls,
            "decay": self.decay,
            "warmup_tau": self.warmup_tau,
            "every": self.every,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.calls = int(state.get("calls", self.updates * self.every))
