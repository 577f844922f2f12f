"""One evaluation loop for every task, and the evaluator protocol it drives.

An evaluator accumulates what it needs batch by batch and computes its metrics at the end:
``reset() / update(batch, outputs) / state_dict() / merge(state) / compute() -> dict``.
``run_evaluation`` owns everything around it once: eval mode (restored afterwards), no
autograd, autocast, and the DDP reduction (each rank evaluates its shard; the evaluators'
states are gathered and merged in rank order, so every rank returns the numbers a single
process would have computed on the whole val set).

Autograd is off with ``torch.no_grad`` rather than ``torch.inference_mode``: several models
cache tensors (anchor grids, strides) built during a forward, and an inference tensor cached
at validation would break the next training step's backward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from cvcraft.engine.device import autocast
from cvcraft.engine.distributed import all_gather_object, is_main_process, world_size

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; kept optional for plugins
    tqdm = None  # type: ignore[assignment]


class Evaluator(Protocol):
    """Streaming metrics: accumulate per batch, mergeable across processes."""

    def reset(self) -> None: ...
    def update(self, batch: Any, outputs: Any) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def merge(self, state: dict[str, Any]) -> None: ...
    def compute(self) -> dict[str, Any]: ...


class MetricsWithLoss:
    """An evaluator made of a streaming metrics object (``self.metrics``: reset/update/
    state_dict/merge/compute) plus a summed loss and its count, reported as ``val_loss``.
    Subclasses set ``self.metrics`` before calling ``reset()`` and write ``update``."""

    metrics: Any

    def reset(self) -> None:
        self.metrics.reset()
        self.loss_sum, self.n = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics.state_dict(), "loss_sum": self.loss_sum, "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        self.metrics.merge(state["metrics"])
        self.loss_sum += state["loss_sum"]
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        out = self.metrics.compute()
        out["val_loss"] = self.loss_sum / max(self.n, 1)
        return out


def merge_across_ranks(evaluators: Sequence[Evaluator]) -> None:
    """Under DDP, replace each evaluator's state by the merge of every rank's (rank order)."""
    if world_size() <= 1:
        return
    states = all_gather_object([e.state_dict() for e in evaluators])
    for k, e in enumerate(evaluators):
        e.reset()
        for per_rank in states:
            e.merge(per_rank[k])


@torch.no_grad()
def run_evaluation(
    model: nn.Module,
    loader: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any],
    evaluators: Sequence[Evaluator],
    *,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` over ``loader``: ``outputs = forward(model, batch)`` under autocast,
    then ``update(batch, outputs)`` on every evaluator; merged across DDP ranks; the union
    of the evaluators' ``compute()`` dicts (later evaluators win on a shared key).
    ``progress`` shows a bar on the main process (validation can take as long as an epoch)."""
    was_training = model.training
    model.eval()
    for e in evaluators:
        e.reset()
    bar = None
    if progress and tqdm is not None and is_main_process():
        total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
        bar = tqdm(total=total, desc="val", leave=False)
    try:
        for batch in loader:
            with autocast(device, amp):
                outputs = forward(model, batch)
            for e in evaluators:
                e.update(batch, outputs)
            if bar is not None:
                bar.update(1)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    merge_across_ranks(evaluators)
    out: dict[str, Any] = {}
    for e in evaluators:
        out.update(e.compute())
    return out
