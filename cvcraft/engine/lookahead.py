"""Lookahead on a schedule: every ``every`` optimizer steps the weights are pulled into a
slow average and replaced by it (Zhang et al. 2019, Lookahead; airbench's variant, whose
pull strength grows over training as a cube, so early training runs free and the end of
training is averaged heavily).

Update at step ``t`` (a multiple of ``every``), for every float tensor of the state dict:
``slow = d(t) * slow + (1 - d(t)) * fast; fast = slow`` with ``d(t) = base * (t / T)^power``.
At the last step ``T`` the weights become the slow average (``d = 1``). Frozen parameters
are left as they are. Unlike the EMA
(engine/ema.py), which only *evaluates* an average, this *trains from* it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvcraft.engine.optim import unwrap_model
from cvcraft.errors import ConfigError


def lookahead_decay(step: int, total: int, base: float = 0.95**5, power: float = 3.0) -> float:
    """``base * (step / total) ** power``: the slow weights' share at ``step`` of ``total``."""
    return base * (min(step, total) / total) ** power


class Lookahead:
    """The slow weights of one model; also a Trainer callback (``on_epoch_start``,
    ``after_step``) that updates every ``every`` optimizer steps and finishes at
    ``total_steps`` (default: the run's steps per epoch x epochs). Its slow weights are saved
    in ``last.pt`` (``state_key``), so a resumed run pulls toward the same average."""

    state_key = "lookahead"

    def __init__(
        self,
        every: int = 5,
        base: float = 0.95**5,
        power: float = 3.0,
        total_steps: int | None = None,
    ) -> None:
        if every < 1:
            raise ConfigError(f"lookahead every={every} must be >= 1")
        if not 0.0 <= base <= 1.0:
            raise ConfigError(f"lookahead base decay={base} must be in [0, 1]")
        self.every, self.base, self.power, self.total = int(every), base, power, total_steps
        self.slow: dict[str, torch.Tensor] | None = None

    def reset(self, model: nn.Module) -> None:
        """Start the slow weights at the model's current ones."""
        state = unwrap_model(model).state_dict()
        self.slow = {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """``slow <- lerp(slow, fast, 1 - decay)``, then ``fast <- slow``."""
        if self.slow is None:
            self.reset(model)
        assert self.slow is not None
        bare = unwrap_model(model)
        state = bare.state_dict()
        for k, v in self.slow.items():  # restored from a checkpoint read onto the CPU
            if v.device != state[k].device:
                self.slow[k] = v.to(state[k].device)
        # a frozen parameter (requires_grad off, e.g. a whitening stem after its k epochs)
        # stays exactly where it is: its slow copy follows it instead of pulling it back
        frozen = {n for n, p in bare.named_parameters() if not p.requires_grad}
        keys = [k for k in self.slow if k not in frozen]
        fast, slow = [state[k] for k in keys], [self.slow[k] for k in keys]
        if keys:
            torch._foreach_lerp_(slow, fast, 1.0 - decay)
            torch._foreach_copy_(fast, slow)
        for k in frozen & self.slow.keys():
            self.slow[k].copy_(state[k])

    def step(self, model: nn.Module, step: int, total: int) -> None:
        """What happens after optimizer step ``step`` (1-based) of ``total``."""
        if step % self.every == 0:
            self.update(model, lookahead_decay(step, total, self.base, self.power))
        if step == total:
            self.update(model, 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        slow = state.get("slow")
        self.slow = None if slow is None else {k: v.clone() for k, v in slow.items()}

    # -- Trainer callback
    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if self.slow is None:  # after the trainer loaded weights / moved the model
            self.reset(trainer.model)

    def after_step(self, trainer: Any, i: int) -> None:
        if not trainer.step_now:
            return
        total = self.total or trainer.steps_per_epoch * trainer.cfg.epochs
        self.step(trainer.model, trainer.global_step, total)
