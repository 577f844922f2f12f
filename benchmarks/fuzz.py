"""Long fuzz run of every hostile-input target (RELIABILITY.md's fuzz rows).

Runs ``tests/reliability/test_rel_fuzz.py`` and the detection byte-fuzz with
``CVCRAFT_FUZZ_EXAMPLES`` cases per hypothesis target (default here 2000; the default test
suite uses 25) and prints one line per target with its case count and outcome.

    python benchmarks/fuzz.py                # 2000 cases per target
    CVCRAFT_FUZZ_EXAMPLES=10000 python benchmarks/fuzz.py
    python benchmarks/fuzz.py -k idx         # one target
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/reliability/test_rel_fuzz.py"]


def main(argv: list[str]) -> int:
    n = os.environ.get("CVCRAFT_FUZZ_EXAMPLES", "2000")
    env = {**os.environ, "CVCRAFT_FUZZ_EXAMPLES": n}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-m", "not slow"]
    cmd += ["--hypothesis-show-statistics", *FILES, *argv]
    print(f"fuzz: {n} cases per target\n$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    print(f"fuzz: exit {code} after {time.perf_counter() - t0:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
