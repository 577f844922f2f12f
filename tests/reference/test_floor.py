"""cvcraft.reference stays on floor 1: numpy, the standard library, cvcraft.errors and
itself — never torch, so it remains an independent oracle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cvcraft.reference

ALLOWED = {"numpy", "cvcraft.errors", "cvcraft.reference"}
PACKAGE = Path(cvcraft.reference.__file__).parent


def test_reference_imports_only_numpy_and_errors():
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or any(
                    name == a or name.startswith(a + ".") for a in ALLOWED
                )
                if not ok:
                    bad.append(f"{path.name}: {name}")
    assert not bad, f"cvcraft.reference must import only numpy and cvcraft.errors: {bad}"


def test_importing_every_reference_module_does_not_load_torch():
    modules = [f"cvcraft.reference.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
