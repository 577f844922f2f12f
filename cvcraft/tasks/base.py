"""``BaseTask``: what every task shares, written once.

A task subclasses it and fills in what is its own: ``setup`` (data, loaders, model,
criterion), ``train_loss`` (or a whole ``train_step``), ``eval_forward`` and
``build_evaluators`` (its metrics), ``checkpoint_meta``, and the CLI's ``validate`` /
``predict``. The base gives the default training step (forward -> loss -> backward ->
step, with accumulation, DDP no-sync, AMP, clipping, EMA through the Trainer), one
evaluation loop (``engine.evaluation.run_evaluation``) with selectable metrics, the
``fraction`` subset, the resume-class check, ``classes.json``, and rebuilding a model from a
checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.engine.checkpoint import load_checkpoint, load_model_weights
from cvcraft.engine.config import TrainConfig
from cvcraft.engine.device import select_device
from cvcraft.engine.evaluation import Evaluator, run_evaluation
from cvcraft.engine.export import OnnxModel, load_torchscript, torchscript_metadata
from cvcraft.engine.trainer import check_resume_classes, weights_of
from cvcraft.errors import CheckpointError, ConfigError
from cvcraft.registry import did_you_mean
from cvcraft.tasks.registry import get_task

_RUN_KEYS = ("best_epoch", "train_seconds")  # summary keys that are not metrics


class BaseTask:
    """A task the Trainer runs. Subclasses set ``name`` (their registry entry)."""

    name = ""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        spec = get_task(self.name)
        self.monitor = spec.monitor
        self.monitor_mode = spec.monitor_mode
        self.classes: list[str] = []
        self.device = torch.device("cpu")
        self.val_loader: Any = None

    # ------------------------------------------------------------------ building
    def setup(self, trainer: Any) -> None:
        """Build data, loaders (``trainer.train_loader``, ``self.val_loader``) and the model
        (``trainer.model`` on ``trainer.device``; more models in ``trainer.extra_parts``)."""
        raise NotImplementedError(f"task {self.name} must define setup()")

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the model and read its outputs."""
        return {
            "model_name": self.cfg.model,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "imgsz": self.cfg.imgsz,
            "model_kwargs": dict(getattr(self.cfg, "model_kwargs", {}) or {}),
        }

    # ------------------------------------------------------------------ training
    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """The loss of one batch and the number of items in it."""
        raise NotImplementedError(f"task {self.name} must define train_loss() or train_step()")

    def train_step(self, batch: Any, ctx: Any) -> tuple[float, int]:
        """One micro-batch: forward and loss under autocast, backward (no gradient sync
        between accumulation steps under DDP), and an optimizer step when ``ctx.step_now``.
        Override for several models (a GAN's alternating steps) or extra terms."""
        model = ctx.model
        with ctx.no_sync(model):
            with ctx.autocast():
                loss, n = self.train_loss(model, batch)
                loss = ctx.penalties(loss, model)
            value = ctx.backward(loss)
        if ctx.step_now:
            ctx.step()
        return value, n

    # ------------------------------------------------------------------ evaluation
    def eval_forward(self, model: nn.Module, batch: Any) -> Any:
        """The model's outputs on one val batch (what the evaluators read)."""
        raise NotImplementedError(f"task {self.name} must define eval_forward()")

    def build_evaluators(self) -> dict[str, Evaluator]:
        """The task's evaluators by name; ``metrics=[...]`` picks a subset."""
        raise NotImplementedError(f"task {self.name} must define build_evaluators()")

    def evaluators(self) -> list[Evaluator]:
        """The evaluators ``metrics=`` selects (all of them by default)."""
        available = self.build_evaluators()
        wanted = [str(m) for m in getattr(self.cfg, "metrics", [])] or list(available)
        for m in wanted:
            if m not in available:
                raise ConfigError(
                    f"metrics: {m!r} is not an evaluator of task {self.name}."
                    f"{did_you_mean(m, available)} Available: {', '.join(available)}"
                )
        return [available[m] for m in wanted]

    def metric_names(self) -> set[str] | None:
        """The metric names an evaluation will report, found without data: each evaluator's
        ``metric_names()`` if it has one, else its ``compute()`` on its empty state. None when
        an evaluator cannot compute on nothing (the trainer then checks ``monitor=`` after the
        first evaluation instead)."""
        import warnings

        names: set[str] = set()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for e in self.evaluators():
                    if hasattr(e, "metric_names"):
                        names.update(e.metric_names())
                        continue
                    e.reset()
                    names.update(k for k, v in e.compute().items() if isinstance(v, (int, float)))
        except Exception:  # an evaluator that needs at least one batch
            return None
        spec = get_task(self.name)  # keys reported only once there is data (e.g. val_loss)
        names.update(k for k in (*spec.val_keys, *spec.summary_keys) if k not in _RUN_KEYS)
        return names

    def evaluate(self, model: nn.Module, loader: Any = None) -> dict[str, Any]:
        """Metrics of ``model`` on the val loader (or ``loader``), reduced across ranks."""
        return run_evaluation(
            model,
            loader if loader is not None else self.val_loader,
            self.eval_forward,
            self.evaluators(),
            device=self.device,
            amp=self.cfg.amp,
            progress=bool(getattr(self.cfg, "progress", False)),
        )

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        """Plots at the end of a run (rank 0 only); nothing by default."""

    # ------------------------------------------------------------------ shared pieces
    def check_resume(self, trainer: Any) -> dict[str, Any] | None:
        """The resume state after checking the data's classes match the checkpoint's."""
        return check_resume_classes(trainer, self.classes)

    def write_classes(self, out: str | Path) -> None:
        (Path(out) / "classes.json").write_text(json.dumps(self.classes))

    @classmethod
    def load_model(
        cls, weights: str | Path, device: torch.device
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Rebuild this task's model from a cvcraft checkpoint (architecture, classes,
        options) with its EMA weights if it has them; eval mode, on ``device``. A file
        written by ``cvcraft export``/``quantize`` (``.onnx`` run by onnxruntime, ``.ts``
        TorchScript, both on the CPU) comes with the checkpoint's metadata as its state."""
        path = Path(weights)
        if path.suffix in (".onnx", ".ts", ".torchscript"):
            if not path.is_file():
                raise CheckpointError(f"weights={weights}: no such file")
            if path.suffix == ".onnx":
                model: nn.Module = OnnxModel(path)
                meta = dict(model.metadata)
            else:
                model, meta = load_torchscript(path), torchscript_metadata(path)
            if meta.get("task", cls.name) != cls.name:
                raise CheckpointError(f"{weights} is a {meta.get('task')} model, not {cls.name}")
            return model, meta
        state = load_checkpoint(weights)
        if state.get("task") != cls.name or "model_name" not in state:
            raise CheckpointError(
                f"{weights}: not a cvcraft {cls.name} checkpoint (task={state.get('task')!r}); "
                f"pass a best.pt/last.pt written by `cvcraft train {cls.name}`"
            )
        model = cls.model_from_checkpoint(state)
        load_model_weights(model, weights_of(state), strict=True, source=str(weights))
        return model.to(device).eval(), state

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        """The (untrained) model a checkpoint's metadata describes."""
        raise NotImplementedError(f"task {cls.name} must define model_from_checkpoint()")

    # ------------------------------------------------------------------ val (the CLI's)
    @classmethod
    def validate(cls, cfg: TrainConfig, out: Path) -> dict[str, Any]:
        """``cvcraft val <task>``: the metrics of checkpoint ``cfg.weights`` on the val split
        of ``cfg.data``, computed by the same evaluators and loop as training's.

        The checkpoint is read first, so its inference settings (``apply_checkpoint``:
        input size, normalization, ...) shape how the data is read; then the data's classes
        must equal the checkpoint's."""
        device = select_device(cfg.device)
        model, state = cls.load_model(cfg.weights, device)
        task = cls(cfg)
        task.device = device
        task.classes = list(state["classes"])
        task.apply_checkpoint(state)
        splits = task.load_splits()
        if list(splits.classes) != task.classes:
            raise CheckpointError(
                f"{cfg.weights} was trained on {len(task.classes)} classes {task.classes[:10]}, "
                f"but {cfg.data} has {len(splits.classes)} classes {list(splits.classes)[:10]}; "
                "evaluate on data with the same classes"
            )
        task.val_data = splits.val
        task.val_loader = task.build_val_loader(splits)
        metrics = task.evaluate(model)
        metrics["weights"] = str(cfg.weights)
        metrics["images"] = len(splits.val)
        if cfg.plots:
            task.val_plots(Path(out), model, metrics)
        return task.public_metrics(metrics)

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        """Take the checkpoint's inference settings (default: its input size)."""
        self.cfg.imgsz = int(state.get("imgsz", self.cfg.imgsz))

    def load_splits(self) -> Any:
        """The data ``cfg.data`` names, as an object with ``train``, ``val``, ``classes``."""
        raise NotImplementedError(f"task {self.name} must define load_splits()")

    def build_val_loader(self, splits: Any) -> Any:
        """The evaluation loader over ``splits.val`` (unshuffled; sharded under DDP)."""
        raise NotImplementedError(f"task {self.name} must define build_val_loader()")

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        """Plots of a ``val`` run (nothing by default)."""

    def public_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What metrics.json keeps (default: everything)."""
        return metrics


def build_model_with(name: str, model_kwargs: dict[str, Any], build: Any) -> nn.Module:
    """``build()`` (a model constructor call using ``model_kwargs``), with a constructor's
    TypeError/ValueError turned into a ConfigError naming model_kwargs when it was given."""
    try:
        return build()
    except (TypeError, ValueError) as e:
        if not model_kwargs:
            raise
        raise ConfigError(
            f"model_kwargs={dict(model_kwargs)}: model {name} cannot be built with them "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); fix or remove them"
        ) from None


def check_input_size(model: nn.Module, name: str, in_chans: int, imgsz: int) -> None:
    """One batch-1 forward at ``imgsz`` before training, so an input the model cannot take
    (AlexNet below 63 px, an MLP built for another size) is a one-line ConfigError now
    rather than a traceback in the first step."""
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, imgsz, imgsz))
    except (ValueError, RuntimeError) as e:
        raise ConfigError(
            f"model={name} cannot take {imgsz}x{imgsz} inputs ({str(e).splitlines()[0][:200]}); "
            "choose another imgsz= or model="
        ) from None
    finally:
        model.train(was)


def readable_images(
    files: list[Path], skipped: list[tuple[str, str]]
) -> list[tuple[Path, np.ndarray]]:
    """``(path, image)`` of the files that decode; the others go to ``skipped`` as
    ``(path, reason)`` so ``predict`` finishes every readable image (``finish_skipped``
    then decides whether the run failed)."""
    from cvcraft.data.io import read_image
    from cvcraft.errors import DataError

    out = []
    for f in files:
        try:
            out.append((f, read_image(f)))
        except DataError as e:
            skipped.append((str(f), str(e)))
    return out


def finish_skipped(out: Path, skipped: list[tuple[str, str]], total: int, skip_bad: bool) -> None:
    """After ``predict`` wrote its results: list the unreadable images in
    ``out/skipped.json`` and say so; without ``skip_bad`` that is an error (exit code 2),
    the predictions of the readable images are kept either way."""
    from cvcraft.errors import DataError

    if not skipped:
        return
    (Path(out) / "skipped.json").write_text(
        json.dumps([{"path": p, "error": e} for p, e in skipped], indent=1)
    )
    msg = (
        f"{len(skipped)} of {total} images could not be read and were skipped (first: "
        f"{skipped[0][1]}); the list is in {Path(out) / 'skipped.json'}"
    )
    if not skip_bad:
        raise DataError(
            f"{msg}; the predictions of the other images are saved in {out}. Fix or remove "
            "the files, or pass skip_bad=true to accept skipping them"
        )
    print(f"skip_bad=true: {msg}")


def drop_unreadable(data: Any, subset: Any, split: str, workers: int = 4) -> Any:
    """``skip_bad=true`` for data read item by item: decode every item of ``data`` once (a
    thread pool: decoding releases the GIL), drop those that fail, and say how many.
    ``subset(data, indices)`` makes the smaller dataset."""
    from concurrent.futures import ThreadPoolExecutor

    from cvcraft.errors import DataError

    def fails(i: int) -> str | None:
        try:
            data.sample(i)
        except DataError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        errors = list(pool.map(fails, range(len(data))))
    bad = [i for i, e in enumerate(errors) if e is not None]
    if not bad:
        return data
    print(
        f"data: skip_bad=true: skipped {len(bad)} of {len(data)} {split} items that cannot be "
        f"read (first: {errors[bad[0]]})"
    )
    keep = [i for i, e in enumerate(errors) if e is None]
    if not keep:
        raise DataError(f"no {split} item of the data can be read (first: {errors[bad[0]]})")
    return subset(data, keep)


def take_fraction(data: Any, fraction: float, seed: int, minimum: int = 1) -> Any:
    """A seeded random subset of ``fraction`` of ``data`` (sorted indices; at least
    ``minimum`` items), or ``data`` itself when ``fraction`` is 1."""
    if fraction >= 1.0:
        return data
    k = max(minimum, int(len(data) * fraction))
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(data))[:k])
    return data.subset(idx)
