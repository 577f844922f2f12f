"""Tasks: one registered package each (classify, detect, segment, ...).

``register_task`` adds one; ``get_task``/``list_tasks`` read the registry; ``BaseTask``
(``cvcraft.tasks.base``) is what a task class builds on. docs/design.md, "How to add a
task", walks through a new one.
"""

from cvcraft.tasks.registry import (
    TaskSpec,
    get_task,
    list_tasks,
    metric_mode,
    model_task,
    register_task,
    task_config,
    task_help,
)

__all__ = [
    "TaskSpec",
    "get_task",
    "list_tasks",
    "metric_mode",
    "model_task",
    "register_task",
    "task_config",
    "task_help",
]
