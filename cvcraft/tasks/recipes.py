"""Recipes: named presets of config keys shipped with a task
(``cvcraft/tasks/<task>/recipes/<name>.yaml``) or given as a YAML path, chosen with
``recipe=NAME``. A recipe sits between the defaults (and the demo preset) and the user's
own YAML file and ``key=value`` overrides, so every key it sets can still be changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cvcraft.errors import ConfigError

TASKS_DIR = Path(__file__).parent


def list_recipes(task: str) -> list[str]:
    """The recipe names shipped with ``task``."""
    return sorted(p.stem for p in (TASKS_DIR / task / "recipes").glob("*.yaml"))


def recipe_path(task: str, name: str) -> Path:
    """The YAML file of recipe ``name``: a shipped one, else a path to a file."""
    shipped = TASKS_DIR / task / "recipes" / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    names = ", ".join(list_recipes(task)) or "none"
    raise ConfigError(
        f"recipe={name!r}: not a recipe of task {task} (shipped: {names}) nor a YAML file"
    )


def load_recipe(task: str, name: str) -> dict[str, Any]:
    """The keys recipe ``name`` sets (a mapping; ``recipe`` itself is not one of them)."""
    p = recipe_path(task, name)
    try:
        keys = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p}: invalid YAML: {e}") from None
    if not isinstance(keys, dict):
        raise ConfigError(f"recipe {p}: the top level must be a mapping of key: value")
    if "recipe" in keys or "task" in keys:
        raise ConfigError(f"recipe {p}: a recipe sets keys, not recipe= or task=")
    return keys


def recipe_defaults(
    task: str, values: dict[str, Any] | None, yaml_file: str | Path | None = None
) -> dict[str, Any]:
    """The keys of the recipe named by ``values["recipe"]`` (else by the YAML file's
    ``recipe:``), or {} when none is named."""
    name = (values or {}).get("recipe")
    if not name and yaml_file:
        try:
            loaded = yaml.safe_load(Path(yaml_file).read_text()) or {}
        except (OSError, yaml.YAMLError):
            loaded = {}  # build_config reports the file's problem with its own message
        name = loaded.get("recipe") if isinstance(loaded, dict) else None
    return load_recipe(task, str(name)) if name else {}
