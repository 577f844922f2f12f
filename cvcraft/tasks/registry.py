"""The task registry: every task (classify, detect, segment, and those added later) is one
entry, and everything that needs the list of tasks reads it from here.

A task registers with ``register_task(TaskSpec(...))`` from its package's ``__init__.py``.
The entry owns the task's config class, the model packages its models live in, the task
class (imported lazily: ``"cvcraft.tasks.detect.task:DetectTask"``, so ``cvcraft eval`` or
``--help`` never import torch models), the keys printed after train/val, the demo preset and
the monitor with its direction. The CLI, config building, ``model_task``, tar-shard packing
and the augmentation grid all look tasks up here; none of them lists tasks itself.

Tasks outside the package are plugins: a module named in the ``CVCRAFT_TASKS`` environment
variable (comma-separated import paths) is imported when the registry is first read and may
call ``register_task`` (torchrun workers inherit the variable, so plugins work under DDP).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvcraft.engine.config import TrainConfig, build_config, config_help, metric_direction
from cvcraft.errors import ConfigError
from cvcraft.registry import did_you_mean
from cvcraft.tasks.recipes import recipe_defaults

PLUGIN_ENV = "CVCRAFT_TASKS"


@dataclass
class TaskSpec:
    """One registered task.

    ``task_class`` is ``"module:Class"`` (a ``BaseTask`` subclass). ``model_packages`` are the
    ``cvcraft.models.<package>`` folders whose models serve this task (``model_task`` reads
    it); ``models`` may add single model names registered elsewhere. ``monitor_mode`` is
    ``"max"`` or ``"min"``. ``lower_is_better`` names further metrics whose best is the
    lowest (any metric ending in ``loss`` already is).
    """

    name: str
    config: type[TrainConfig]
    task_class: str
    help: str
    model_packages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    monitor: str = "val_loss"
    monitor_mode: str = "max"
    lower_is_better: tuple[str, ...] = ()
    summary_keys: tuple[str, ...] = ()
    val_keys: tuple[str, ...] = ()
    demo_preset: dict[str, Any] = field(default_factory=dict)
    # the pack/augment tools: "module:function" returning (train, val) SampleSources for
    # ``(data, imgsz, seed)``; None = the task has no data of its own to pack or show
    data_sources: str | None = None
    # what a sample's target is, for tools that draw or store data: "label", "boxes",
    # "mask", ... (``viz.augment_grid`` draws by kind)
    target_kind: str = "label"
    # ``cvcraft augment pipeline=default``: "module:function" taking (source, imgsz, seed) and
    # returning the training dataset a run with default keys builds (items ``(epoch, index)``
    # -> augmented Sample), so the grid shows what training does; None = no augmentation
    train_preview: str | None = None
    default_imgsz: int = 256  # the augment grid's image size when imgsz= is not given
    # whether ``predict`` reads images (source=); a generator samples from noise instead
    predict_needs_source: bool = True

    def load_class(self) -> type:
        return _load(self.task_class)

    def metric_mode(self, metric: str) -> str:
        """``"max"`` or ``"min"``: whether a higher value of ``metric`` is better."""
        if metric == self.monitor:
            return self.monitor_mode
        return metric_mode(metric, self.lower_is_better)


def metric_mode(metric: str, lower_is_better: tuple[str, ...] = ()) -> str:
    """Losses and errors are minimised, everything else (accuracy, mAP, IoU) maximised."""
    return metric_direction(metric, lower_is_better)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_TASKS: dict[str, TaskSpec] = {}
_LOADED = False


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task; a second registration of the same name is refused (a typo'd copy would
    otherwise replace a task silently)."""
    if spec.name in _TASKS and _TASKS[spec.name] is not spec:
        raise ValueError(f"task {spec.name!r} is already registered")
    if spec.monitor_mode not in ("max", "min"):
        raise ValueError(f"task {spec.name}: monitor_mode must be 'max' or 'min'")
    _TASKS[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    """Import the built-in task packages and the plugins named in ``CVCRAFT_TASKS`` once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    here = Path(__file__).parent
    for pkg in sorted(p.name for p in here.iterdir() if (p / "__init__.py").exists()):
        importlib.import_module(f"cvcraft.tasks.{pkg}")
    for mod in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"{PLUGIN_ENV}={mod}: cannot import the task plugin ({e})") from e


def list_tasks() -> list[str]:
    """Registered task names, built-ins first in the order classify, detect, segment."""
    _ensure_loaded()
    order = {"classify": 0, "detect": 1, "segment": 2}
    return sorted(_TASKS, key=lambda n: (order.get(n, 9), n))


def get_task(name: str) -> TaskSpec:
    _ensure_loaded()
    if name not in _TASKS:
        raise ConfigError(
            f"unknown task {name!r}.{did_you_mean(name, _TASKS)} Tasks: {', '.join(list_tasks())}"
        )
    return _TASKS[name]


def model_task(model_name: str) -> str:
    """The task a registered model serves, from the models package its constructor lives in
    (``cvcraft.models.detection`` -> detect) or a task's explicit ``models`` list; models of
    no task's package count as classifiers."""
    from cvcraft.models.registry import model_package

    _ensure_loaded()
    for spec in _TASKS.values():
        if model_name in spec.models:
            return spec.name
    package = model_package(model_name)
    for spec in _TASKS.values():
        if package in spec.model_packages:
            return spec.name
    return "classify"


def task_config(
    task: str,
    values: dict[str, Any] | None = None,
    *,
    yaml_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> TrainConfig:
    """The validated config of ``task`` (defaults < preset < recipe < YAML < values)."""
    spec = get_task(task)
    defaults = {**(defaults or {}), **recipe_defaults(task, values, yaml_file)}
    return build_config(spec.config, values, yaml_file=yaml_file, defaults=defaults, task=task)


def task_help(task: str, command: str = "train") -> str:
    """The ``--help`` key table of ``task`` for ``command`` (val/predict: inference keys)."""
    return config_help(get_task(task).config, command)
