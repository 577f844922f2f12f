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
        self._match: tuple | None = None  # (model, param pairs, buffer pairs), see _pairs

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
        floats_dst, floats_src, ints = self._pairs(unwrap_model(model))
        for dst, src in ints:
            dst.copy_(src)
        if floats_dst:
            # lerp(ema, p, 1-d) = ema + (1-d)(p - ema) = d*ema + (1-d)*p; one fused call.
            torch._foreach_lerp_(floats_dst, floats_src, 1.0 - d)

    def _pairs(self, model: nn.Module) -> tuple[list, list, list]:
        """(EMA floats, model floats, [(EMA int, model int)]), matched by name.

        ``state_dict()`` (or walking ``named_parameters``) on every step cost a small
        detector's training ~1 s per epoch, so the matching is done once per model: parameters
        are kept as the ``Parameter`` objects (``model.to()`` swaps their data in place),
        buffers as (owning module, name) and looked up each step (``to()`` and user code
        replace buffer tensors).
        """
        if self._match is None or self._match[0] is not model:
            self._match = (model, *self._build_match(model))
        _, params, buffers = self._match
        floats_dst = [d for d, _ in params]
        floats_src = [s.detach() for _, s in params]
        ints = []
        for (dm, dn), (sm, sn) in buffers:
            dst, src = dm._buffers[dn], sm._buffers[sn]
            if dst is None or src is None:
                continue
            if dst.dtype.is_floating_point:
                floats_dst.append(dst)
                floats_src.append(src if src.dtype == dst.dtype else src.to(dst.dtype))
            else:
                ints.append((dst, src))
        return floats_dst, floats_src, ints

    def _build_match(self, model: nn.Module) -> tuple[list, list]:
        def buffers(m: nn.Module) -> dict[str, tuple[nn.Module, str]]:
            return {
                f"{prefix}.{name}" if prefix else name: (mod, name)
                for prefix, mod in m.named_modules()
                for name in mod._buffers
            }

        sp, dp = dict(model.named_parameters()), dict(self.module.named_parameters())
        sb, db = buffers(model), buffers(self.module)
        if sp.keys() != dp.keys() or sb.keys() != db.keys():
            raise ValueError("ModelEMA.update: model keys differ from the averaged copy's")
        return [(dp[k], sp[k]) for k in dp], [(db[k], sb[k]) for k in db]

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
