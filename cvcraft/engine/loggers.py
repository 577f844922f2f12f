"""TensorBoard logging as a Trainer callback (``tensorboard=true``).

Per epoch: every numeric column of ``metrics.csv`` (train loss and its parts, val metrics,
lr, throughput) as a scalar, and each trainable parameter's values and its gradient at the
epoch's last optimizer step as histograms. Events go to ``<run>/tensorboard``; rank 0 only.
(Not logged: the model graph and example predictions — the tasks' plots/ have those.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cvcraft.engine.optim import unwrap_model


class TensorBoardLogger:
    """Writes a run's scalars and histograms with ``torch.utils.tensorboard``."""

    def __init__(self, folder: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.folder = Path(folder)
        self.grads: dict[str, torch.Tensor] = {}

    def before_optimizer_step(self, trainer: Any, name: str) -> None:
        """Keep the primary model's gradients at the epoch's last optimizer step."""
        last = trainer.micro_step + 1 == trainer.steps_per_epoch * trainer.cfg.accumulate
        if name == "model" and last:
            model = unwrap_model(trainer.model)
            self.grads = {
                n: p.grad.detach().cpu().clone()
                for n, p in model.named_parameters()
                if p.grad is not None
            }

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        step = epoch + 1
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, float(v), step)
        model = unwrap_model(trainer.model)
        for name, p in model.named_parameters():
            if p.requires_grad and p.numel() > 1:
                self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
        for name, g in self.grads.items():
            self.writer.add_histogram(f"grads/{name}", g.float(), step)
        self.writer.flush()

    def on_fit_end(self, trainer: Any, final: dict[str, Any]) -> None:
        self.writer.close()
