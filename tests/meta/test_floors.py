"""The floors of ../shared/GUIDE.md: a module imports only from its own floor or below.

Every ``import`` in every module of the package is read from its syntax tree (function-
level imports included, since a lazy import is still a dependency), so a model importing a
file format, data importing a model or the engine importing a task fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cvcraft"

FLOORS = {
    **dict.fromkeys(("structures", "errors", "registry", "reference"), 1),
    **dict.fromkeys(("ops", "losses", "metrics", "nn", "classic", "explain", "attacks"), 2),
    **dict.fromkeys(("models", "data", "transforms", "viz"), 3),
    "engine": 4,
    "tasks": 5,
    "cli": 6,
    "__main__": 6,
}


def floor_of(parts: tuple[str, ...]) -> int | None:
    """The floor of ``cvcraft.<parts>`` (the package ``cvcraft`` itself re-exports lazily)."""
    if not parts:
        return None
    return FLOORS.get(parts[0])


def imports_of(path: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(line, cvcraft sub-path) of every cvcraft import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for n in names:
            if n == "cvcraft" or n.startswith("cvcraft."):
                out.append((node.lineno, tuple(n.split(".")[1:])))
    return out


def modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_package_has_a_floor():
    top = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    top -= {"py.typed"}
    missing = sorted(t for t in top if t not in FLOORS and not t.endswith(".pyc"))
    assert not missing, f"give these a floor in this test and in GUIDE/design.md: {missing}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_stay_on_or_below_the_modules_floor(path):
    own = floor_of(path.relative_to(PACKAGE).with_suffix("").parts)
    if own is None:
        return
    bad = [
        f"line {line}: cvcraft.{'.'.join(target)} (floor {floor_of(target)})"
        for line, target in imports_of(path)
        if (floor_of(target) or 0) > own
    ]
    assert not bad, f"{path.relative_to(PACKAGE)} is on floor {own} but imports " + "; ".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from cvcraft.tasks.classify.task import ClassifyTask\n")
    assert imports_of(fake) == [(2, ("tasks", "classify", "task"))]
    assert floor_of(("tasks", "classify")) > floor_of(("models",))
