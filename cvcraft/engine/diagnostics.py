"""Training diagnostics as a Trainer callback (``diagnose=true``).

At every optimizer step it records each layer's gradient norm (the L2 norm over the layer's
parameters, the "gradient flow"); forward hooks on every ReLU-family activation record the
fraction of outputs that are exactly zero (dead units) and the mean and std of activations.
At the end of each epoch it adds ``dead_relu`` (the largest dead fraction of any layer) and
``grad_norm`` (the total) to the epoch's row and warns, naming the layer, when a layer's
gradient vanishes (< ``vanish``), explodes (> ``explode``), or a ReLU layer is almost
entirely dead (> ``dead`` of its outputs zero). ``plots/gradient_flow.png`` shows the mean
gradient norm per layer at the end of the run. A non-finite loss already stops the run
with the step named (``Trainer.backward``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvcraft.engine.optim import unwrap_model

RELUS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU)


class Diagnostics:
    """Gradient flow, dead ReLUs and activation statistics of one model."""

    def __init__(
        self, model: nn.Module, vanish: float = 1e-7, explode: float = 1e3, dead: float = 0.95
    ) -> None:
        self.vanish, self.explode, self.dead = vanish, explode, dead
        self.grad_sq: dict[str, list[float]] = defaultdict(list)
        self.act: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        self.warnings: list[str] = []
        for name, m in unwrap_model(model).named_modules():
            if isinstance(m, RELUS):
                m.register_forward_hook(self._act_hook(name))

    def _act_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
            if module.training and isinstance(out, torch.Tensor):
                o = out.detach().float()
                self.act[name].append(
                    (float((o == 0).float().mean()), float(o.mean()), float(o.std()))
                )

        return hook

    @staticmethod
    def layer_of(param_name: str) -> str:
        """``layer1.0.conv1.weight`` -> ``layer1.0.conv1`` (a layer's parameters together)."""
        return param_name.rsplit(".", 1)[0] if "." in param_name else param_name

    def before_optimizer_step(self, trainer: Any, name: str) -> None:
        if name != "model":
            return
        sq: dict[str, float] = defaultdict(float)
        for pname, p in unwrap_model(trainer.model).named_parameters():
            if p.grad is not None:
                sq[self.layer_of(pname)] += float(p.grad.detach().float().pow(2).sum())
        for layer, v in sq.items():
            self.grad_sq[layer].append(v)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer: mean gradient norm, and for activations the dead fraction/mean/std."""
        out: dict[str, dict[str, float]] = {}
        for layer, vals in self.grad_sq.items():
            out.setdefault(layer, {})["grad_norm"] = sum(v**0.5 for v in vals) / len(vals)
        for layer, vals in self.act.items():
            n = len(vals)
            d = out.setdefault(layer, {})
            d["dead"] = sum(v[0] for v in vals) / n
            d["act_mean"] = sum(v[1] for v in vals) / n
            d["act_std"] = sum(v[2] for v in vals) / n
        return out

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        s = self.summary()
        grads = {k: v["grad_norm"] for k, v in s.items() if "grad_norm" in v}
        deads = {k: v["dead"] for k, v in s.items() if "dead" in v}
        if grads:
            row["grad_norm"] = sum(g * g for g in grads.values()) ** 0.5
        if deads:
            row["dead_relu"] = max(deads.values())
        for layer, g in grads.items():
            if g < self.vanish:
                self._warn(trainer, f"epoch {epoch + 1}: gradient vanishes in {layer} ({g:.2e})")
            elif g > self.explode:
                self._warn(trainer, f"epoch {epoch + 1}: gradient explodes in {layer} ({g:.2e})")
        for layer, d in deads.items():
            if d > self.dead:
                self._warn(trainer, f"epoch {epoch + 1}: {d:.0%} of {layer}'s outputs are dead")
        self.last = s
        self.grad_sq.clear()
        self.act.clear()

    def _warn(self, trainer: Any, msg: str) -> None:
        self.warnings.append(msg)
        trainer.log(f"diagnose: {msg}")

    def on_fit_end(self, trainer: Any, final: dict[str, Any]) -> None:
        from cvcraft.engine.distributed import is_main_process

        if not is_main_process() or not hasattr(self, "last"):
            return
        out = Path(trainer.out)
        (out / "diagnostics.json").write_text(
            json.dumps({"layers": self.last, "warnings": self.warnings}, indent=1)
        )
        if trainer.cfg.plots:
            plot_gradient_flow(self.last, out / "plots" / "gradient_flow.png")


def plot_gradient_flow(summary: dict[str, dict[str, float]], path: Path) -> None:
    """Bar chart of each layer's mean gradient norm (log scale), input side first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [k for k, v in summary.items() if "grad_norm" in v]
    vals = [max(summary[k]["grad_norm"], 1e-12) for k in layers]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(layers)), 4))
    ax.bar(range(len(layers)), vals)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=6)
    ax.set_ylabel("mean gradient norm")
    ax.set_title("gradient flow")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
