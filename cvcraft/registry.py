"""A tiny name -> factory registry, shared by models, transforms, losses, schedules, metrics.

The CLI and YAML configs name components by string; a registry turns the string into the
callable and, on a typo, says which names exist and which one was probably meant.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cvcraft.errors import RegistryError

T = TypeVar("T", bound=Callable[..., Any])


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | Any) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


class Registry(Generic[T]):
    """Maps names to callables. ``@reg.register("name")`` or ``reg.register("name", fn)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None, fn: T | None = None) -> Any:
        def deco(f: T) -> T:
            key = name or f.__name__
            if key in self._items and self._items[key] is not f:
                raise RegistryError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = f
            return f

        return deco(fn) if fn is not None else deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._items)} "
                f"Known: {', '.join(sorted(self._items))}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
