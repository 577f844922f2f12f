"""cvcraft: a computer-vision toolkit on PyTorch.

Public API (imported lazily so ``import cvcraft`` stays cheap in data workers)::

    cvcraft.create_model("resnet50", num_classes=10)
    cvcraft.list_models("resnet*")
    cvcraft.profile(model, (3, 224, 224))          # params, MACs, CPU latency
    cvcraft.load_dataset("path/to/imagefolder")   # -> DataSplits(train, val, classes)
    cvcraft.Trainer(task, cfg).fit()
    cvcraft.list_tasks()                            # registered tasks (register_task adds one)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": ("cvcraft.models", "create_model"),
    "list_models": ("cvcraft.models", "list_models"),
    "model_default_cfg": ("cvcraft.models", "model_default_cfg"),
    "list_tasks": ("cvcraft.tasks", "list_tasks"),
    "profile": ("cvcraft.models.profile", "profile"),
    "load_dataset": ("cvcraft.data", "load_classification"),
    "Trainer": ("cvcraft.engine.trainer", "Trainer"),
    "ClassifyTask": ("cvcraft.tasks.classify.task", "ClassifyTask"),
    "task_config": ("cvcraft.tasks", "task_config"),
    "register_task": ("cvcraft.tasks", "register_task"),
    "Sample": ("cvcraft.structures", "Sample"),
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cvcraft' has no attribute {name!r}")
