"""Ensemble gain on a CIFAR-10 split: a snapshot ensemble from one cosine-restart run, and
stacking over the same snapshots, against the best single snapshot.

    OMP_NUM_THREADS=1 python benchmarks/ensemble_cifar.py [--fraction 0.1] [--epochs 6]

One ``cvcraft train classify`` run (resnet20 at 16 px on ``--fraction`` of the CIFAR-10
training images, 4 % val split) with ``schedule=cosine_restarts cycles=--cycles`` saves a
snapshot per cycle; ``cvcraft ensemble classify snapshots=RUN`` averages them (``mean``) and
stacks them (``stacking``: a logistic-regression meta-learner scored out of fold on the val
split). Printed: each member's val top-1, the ensembles', and the gain over the best member.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvcraft.cli import run  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "cifar10" / "train"))
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=16)
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no CIFAR-10 folder at {args.data}")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "snap"
        t = time.perf_counter()
        run(["train", "classify", f"data={args.data}", "model=resnet20", f"imgsz={args.imgsz}",
             "batch=64", "optimizer=sgd", "lr=0.1", "weight_decay=5e-4",
             "schedule=cosine_restarts", f"cycles={args.cycles}", "warmup_epochs=0",
             f"epochs={args.epochs}", f"fraction={args.fraction}", "val_fraction=0.04",
             "cache=true", "workers=1", "threads=1", "progress=false", "plots=false",
             f"out={out}"])  # fmt: skip
        train_s = time.perf_counter() - t
        results = {}
        for mode in ("mean", "stacking"):
            results[mode] = run(["ensemble", "classify", f"snapshots={out}", f"mode={mode}",
                                 f"out={Path(d) / mode}", "device=cpu"])  # fmt: skip
    mean = results["mean"]
    print(f"\nCIFAR-10 {args.fraction:.0%} of train, resnet20 at {args.imgsz} px, {args.epochs} "
          f"epochs, {args.cycles} cosine cycles ({train_s:.0f} s training run)")  # fmt: skip
    for m in mean["members"]:
        print(f"  member {Path(m['weights']).name:14s} top1 {m['top1']:.4f}  nll {m['nll']:.4f}")
    for mode, r in results.items():
        e = r["ensemble"]
        print(f"  {mode:8s} ensemble    top1 {e['top1']:.4f}  nll {e['nll']:.4f}  "
              f"gain over best member {r['gain']:+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
