"""TensorBoard logging as a Trainer callback (``tensorboard=true``).

Per epoch: every numeric column of ``metrics.csv`` (train loss and its parts, val metrics,
lr, throughput) as a scalar, and each trainable parameter's values and its gradient at the
epoch's last optimizer step as histograms. Once: the model graph, traced on a copy of the
model in eval mode with the first training batch's input (a model the tracer cannot follow
gets a text note instead), and at the end every picture the task drew in ``plots/``
(example predictions, confusion matrix, curves) as images. Events go to
``<run>/tensorboard``; rank 0 only.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvcraft.engine.optim import unwrap_model


class TensorBoardLogger:
    """Writes a run's scalars and histograms with ``torch.utils.tensorboard``."""

    def __init__(self, folder: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.folder = Path(folder)
        self.grads: dict[str, torch.Tensor] = {}
        self.example: tuple[Any, ...] | None = None  # the first training forward's inputs
        self._hook_handle: Any = None
        self.graph_done = False

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Catch the inputs of the first training forward (for the graph)."""
        if self.graph_done or self._hook_handle is not None:
            return

        def catch(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            self.example = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
            self._hook_handle.remove()

        self._hook_handle = unwrap_model(trainer.model).register_forward_pre_hook(catch)

    def _add_graph(self, trainer: Any) -> None:
        """The model graph, traced on an eval-mode copy (BatchNorm statistics untouched)."""
        self.graph_done = True
        if self.example is None:
            return
        model = copy.deepcopy(unwrap_model(trainer.model)).eval()
        try:
            self.writer.add_graph(model, self.example, use_strict_trace=False)
        except Exception as e:  # a forward the tracer cannot follow: say so in the log
            self.writer.add_text("graph", f"model graph not traced: {type(e).__name__}: {e}")
        self.example = None

    def before_optimizer_step(self, trainer: Any, name: str) -> None:
        """Keep the primary model's gradients at the epoch's last optimizer step (and trace
        the graph after the first one)."""
        if not self.graph_done and name == "model":
            self._add_graph(trainer)
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

    def after_plots(self, trainer: Any, final: dict[str, Any]) -> None:
        """Every PNG the task wrote to ``plots/`` as an image at the last epoch's step."""
        import cv2

        step = int(final.get("epochs_run", 0))
        for png in sorted((Path(trainer.out) / "plots").glob("*.png")):
            img = cv2.imread(str(png), cv2.IMREAD_COLOR)
            if img is not None:
                rgb = np.ascontiguousarray(img[..., ::-1])
                self.writer.add_image(f"plots/{png.stem}", rgb, step, dataformats="HWC")
        self.writer.close()
