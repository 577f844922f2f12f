"""Training throughput on a shared CPU: quiet, and beside 1 and 2 busy processes (issue 26).

Rows, each measured in a fresh process (OpenMP reads its wait policy when torch loads):
- ``bare``: a plain PyTorch loop (ResNet-20 fwd+bwd+SGD step on a fixed batch), torch's
  default settings: default threads, OpenMP's default (spinning) wait policy.
- ``ours``: the same loop started the way ``cvcraft`` starts (``passive_waiting()`` before
  torch loads, ``set_threads(0)``).
- ``ours_train``: ``cvcraft train classify`` itself (shapes data, workers=0): the whole
  product, its ``train_ips`` of the last epoch.

A busy process is a pure-Python spin loop (a browser tab, a test suite). The claim to check:
with one busy process, ours keeps >= 0.45x its quiet throughput, and when quiet ours loses
<= 5 % against bare. Needs a quiet machine to mean anything; prints ``uptime`` first.

    OMP_NUM_THREADS= python benchmarks/shared_machine.py [--steps 12] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOOP = """
import json, os, sys, time
if {ours}:
    from cvcraft.engine.threads import passive_waiting
    passive_waiting()
import torch
from cvcraft.models import create_model
if {ours}:
    from cvcraft.engine.threads import set_threads
    set_threads(0)
torch.manual_seed(0)
model = create_model("resnet20", num_classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn({batch}, 3, 32, 32), torch.randint(0, 10, ({batch},))
def step():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(2):
    step()
t0 = time.perf_counter()
for _ in range({steps}):
    step()
dt = time.perf_counter() - t0
print(json.dumps({{"ips": {steps} * {batch} / dt, "threads": torch.get_num_threads()}}))
"""


def clean_env() -> dict[str, str]:
    """The environment of a default user: no thread or wait-policy variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_loop(ours: bool, steps: int, batch: int) -> dict:
    code = LOOP.format(ours=ours, steps=steps, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=clean_env(), check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_train(batch: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["-m", "cvcraft.cli", "train", "classify", f"data=shapes:{batch * steps}",
                "model=resnet20", "imgsz=32", f"batch={batch}", "epochs=2", "workers=0",
                "progress=false", "plots=false", "val_fraction=0.1", f"out={tmp}/run"]  # fmt: skip
        subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                       env=clean_env(), check=True, cwd=tmp)  # fmt: skip
        rows = (Path(tmp) / "run" / "metrics.csv").read_text().splitlines()
        head, last = rows[0].split(","), rows[-1].split(",")
        return {"ips": float(last[head.index("train_ips")])}


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--busy", default="0,1,2")
    ap.add_argument("--no-train", action="store_true", help="skip the ours_train rows")
    a = ap.parse_args()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"cores usable: {len(os.sched_getaffinity(0))}, batch {a.batch}, {a.steps} steps")
    results: dict[tuple[str, int], float] = {}
    t_start = time.perf_counter()
    for busy in (int(b) for b in a.busy.split(",")):
        hogs = busy_processes(busy)
        try:
            time.sleep(0.5 if busy else 0)
            for name in ("bare", "ours", *(() if a.no_train else ("ours_train",))):
                if name == "ours_train":
                    r = run_train(a.batch, a.steps)
                else:
                    r = run_loop(name == "ours", a.steps, a.batch)
                results[(name, busy)] = r["ips"]
                extra = f" ({r['threads']} threads)" if "threads" in r else ""
                print(f"busy={busy}  {name:<10} {r['ips']:8.1f} img/s{extra}", flush=True)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    print("\nratios (busy / quiet of the same row; quiet cost of ours vs bare):")
    for name in ("bare", "ours", "ours_train"):
        if (name, 0) not in results:
            continue
        line = f"  {name:<10}"
        for busy in (1, 2):
            if (name, busy) in results:
                line += f"  busy={busy}: {results[(name, busy)] / results[(name, 0)]:.2f}x"
        print(line)
    if ("ours", 0) in results and ("bare", 0) in results:
        print(f"  quiet: ours / bare = {results[('ours', 0)] / results[('bare', 0)]:.3f}")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
