"""The model registry: build any architecture by name, as the CLI and YAML configs do.

A model is registered as a small constructor ``fn(num_classes=1000, in_chans=3, **kw) ->
nn.Module`` (timm style), so one configurable class serves many named variants.
``create_model("resnet50", num_classes=10)`` looks the name up and calls it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.registry import Registry

ModelFn = Callable[..., nn.Module]

MODELS: Registry[ModelFn] = Registry("model")


def register_model(name: str | None = None) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering a model constructor under ``name`` (default: the function name)."""

    def deco(fn: ModelFn) -> ModelFn:
        return MODELS.register(name, fn)

    return deco


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Unknown names raise ``RegistryError`` with the closest match; options the model does
    not take raise ``ConfigError`` naming the option and the model's signature.
    """
    fn = MODELS.get(name)
    try:
        return fn(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        # Only an argument-binding error about one of the *user's* keys is a config problem;
        # any other TypeError is a bug and propagates unchanged.
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m is None or m.group(1) not in kwargs:
            raise
        raise ConfigError(
            f"model {name!r} does not accept option {m.group(1)!r}. Remove it or fix its "
            f"spelling; {name} is {fn.__module__}.{fn.__name__}{inspect.signature(fn)} "
            f"(see that module's model class for the options **kw forwards)"
        ) from None


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern`` (``"resnet*"``)."""
    return MODELS.names(pattern)


def model_package(name: str) -> str:
    """The ``cvcraft.models.<package>`` a registered model's constructor lives in
    (``classification``, ``detection``, ...; "" for models registered elsewhere). The task
    registry maps packages to tasks (``cvcraft.tasks.model_task``)."""
    module = getattr(MODELS.get(name), "__module__", "")
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["cvcraft", "models"] else ""


def model_info(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``{"params": total, "trainable": requiring grad}``."""
    params = list(model.parameters())
    return {
        "params": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }
