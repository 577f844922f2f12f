"""Knowledge distillation gain on a CIFAR-10 split: a ResNet-20 teacher -> a LeNet-5 student.

Three ``cvcraft train classify`` runs on the same split (``fraction`` of the train images,
``val_fraction`` held out), through the CLI so the task's ``teacher=``/``kd=`` keys are what
is measured: the teacher, the student alone, and the student with Hinton KD from the teacher
(``kd_t``, ``kd_alpha``), the two students with the same recipe and epochs. Prints each run's
top-1 and wall time and the gain (student+KD minus student alone, in points).

    OMP_NUM_THREADS=1 python benchmarks/distill.py --data ../shared/data/cifar10/train
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train(name: str, out: Path, common: list[str], extra: list[str]) -> dict:
    """One CLI training run; -> its metrics.json (reused when the run already finished)."""
    done = out / "metrics.json"
    if not done.exists():
        cmd = [sys.executable, "-m", "cvcraft", "train", "classify", *common, *extra,
               f"out={out}", "exist_ok=true"]  # fmt: skip
        print(f"[{name}] " + " ".join(cmd[2:]), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(done.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/cifar10/train")
    p.add_argument("--fraction", type=float, default=0.12, help="share of the train split")
    p.add_argument("--val-fraction", type=float, default=0.03)
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--student", default="lenet5")
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8, help="each student's epochs")
    p.add_argument("--kd-t", type=float, default=4.0)
    p.add_argument("--kd-alpha", type=float, default=0.9)
    p.add_argument("--runs", default="runs/bench_distill")
    args = p.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no CIFAR-10 ImageFolder at {args.data}")
    runs = Path(args.runs)
    common = [
        f"data={args.data}", f"fraction={args.fraction}", f"val_fraction={args.val_fraction}",
        "imgsz=32", "batch=64", "optimizer=sgd", "lr=0.05", "schedule=one_cycle",
        "warmup_epochs=0", "weight_decay=5e-4", "workers=1", "threads=1", "plots=false",
        "progress=false", "seed=0",
    ]  # fmt: skip
    t0 = time.perf_counter()
    teacher = train("teacher", runs / "teacher", common,
                    [f"model={args.teacher}", f"epochs={args.teacher_epochs}"])  # fmt: skip
    alone = train("student", runs / "student", common,
                  [f"model={args.student}", f"epochs={args.epochs}"])  # fmt: skip
    kd_run = runs / f"student_kd_T{args.kd_t:g}_a{args.kd_alpha:g}"
    kd = train("student_kd", kd_run, common, [
        f"model={args.student}", f"epochs={args.epochs}", f"teacher={runs / 'teacher/best.pt'}",
        "kd=hinton", f"kd_t={args.kd_t}", f"kd_alpha={args.kd_alpha}",
    ])  # fmt: skip
    print(f"\nwall {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}")
    print(f"{'run':<34} {'top1 %':>7} {'top5 %':>7} {'train s':>8}")
    rows = [
        (f"teacher {args.teacher} ({args.teacher_epochs} ep)", teacher),
        (f"student {args.student} alone ({args.epochs} ep)", alone),
        (f"student {args.student} + KD T={args.kd_t:g} a={args.kd_alpha:g}", kd),
    ]
    for name, m in rows:
        print(f"{name:<34} {100 * m['top1']:7.2f} {100 * m['top5']:7.2f} "
              f"{m['train_seconds']:8.0f}")  # fmt: skip
    print(f"KD gain: {100 * (kd['top1'] - alone['top1']):+.2f} points top-1")


if __name__ == "__main__":
    main()
