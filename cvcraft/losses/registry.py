"""The loss registry: configs name a loss (``"ce"``, ``"focal"``) and ``build_loss`` makes it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered as ``name`` with ``kwargs``.

    Unknown names raise ``RegistryError`` (with a did-you-mean); unknown options raise
    ``ConfigError`` listing the options the loss takes.
    """
    factory = LOSSES.get(name)
    sig = inspect.signature(factory)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"loss {name!r}: {e}. It takes {sig}") from None
    return factory(**kwargs)
