"""The training engine: one loop for every task.

The train paradigm per iteration is zero_grad -> forward -> loss -> backward -> step (with
gradient accumulation, clipping, AMP, EMA and a per-iteration LR schedule around it); the
eval paradigm is eval mode + no_grad. What differs between tasks (data, model, loss,
metrics, plots) lives in a ``Task`` object (``engine/classify.py``); the Trainer owns the
run folder, checkpoints, resume, early stopping and logging.

Exact resume: checkpoints are written at the end of every epoch with the model, optimizer,
schedule, EMA, history and torch RNG state. Data order and augmentation depend only on
(seed, epoch, index), so a run resumed at epoch k replays epochs k+1.. exactly as the
uninterrupted run would have.

DDP (under torchrun, see ``engine/distributed.py``): every rank runs this same loop on its
shard of each batch (``build_loader`` shards by rank; ``batch`` is the global batch). The
model is wrapped in ``DistributedDataParallel`` after the task builds it; gradients are
all-reduced only on the last micro-batch of an accumulation group (``no_sync`` before);
evaluation runs on the bare model with the task's evaluator reducing across ranks. Only
rank 0 prints, writes ``metrics.csv``, checkpoints and plots; checkpoints hold the bare
model's weights (no ``module.`` prefix). After a torchrun elastic restart the workers
resume from the run's last valid checkpoint by themselves.

Determinism: with ``deterministic=true`` the wall-clock columns (``train_ips``,
``epoch_time``) go to ``timing.csv`` instead of ``metrics.csv``, so two runs write
bit-identical ``metrics.csv`` files.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cvcraft.data.loader import EpochSampler
from cvcraft.engine.checkpoint import (
    load_checkpoint,
    load_latest_valid,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cvcraft.engine.config import TrainConfig, config_to_dict, metric_direction, save_config
from cvcraft.engine.device import autocast, seed_everything, select_device, set_deterministic
from cvcraft.engine.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    distributed_device,
    elastic_restart_count,
    init_distributed,
    is_main_process,
    world_size,
    wrap_model,
    write_launch_result,
)
from cvcraft.engine.ema import ModelEMA
from cvcraft.engine.finetune import load_finetune_weights
from cvcraft.engine.optim import build_optimizer, freeze, freeze_bn_stats, unwrap_model
from cvcraft.engine.regularization import clip_gradients, l1_penalty, l2_penalty
from cvcraft.engine.schedules import SCHEDULES, build_scheduler
from cvcraft.engine.threads import set_threads
from cvcraft.errors import CheckpointError, ConfigError, TrainingError
from cvcraft.nn.init import init_weights
from cvcraft.registry import did_you_mean

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None  # type: ignore[assignment]


class Task(Protocol):
    """What the Trainer needs from a task (``cvcraft.tasks.base.BaseTask`` implements it).

    ``setup`` builds data, loaders and ``trainer.model`` (the primary model, on
    ``trainer.device``) and may declare more models in ``trainer.extra_parts``;
    ``train_step(batch, ctx)`` runs one (micro-)batch with the Trainer as ``ctx`` and returns
    ``(loss value, items)``; ``evaluate(model)`` returns metrics. Hooks (all optional):
    ``on_epoch_start(trainer, epoch)``, ``on_epoch_end(trainer, epoch, row)``,
    ``before_step(trainer, i)``, ``after_step(trainer, i)``.
    """

    name: str
    monitor: str  # default metric for best.pt and early stopping
    monitor_mode: str  # "max" or "min"

    def setup(self, trainer: Trainer) -> None: ...
    def train_step(self, batch: Any, ctx: Trainer) -> tuple[float, int]: ...
    def evaluate(self, model: nn.Module) -> dict[str, Any]: ...
    def checkpoint_meta(self) -> dict[str, Any]: ...
    def finish(self, trainer: Trainer, model: nn.Module, metrics: dict[str, Any]) -> None: ...


@dataclass
class ModelPart:
    """A model the task trains (or holds frozen) beside the primary one.

    ``optimizer`` overrides the config's optimizer keys for this model (``optimizer``,
    ``lr``, ``weight_decay``, ``momentum``, ``betas``, ...); ``train=False`` is a frozen
    model (a distillation teacher): no optimizer, always in eval mode, not checkpointed.
    ``ema=None`` follows the config's ``ema``. Filled in by the Trainer: the optimizer, its
    schedule and the EMA.
    """

    model: nn.Module
    train: bool = True
    optimizer: dict[str, Any] = field(default_factory=dict)
    ema: bool | None = None
    opt: Any = None
    scheduler: Any = None
    ema_model: ModelEMA | None = None


def scaled_lr(lr: float, cfg: TrainConfig) -> float:
    """The LR-batch scaling rule (Goyal et al. 2017): ``lr`` is given for ``base_batch``
    images per optimizer step; ``lr_scale=linear`` multiplies it by ``batch * accumulate /
    base_batch``, ``sqrt`` by that ratio's square root (Adam-family practice), ``none``
    leaves it."""
    mode = getattr(cfg, "lr_scale", "none")
    if mode == "none":
        return lr
    ratio = cfg.batch * cfg.accumulate / cfg.base_batch
    return lr * (ratio if mode == "linear" else math.sqrt(ratio))


def schedule_kwargs(cfg: TrainConfig, name: str, steps_per_epoch: int) -> dict[str, Any]:
    """The config values schedule ``name`` declared it takes (``schedules.config_keys``);
    epochs become iterations (every schedule steps per iteration)."""
    from_cfg = {
        "min_factor": lambda: cfg.min_lr_ratio,
        "step_size": lambda: max(1, round(cfg.step_size * steps_per_epoch)),
        "milestones": lambda: [round(m * steps_per_epoch) for m in cfg.milestones],
        "gamma": lambda: cfg.gamma,
        "power": lambda: cfg.power,
        "cycles": lambda: snapshot_cycles(cfg),
    }
    wanted = getattr(SCHEDULES.get(name), "config_keys", ())
    return {k: from_cfg[k]() for k in wanted}


def snapshot_cycles(cfg: TrainConfig) -> int:
    """``cycles`` of ``schedule=cosine_restarts``, checked to end on epoch boundaries (each
    cycle's end is a snapshot checkpoint): ``epochs`` a multiple of it, no warmup."""
    cycles = int(getattr(cfg, "cycles", 1))
    if cycles > 1 and (cfg.epochs % cycles or cfg.warmup_epochs):
        raise ConfigError(
            f"cycles={cycles}: epochs={cfg.epochs} must be a multiple of cycles and "
            f"warmup_epochs=0 (got {cfg.warmup_epochs}), so every cycle ends with an epoch"
        )
    return cycles


def snapshot_cycle(cfg: TrainConfig, epoch: int) -> int | None:
    """The cycle (0-based) that ``epoch`` ends under ``schedule=cosine_restarts cycles>1``
    (snapshot ensembles save it), else None."""
    cycles = int(getattr(cfg, "cycles", 1))
    if cfg.schedule != "cosine_restarts" or cycles < 2:
        return None
    per = cfg.epochs // cycles
    return (epoch + 1) // per - 1 if (epoch + 1) % per == 0 else None


def resolve_run_dir(task: str, cfg: TrainConfig, *, root: str | Path = "runs") -> Path:
    """``out`` if given; else runs/<task>/<name>, numbered (name2, name3, ...) if taken.

    With ``resume=true`` and no ``out``, the newest runs/<task>/<name>* holding a checkpoint
    is reused (a folder left by a command that failed before its first epoch is skipped).
    """
    if cfg.out:
        return Path(cfg.out)
    base = Path(root) / task
    candidates = [base / cfg.name] + [base / f"{cfg.name}{i}" for i in range(2, 10_000)]
    if cfg.resume:
        existing = [p for p in candidates[:1000] if p.exists()]
        if not existing:
            raise ConfigError(f"resume=true but no run folder {base / cfg.name}* exists; pass out=")
        started = [p for p in existing if (p / "last.pt").exists() or (p / "last.prev.pt").exists()]
        return (started or existing)[-1]
    for p in candidates:
        if not p.exists():
            return p
    raise ConfigError(f"too many runs named {cfg.name!r} under {base}; pick another name=")


def ensure_writable(folder: Path) -> None:
    """Create the folder and prove it is writable before any work starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(
            f"run folder {folder} is not writable ({e.strerror}); choose another with out=DIR"
        ) from None


# the files that make a folder a run: writing a new run over them would destroy the old one
# (a config.yaml alone is a run that failed before its first epoch: nothing to lose)
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "metrics.json")


def claim_run_dir(folder: Path, exist_ok: bool, log: Any = print, keep: str = "") -> None:
    """Refuse a folder that already holds a run unless ``exist_ok``; with ``exist_ok`` the old
    run's checkpoints and metrics are removed first, so no file of it stays mixed in (a later
    resume would otherwise pick up its ``last.prev.pt``)."""
    found = [n for n in RUN_FILES if (folder / n).exists()]
    if not found:
        return
    if not exist_ok:
        raise ConfigError(
            f"out={folder} already holds a run ({', '.join(found)}); pass resume=true to "
            "continue it, exist_ok=true to replace it, or choose another out="
        )
    stale = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.name in RUN_FILES or p.name.startswith(("last.", "best.", "timing.csv")))
    ]
    if keep and any(p.resolve() == Path(keep).resolve() for p in stale):
        raise ConfigError(
            f"weights={keep} is a file of the run exist_ok=true would replace; copy it out "
            "first or choose another out="
        )
    for p in stale:
        p.unlink()
    log(f"exist_ok=true: replaced the run in {folder} ({len(stale)} files removed)")


def check_resume_classes(trainer: Any, classes: list[str]) -> dict[str, Any] | None:
    """The trainer's resume state (None on a fresh run), after checking it was trained on
    the same ``classes`` as the data now given; CheckpointError otherwise."""
    resume = getattr(trainer, "resume_state", None)
    if resume is not None and resume.get("classes") != classes:
        raise CheckpointError(
            f"the checkpoint in {trainer.out} was trained on classes {resume.get('classes')}, "
            f"the data has {classes}; resume with the same data="
        )
    return resume


def weights_of(state: dict[str, Any]) -> dict[str, Any]:
    """The weights to use from a checkpoint: its EMA if it has one, else the raw model's.

    A bare state_dict (e.g. torchvision's) is returned unchanged.
    """
    if "model" not in state:
        return state
    return state["ema"] if state.get("ema") is not None else state["model"]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


TIMING_COLUMNS = ("train_ips", "epoch_time")  # wall-clock: differ between identical runs
# Fault injection for reliability tests (RELIABILITY.md): SIGKILL rank 0 right after epoch N's
# checkpoint, on a run's first attempt only (a torchrun restart then finishes the run).
FAULT_ENV = "CVCRAFT_FAULT_KILL_AFTER_EPOCH"


def inject_fault(epoch: int) -> None:
    """Kill this process (rank 0, first attempt) when ``CVCRAFT_FAULT_KILL_AFTER_EPOCH`` is
    ``epoch + 1``: a crash at the worst ordinary moment, right after a checkpoint."""
    at = os.environ.get(FAULT_ENV, "")
    if at.isdigit() and int(at) == epoch + 1 and elastic_restart_count() == 0:
        if is_main_process():
            os.kill(os.getpid(), signal.SIGKILL)


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV atomically (so a crash never leaves a half row)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_atomic(path, buf.getvalue())


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Tell a loader which epoch it serves (the order and augmentation depend on it)."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    for holder in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        for s in (holder, getattr(holder, "sampler", None)):
            if isinstance(s, EpochSampler) or hasattr(s, "set_epoch"):
                s.set_epoch(epoch)  # type: ignore[union-attr]
                return


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float


class Trainer:
    """Runs ``cfg.epochs`` epochs of ``task`` and writes the run folder.

    Use: ``Trainer(task, cfg).fit()`` -> final metrics dict. The Trainer is also the context
    a task's ``train_step(batch, ctx)`` works with: ``ctx.model`` / ``ctx.part(name)``,
    ``ctx.autocast()``, ``ctx.backward(loss, part)``, ``ctx.step(part)``, ``ctx.step_now``,
    ``ctx.epoch``, ``ctx.global_step``.
    """

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        out_dir: str | Path | None = None,
        callbacks: list[Any] | None = None,
    ) -> None:
        self.task = task
        # objects with any of the task hooks (on_epoch_start/end, before/after_step, and
        # on_fit_end(trainer, final)): loggers, diagnostics, a tuner's pruning
        self.callbacks: list[Any] = list(callbacks or [])
        self.cfg = cfg
        self.device = distributed_device(select_device(cfg.device))
        self.distributed = init_distributed(self.device)
        # torchrun restarted the workers after a crash: continue the run already started
        self.auto_resume = elastic_restart_count() > 0 and not cfg.resume
        if out_dir:
            out = Path(out_dir)
        elif is_main_process():
            find = cfg
            if self.auto_resume:
                find = copy.copy(cfg)
                find.resume = True
            out = resolve_run_dir(task.name, find)
        else:
            out = None
        # rank 0 picks the folder (a numbered name must not differ between ranks)
        self.out = Path(broadcast_object(str(out) if out is not None else None))
        self.history: list[dict[str, Any]] = []
        self.monitor = cfg.monitor or task.monitor
        self.monitor_mode = monitor_direction(task, cfg, self.monitor)
        self.best_fitness = -math.inf if self.monitor_mode == "max" else math.inf
        self.best_epoch = -1
        self.start_epoch = 0
        self.global_step = 0
        self.epoch = 0
        self.step_now = True
        self.model: nn.Module
        self.extra_parts: dict[str, ModelPart] = {}
        # optimizer keys the task sets for the primary model (a GAN generator's Adam betas)
        self.primary_optimizer: dict[str, Any] = {}
        self.train_loader: Any = None
        self.steps_per_epoch = 0

    @property
    def module(self) -> nn.Module:
        """The bare model (inside the DDP wrapper when there is one)."""
        return unwrap_model(self.model)

    def log(self, msg: str) -> None:
        """Print on rank 0 only (every rank runs the same loop)."""
        if is_main_process():
            print(msg)

    def _hook(self, name: str, *args: Any) -> None:
        """Call hook ``name`` on the task, then on every callback that has it."""
        for obj in (self.task, *self.callbacks):
            fn = getattr(obj, name, None)
            if fn is not None:
                fn(self, *args)

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.val_interval < 1:
            raise ConfigError(f"val_interval={cfg.val_interval} must be >= 1 (1 = every epoch)")
        resume = cfg.resume or (
            self.auto_resume and any((self.out / n).exists() for n in ("last.pt", "last.prev.pt"))
        )
        if is_main_process():
            if not resume and not self.auto_resume:
                claim_run_dir(self.out, cfg.exist_ok, self.log, keep=cfg.weights)
            ensure_writable(self.out)
        barrier()
        set_deterministic(cfg.deterministic)
        seed_everything(cfg.seed)
        set_threads(cfg.threads)
        if self.auto_resume and resume:
            self.log(f"torchrun restart {elastic_restart_count()}: resuming the run in {self.out}")
        resume_state = self._find_resume_state() if resume else None
        if resume_state is None and is_main_process():
            save_config(cfg, self.out / "config.yaml", self.task.name)
        self.resume_state = resume_state
        self.task.setup(self)  # sets self.model, self.train_loader (and task-owned val data)
        self._check_monitor()
        model = self.model
        if getattr(cfg, "tensorboard", False) and is_main_process():
            from cvcraft.engine.loggers import TensorBoardLogger

            self.callbacks.append(TensorBoardLogger(self.out / "tensorboard"))
        if getattr(cfg, "diagnose", False):
            from cvcraft.engine.diagnostics import Diagnostics

            self.callbacks.append(Diagnostics(model))
        if cfg.init != "default" and resume_state is None:
            torch.manual_seed(cfg.seed)
            init_weights(model, scheme=cfg.init)
        if cfg.weights and resume_state is None:
            classes = getattr(self.task, "classes", None)
            self.log(
                load_finetune_weights(
                    model,
                    load_checkpoint(cfg.weights),
                    num_classes=len(classes) if classes else None,
                    source=cfg.weights,
                    model_name=cfg.model,
                )
            )
        if cfg.freeze:
            freeze(model, cfg.freeze)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.distributed:
            # after weights/freeze (DDP registers only parameters that require grad), before
            # the optimizer: SyncBN conversion must happen before param groups are built
            self.model = model = wrap_model(model, cfg.sync_bn, self.device)
            for part in self.extra_parts.values():
                if part.train:
                    part.model = wrap_model(part.model, cfg.sync_bn, self.device)
            self.log(f"DDP: {world_size()} processes, global batch {cfg.batch}")
        self.steps_per_epoch = max(1, len(self.train_loader) // cfg.accumulate)
        self.optimizer, self.scheduler = self._optimizer_for(model, self.primary_optimizer)
        self.ema = (
            ModelEMA(model, decay=cfg.ema_decay, warmup_tau=cfg.ema_tau or None)
            if cfg.ema
            else None
        )
        for part in self.extra_parts.values():
            if not part.train:
                part.model.eval().requires_grad_(False)
                continue
            part.opt, part.scheduler = self._optimizer_for(part.model, part.optimizer)
            if cfg.ema if part.ema is None else part.ema:
                part.ema_model = ModelEMA(
                    part.model, decay=cfg.ema_decay, warmup_tau=cfg.ema_tau or None
                )
        use_scaler = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        if resume_state is not None:
            self._restore(resume_state)

    def _optimizer_for(self, model: nn.Module, over: dict[str, Any]) -> tuple[Any, Any]:
        """The optimizer and per-iteration schedule of one model: the config's keys, with
        ``over`` (a ModelPart's) taking precedence."""
        cfg = self.cfg
        kw: dict[str, Any] = {
            "weight_decay": cfg.weight_decay,
            "momentum": cfg.momentum,
            "nesterov": cfg.nesterov,
            "lr_mults": cfg.lr_mults or None,
        }
        kw.update({k: v for k, v in over.items() if k not in ("optimizer", "lr", "schedule")})
        lr = scaled_lr(over.get("lr", cfg.lr), cfg)
        if getattr(cfg, "decouple_wd", False) and lr > 0:
            # torch decays by lr * wd per step (coupled SGD/Adam as L2 in the gradient, AdamW
            # directly): dividing by the peak lr makes weight_decay= that product, so a new lr
            # or batch (lr_scale) leaves the decay where it was; the schedule still scales it
            kw["weight_decay"] = kw["weight_decay"] / lr
        optimizer = build_optimizer(model, over.get("optimizer", cfg.optimizer), lr, **kw)
        name = over.get("schedule", cfg.schedule)
        total = self.steps_per_epoch * cfg.epochs
        warmup = min(round(cfg.warmup_epochs * self.steps_per_epoch), max(0, total - 1))
        scheduler = build_scheduler(
            optimizer,
            name,
            total,
            warmup_steps=warmup,
            **schedule_kwargs(cfg, name, self.steps_per_epoch),
        )
        return optimizer, scheduler

    def _find_resume_state(self) -> dict[str, Any] | None:
        last = self.out / "last.pt"
        prev = self.out / "last.prev.pt"
        if not last.exists() and not prev.exists():
            raise ConfigError(f"resume=true but {last} does not exist; nothing to resume")
        path, state, warnings = load_latest_valid([last, prev])
        for w in warnings:
            self.log(f"warning: {w}")
        self.log(f"resuming from {path} (epoch {state['epoch'] + 1} done)")
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        load_model_weights(self.model, state["model"], strict=True, source="last.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state.get("ema_state") is None:
                raise CheckpointError(
                    "the checkpoint has no EMA state but ema=true; resume with ema=false"
                )
            self.ema.load_state_dict(state["ema_state"])
        saved_parts = state.get("parts") or {}
        for name, part in self.extra_parts.items():
            if not part.train:
                continue
            if name not in saved_parts:
                raise CheckpointError(f"the checkpoint has no model {name!r}; was it this task?")
            sp = saved_parts[name]
            load_model_weights(part.model, sp["model"], strict=True, source=f"last.pt[{name}]")
            part.opt.load_state_dict(sp["optimizer"])
            part.scheduler.load_state_dict(sp["scheduler"])
            if part.ema_model is not None:
                part.ema_model.load_state_dict(sp["ema_state"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved_cbs = state.get("callbacks") or {}
        for key, cb in self._stateful_callbacks().items():
            if key not in saved_cbs:
                raise CheckpointError(
                    f"the checkpoint has no state for the {key!r} callback (was it added after "
                    "the run started?); resume with the run's own settings"
                )
            cb.load_state_dict(saved_cbs[key])
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state.get("global_step", 0))
        self.history = list(state.get("history", []))
        self.best_fitness = float(state.get("best_fitness", self.best_fitness))
        self.best_epoch = int(state.get("best_epoch", -1))
        set_rng_state(state["rng"])
        self._write_history()

    def _stateful_callbacks(self) -> dict[str, Any]:
        """Callbacks whose state must survive a resume (e.g. lookahead's slow weights): those
        with a ``state_key`` and ``state_dict``/``load_state_dict``, by key."""
        return {cb.state_key: cb for cb in self.callbacks if getattr(cb, "state_key", None)}

    def _write_history(self) -> None:
        """metrics.csv (rank 0); timing columns go to timing.csv in deterministic mode."""
        if not is_main_process():
            return
        if not self.cfg.deterministic:
            write_metrics_csv(self.out / "metrics.csv", self.history)
            return
        rows = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in self.history]
        write_metrics_csv(self.out / "metrics.csv", rows)
        timing = [{k: r[k] for k in ("epoch", *TIMING_COLUMNS) if k in r} for r in self.history]
        write_metrics_csv(self.out / "timing.csv", timing)

    def improved(self, value: float) -> bool:
        """Whether ``value`` of the monitored metric beats the best so far (its direction)."""
        if self.monitor_mode == "min":
            return value < self.best_fitness
        return value > self.best_fitness

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        """Train, evaluate every ``val_interval`` epochs (and the last), checkpoint every epoch,
        and return the final metrics."""
        self._setup()
        cfg = self.cfg
        monitor = self.monitor
        bad_epochs = 0
        if self.history:
            since_best = len(self.history) - 1 - self.best_epoch
            bad_epochs = max(0, since_best)
        self.log(f"run folder: {self.out}")
        for epoch in range(self.start_epoch, cfg.epochs):
            stats = self.train_one_epoch(epoch)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": stats.loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_ips": stats.images / max(stats.seconds, 1e-9),
                "epoch_time": stats.seconds,
            }
            # val_interval > 1: epochs in between log training numbers only; the last epoch
            # is always evaluated, so best.pt and metrics.json never miss the end of the run
            evaluated = (epoch + 1) % cfg.val_interval == 0 or epoch + 1 == cfg.epochs
            improved = False
            if evaluated:
                metrics = self.evaluate()
                self._last_eval = (epoch, metrics)
                row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
                if monitor not in row:
                    raise ConfigError(
                        f"monitor={monitor!r} is not a metric of this task; "
                        f"choose one of {', '.join(k for k in row if k != 'epoch')}"
                    )
                improved = self.improved(float(row[monitor]))
                if improved:
                    self.best_fitness, self.best_epoch = float(row[monitor]), epoch
                bad_epochs = epoch - self.best_epoch  # epochs since the best one
            self._hook("on_epoch_end", epoch, row)
            self.history.append(row)
            if is_main_process():
                self._save(epoch, improved)
            self._write_history()
            inject_fault(epoch)
            msg = "  ".join(
                f"{k}={v:.4g}"
                for k, v in row.items()
                if k in ("epoch", "train_loss", monitor, "val_loss")
            )
            self.log(f"epoch {epoch + 1}/{cfg.epochs}  {msg}")
            if evaluated and cfg.patience and bad_epochs >= cfg.patience:
                self.log(f"early stopping: {monitor} did not improve for {cfg.patience} epochs")
                break
        try:
            return self._finish(monitor)
        finally:
            cleanup()

    def _check_monitor(self) -> None:
        """Reject a ``monitor=`` no evaluation reports before the first epoch, not after it."""
        probe = getattr(self.task, "metric_names", None)
        names = probe() if probe is not None else None
        bare = self.monitor.removeprefix("raw_")
        if names is None or self.monitor in names or bare.startswith("train_"):
            return  # train_* columns may come from the task's own hooks: checked after epoch 1
        names.add("val_loss")
        if self.cfg.ema:
            names |= {f"raw_{k}" for k in names}
        names |= {"epoch", "train_loss", "lr", "train_ips", "epoch_time"}
        if self.monitor not in names:
            raise ConfigError(
                f"monitor={self.monitor!r} is not a metric of task {self.task.name}."
                f"{did_you_mean(self.monitor, names)} Choose one of: {', '.join(sorted(names))}"
            )

    def train_one_epoch(self, epoch: int) -> EpochStats:
        cfg, model = self.cfg, self.model
        self.epoch = epoch
        model.train()
        for part in self.extra_parts.values():
            part.model.train(part.train)
        if cfg.freeze:
            freeze_bn_stats(self.module, cfg.freeze)
        set_loader_epoch(self.train_loader, epoch)
        self._hook("on_epoch_start", epoch)  # e.g. detection switches Mosaic off near the end
        n_batches = self.steps_per_epoch * cfg.accumulate
        bar = None
        if cfg.progress and tqdm is not None and is_main_process():
            bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        self._zero_grad()
        for i, batch in enumerate(self.train_loader):
            if i >= n_batches:
                break
            self.micro_step = i
            self.step_now = (i + 1) % cfg.accumulate == 0
            self._hook("before_step", i)
            lv, n = self.task.train_step(batch, self)
            if not math.isfinite(lv):
                self.nonfinite(lv)
            if self.step_now:
                self.global_step += 1
            self._hook("after_step", i)
            total_loss += lv * n
            seen += n
            if bar is not None:
                el = time.perf_counter() - t0
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", ips=f"{seen / max(el, 1e-9):.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        if self.distributed:  # the epoch's loss and throughput over all ranks
            total_loss, seen = all_reduce_sum(float(total_loss)), all_reduce_sum(int(seen))
        if seen == 0:
            raise TrainingError("the training loader produced no batches; is the dataset empty?")
        return EpochStats(total_loss / seen, seen, time.perf_counter() - t0)

    # ----------------------------------------------------------------- the step's context
    def part(self, name: str = "model") -> ModelPart:
        """A declared model by name; ``"model"`` is the primary one."""
        if name == "model":
            return ModelPart(self.model, True, {}, None, self.optimizer, self.scheduler, self.ema)
        if name not in self.extra_parts:
            raise KeyError(f"no model {name!r}; the task declared {sorted(self.extra_parts)}")
        return self.extra_parts[name]

    def autocast(self) -> Any:
        """Mixed precision around a forward when ``amp=true`` (bf16 on CPU, fp16 on CUDA)."""
        return autocast(self.device, self.cfg.amp)

    def no_sync(self, model: nn.Module) -> Any:
        """DDP all-reduces gradients in backward; between optimizer steps there is nothing to
        reduce yet, so skip it (one reduction per accumulated step, not per micro-batch)."""
        if isinstance(model, nn.parallel.DistributedDataParallel) and not self.step_now:
            return model.no_sync()
        return contextlib.nullcontext()

    def penalties(self, loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """``loss`` plus the explicit L1/L2 weight penalties the config asks for."""
        if self.cfg.l1:
            loss = loss + l1_penalty(model, self.cfg.l1)
        if self.cfg.l2:
            loss = loss + l2_penalty(model, self.cfg.l2)
        return loss

    def nonfinite(self, lv: float) -> None:
        """Stop with the step at fault and the last good checkpoint named."""
        last = self.out / "last.pt"
        kept = f"; the last good checkpoint is {last}" if last.exists() else ""
        raise TrainingError(
            f"loss is {lv} at epoch {self.epoch + 1}, step {self.micro_step + 1} (global step "
            f"{self.global_step + 1}){kept}. Lower lr, enable grad_clip, or check the data."
        )

    def backward(self, loss: torch.Tensor) -> float:
        """Backward of one micro-batch's loss (scaled for AMP and accumulation); returns its
        value, and stops the run on a non-finite loss before the weights see it."""
        lv = float(loss.detach())
        if not math.isfinite(lv):
            self.nonfinite(lv)
        self.scaler.scale(loss / self.cfg.accumulate).backward()
        return lv

    def step(self, name: str = "model") -> None:
        """One optimizer step of model ``name``: unscale, clip, step, zero the gradients,
        advance its schedule and update its EMA."""
        cfg, part = self.cfg, self.part(name)
        self._hook("before_optimizer_step", name)  # gradients are complete here
        if cfg.grad_clip or cfg.grad_clip_value:
            self.scaler.unscale_(part.opt)
            clip_gradients(
                part.model.parameters(),
                max_norm=cfg.grad_clip or None,
                max_value=cfg.grad_clip_value or None,
            )
        self.scaler.step(part.opt)
        self.scaler.update()
        part.opt.zero_grad(set_to_none=True)
        part.scheduler.step()
        if part.ema_model is not None:
            part.ema_model.update(part.model)

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for part in self.extra_parts.values():
            if part.opt is not None:
                part.opt.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        """Metrics of the raw weights; with EMA on, the EMA's are primary, raw ones prefixed.

        The bare model is evaluated (a DDP wrapper would sync buffers on every forward, and
        ranks may hold different numbers of val batches); the task reduces across ranks.
        """
        if self.ema is None:
            return self.task.evaluate(self.module)
        if not self.cfg.val_raw:
            return self.task.evaluate(self.ema.module)
        raw = self.task.evaluate(self.module)
        ema = self.task.evaluate(self.ema.module)
        out = dict(ema)
        out.update({f"raw_{k}": v for k, v in raw.items() if isinstance(v, (int, float))})
        return out

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.module

    def _callback_states(self) -> dict[str, Any]:
        return {k: cb.state_dict() for k, cb in self._stateful_callbacks().items()}

    def _save(self, epoch: int, improved: bool) -> None:
        parts = {
            name: {
                "model": unwrap_model(p.model).state_dict(),
                "ema": p.ema_model.module.state_dict() if p.ema_model is not None else None,
                "ema_state": p.ema_model.state_dict() if p.ema_model is not None else None,
                "optimizer": p.opt.state_dict(),
                "scheduler": p.scheduler.state_dict(),
            }
            for name, p in self.extra_parts.items()
            if p.train
        }
        state = {
            "task": self.task.name,
            "epoch": epoch,
            "global_step": self.global_step,
            "model": self.module.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_state": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "history": self.history,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "monitor": self.monitor,
            "monitor_mode": self.monitor_mode,
            "rng": rng_state(),
            "config": config_to_dict(self.cfg),
            **({"parts": parts} if parts else {}),
            **({"callbacks": cbs} if (cbs := self._callback_states()) else {}),
            **self.task.checkpoint_meta(),
        }
        save_checkpoint(self.out / "last.pt", state, keep_previous=True)
        cycle = snapshot_cycle(self.cfg, epoch)
        if improved or cycle is not None:
            # best.pt holds only what inference needs: no optimizer, no history
            drop = ("optimizer", "scheduler", "rng")
            slim = {k: v for k, v in state.items() if k not in drop}
            if parts:
                slim["parts"] = {
                    n: {k: v for k, v in p.items() if k in ("model", "ema")}
                    for n, p in parts.items()
                }
            if improved:
                save_checkpoint(self.out / "best.pt", slim)
            if cycle is not None:  # snapshot ensembles: the weights at each cycle's end
                save_checkpoint(self.out / f"snapshot{cycle}.pt", slim)

    def _finish(self, monitor: str) -> dict[str, Any]:
        barrier()  # rank 0 has written best.pt
        best = self.out / "best.pt"
        last_eval = getattr(self, "_last_eval", None)
        if last_eval is not None and last_eval[0] == self.best_epoch:
            metrics = last_eval[1]  # best.pt holds the weights just evaluated: no second pass
        else:
            if best.exists():
                state = load_checkpoint(best)
                load_model_weights(
                    self.eval_model, weights_of(state), strict=True, source=str(best)
                )
            metrics = self.evaluate() if self.history else {}
        final = {k: v for k, v in metrics.items() if isinstance(v, (int, float, list, dict))}
        final.update(
            {
                "best_epoch": self.best_epoch + 1,
                "epochs_run": len(self.history),
                "monitor": monitor,
                "monitor_mode": self.monitor_mode,
                "train_ips": sum(r["train_ips"] for r in self.history) / max(len(self.history), 1),
                "train_seconds": sum(r["epoch_time"] for r in self.history),
            }
        )
        self._hook("on_fit_end", final)
        if is_main_process():
            self.task.finish(self, self.eval_model, final)
            self._hook("after_plots", final)  # plots/ is written (e.g. TensorBoard images)
            write_atomic(self.out / "metrics.json", json.dumps(final, indent=2, default=float))
            write_launch_result(self.out)
        self.log(f"results saved to {self.out}")
        return final


def monitor_direction(task: Any, cfg: TrainConfig, monitor: str) -> str:
    """``"max"`` or ``"min"`` for the monitored metric: ``monitor_mode=`` if given, else the
    task's own direction for its default monitor, else by name (losses are minimised)."""
    mode = getattr(cfg, "monitor_mode", "auto")
    if mode in ("max", "min"):
        return mode
    if monitor == getattr(task, "monitor", None):
        return getattr(task, "monitor_mode", "max")
    return metric_direction(monitor)
