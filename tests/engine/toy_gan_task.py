"""A two-model, two-optimizer toy task (a GAN on 2-D points), registered as a plugin.

It exercises what the platform promises a GAN or a distillation task: a second model with
its own optimizer and schedule, EMA on one model only, an overridden ``train_step`` that
alternates discriminator and generator steps, exact resume, and DDP. Import it through
``CVCRAFT_TASKS=toy_gan_task`` (with this folder on ``PYTHONPATH``) so CLI runs and torchrun
workers register it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data.loader import build_loader
from cvcraft.engine import distributed
from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.engine.trainer import ModelPart
from cvcraft.tasks.base import BaseTask
from cvcraft.tasks.registry import TaskSpec, get_task, register_task


@dataclass
class ToyGanConfig(TrainConfig):
    data: str = _opt("ring", "unused: the points are generated")
    model: str = _opt("mlp_gan", "unused: the two MLPs are fixed")
    points: int = _opt(256, "number of real 2-D points")
    noise_dim: int = _opt(4, "generator input size")
    d_lr: float = _opt(0.002, "discriminator learning rate")
    batch: int = _opt(32, "batch size")
    epochs: int = _opt(3, "epochs")
    optimizer: str = _opt("adam", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = _opt(0.001, "generator learning rate")
    momentum: float = _opt(0.5, "Adam beta1")
    warmup_epochs: float = _opt(0.0, "warmup")
    weight_decay: float = _opt(0.0, "weight decay")
    ema: bool = _opt(True, "EMA of the generator")
    ema_tau: float = _opt(0.0, "no EMA warmup")
    workers: int = _opt(0, "workers")
    progress: bool = _opt(False, "bars")
    plots: bool = _opt(False, "plots")


class RingPoints(torch.utils.data.Dataset):
    """Points on a ring of radius 2 with noise; item i is fixed by (seed, i)."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 3])
        angle = rng.uniform(0, 2 * np.pi, n)
        self.x = np.stack([2 * np.cos(angle), 2 * np.sin(angle)], 1).astype(np.float32)
        self.x += rng.normal(0, 0.05, self.x.shape).astype(np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        _, index = key
        return {"x": torch.from_numpy(self.x[index]), "index": index}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([it["x"] for it in items]),
            "index": torch.tensor([it["index"] for it in items])}  # fmt: skip


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers[:-1])


class ToyGanTask(BaseTask):
    name = "toygan"

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        self.device = trainer.device
        self.classes = ["real"]
        self.check_resume(trainer)
        trainer.train_loader = build_loader(
            RingPoints(cfg.points, cfg.seed), cfg.batch, shuffle=True, seed=cfg.seed,
            drop_last=True, collate_fn=collate,
        )  # fmt: skip
        self.val_loader = build_loader(
            RingPoints(64, cfg.seed + 1), 32, shuffle=False, seed=cfg.seed, collate_fn=collate
        )
        torch.manual_seed(cfg.seed)
        trainer.model = mlp([cfg.noise_dim, 32, 32, 2]).to(self.device)  # the generator
        disc = mlp([2, 32, 32, 1]).to(self.device)
        # the discriminator: its own learning rate, plain Adam betas, no EMA
        trainer.extra_parts["disc"] = ModelPart(disc, optimizer={"lr": cfg.d_lr}, ema=False)
        self.bce = nn.BCEWithLogitsLoss()

    def noise(self, ctx: Any, n: int) -> torch.Tensor:
        """The global batch's noise keyed by (seed, step), this rank's slice of it: the same
        after a resume, and R ranks together draw what one process would."""
        world, r = distributed.world_size(), distributed.rank()
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + ctx.global_step)
        z = torch.randn(n * world, self.cfg.noise_dim, generator=g)
        return z[r * n : (r + 1) * n].to(self.device)

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> tuple[float, int]:
        real = batch["x"].to(self.device)
        n = real.shape[0]
        gen, disc = ctx.model, ctx.part("disc").model
        z = self.noise(ctx, n)
        # discriminator step: real -> 1, fake (detached) -> 0, in one forward
        with torch.no_grad():
            fake = gen(z)
        logits = disc(torch.cat([real, fake]))
        target = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).to(self.device)
        d_loss = self.bce(logits, target)
        ctx.backward(d_loss)
        ctx.step("disc")
        # generator step: fool the discriminator (its gradients are zeroed after)
        g_loss = self.bce(disc(gen(z)), torch.ones(n, 1, device=self.device))
        value = ctx.backward(g_loss)
        ctx.step("model")
        ctx.part("disc").opt.zero_grad(set_to_none=True)
        return value, n

    def eval_forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # one noise vector per val item, so any sharding of the val set sees the same points
        z = [
            torch.randn(self.cfg.noise_dim, generator=torch.Generator().manual_seed(int(i)))
            for i in batch["index"]
        ]
        return model(torch.stack(z).to(self.device))

    def build_evaluators(self) -> dict[str, Any]:
        return {"ring": RingError()}


class RingError:
    """Mean |radius - 2| of generated points (lower is better) and their count."""

    def reset(self) -> None:
        self.sum, self.n = 0.0, 0

    def update(self, batch: Any, outputs: torch.Tensor) -> None:
        self.sum += float((outputs.norm(dim=1) - 2).abs().sum())
        self.n += int(outputs.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        self.sum += state["sum"]
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        return {"ring_error": self.sum / max(self.n, 1), "val_points": self.n}


try:
    get_task("toygan")
except Exception:  # not registered yet (the registry refuses a second registration)
    register_task(
        TaskSpec(
            name="toygan",
            config=ToyGanConfig,
            task_class="toy_gan_task:ToyGanTask",
            help="a two-model toy (GAN on 2-D points) for the platform's tests",
            monitor="ring_error",
            monitor_mode="min",
            summary_keys=("ring_error",),
        )
    )
