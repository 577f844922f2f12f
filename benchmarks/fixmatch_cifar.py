"""FixMatch against supervised-only training on the same few CIFAR-10 labels.

    OMP_NUM_THREADS=1 python benchmarks/fixmatch_cifar.py [--labeled 500] [--epochs 4] \
        [--skip compute]

A pool of ``--fraction`` of the CIFAR-10 training images (after a 4 % val split) is split
into ``--labeled`` labelled images (balanced over classes, the same ones in every run) and
the rest, used unlabelled by FixMatch. Three runs through ``cvcraft train classify``, all
with the same model, optimizer, schedule, EMA and weak augmentation:

- ``fixmatch``: ``semi=fixmatch`` for ``--epochs`` epochs (an epoch visits each unlabelled
  image once: ceil(U / mu) items, each one labelled image + mu unlabelled ones);
- ``supervised, same steps``: the labelled images only, as many optimizer steps of the same
  labelled batch size (the FixMatch run's labelled stream, without the unlabelled term);
- ``supervised, same compute``: as many image passes as FixMatch's forwards/backwards
  (labelled + 2 mu unlabelled per item), i.e. about the same wall time.

Reported: the last epoch's val top-1 (EMA weights), the best, the wall time of each run,
and FixMatch's final mask rate. Sized for the shared 2-core machine (16 px inputs, resnet20);
the defaults take ~12 minutes there (wall s includes reading the data;
train s is the training loop with its evaluations).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvcraft.cli import run  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def train(name: str, keys: dict, out: Path) -> dict:
    t = time.perf_counter()
    run(["train", "classify", *[f"{k}={v}" for k, v in keys.items()], f"out={out / name}"])
    wall = time.perf_counter() - t
    rows = list(csv.DictReader(open(out / name / "metrics.csv")))
    last = [r for r in rows if r.get("top1")][-1]
    final = json.loads((out / name / "metrics.json").read_text())
    return {
        "run": name,
        "top1_last": float(last["top1"]),
        "top1_best": max(float(r["top1"]) for r in rows if r.get("top1")),
        "epochs": len(rows),
        "wall_s": wall,
        "mask_rate": float(last["mask_rate"]) if last.get("mask_rate") else None,
        "train_seconds": final.get("train_seconds"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "cifar10" / "train"))
    ap.add_argument("--labeled", type=int, default=500)
    ap.add_argument("--fraction", type=float, default=0.15, help="share of train used as pool")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--mu", type=int, default=3)
    ap.add_argument("--tau", type=float, default=0.95)
    ap.add_argument("--batch", type=int, default=32, help="labelled images per step")
    ap.add_argument("--imgsz", type=int, default=16)
    ap.add_argument(
        "--skip", default="", help="comma list of runs to skip (fixmatch,steps,compute)"
    )
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no CIFAR-10 folder at {args.data}")
    skip = set(filter(None, args.skip.split(",")))
    common = {
        "data": args.data, "model": "resnet20", "imgsz": args.imgsz, "batch": args.batch,
        "optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 5e-4,
        "schedule": "cosine", "warmup_epochs": 0, "ema": "true", "ema_decay": 0.99,
        "ema_tau": 20, "val_fraction": 0.04, "fraction": args.fraction, "seed": 0,
        "cache": "true", "workers": 1, "threads": 1, "progress": "false", "plots": "false",
    }  # fmt: skip
    pool = int(50_000 * (1 - common["val_fraction"]) * args.fraction)
    unlabeled = pool - args.labeled
    items = max(args.labeled, math.ceil(unlabeled / args.mu))
    steps = (items // args.batch) * args.epochs
    per_epoch_sup = args.labeled // args.batch
    results = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        if "fixmatch" not in skip:
            semi = {"semi": "fixmatch", "labeled": args.labeled, "mu": args.mu, "tau": args.tau,
                    "lambda_u": 1.0, "epochs": args.epochs}  # fmt: skip
            results.append(train("fixmatch", {**common, **semi}, out))
        # the supervised runs read the same labelled images (FixMatch's labelled subset of the
        # same pool: select_labeled, same seed) and the same val images, as a train/ + val/
        # folder of symlinks
        from cvcraft.data import load_classification
        from cvcraft.tasks import task_config
        from cvcraft.tasks.base import take_fraction
        from cvcraft.tasks.classify.semi import select_labeled

        cfg = task_config("classify", {**common, "semi": "fixmatch", "labeled": args.labeled})
        splits = load_classification(args.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
        tr = take_fraction(splits.train, cfg.fraction, cfg.seed, len(splits.classes))
        keep = select_labeled(tr.labels, args.labeled, len(splits.classes), cfg.seed)
        root = out / "labeled"
        for split, data, rows in (("train", tr, keep), ("val", splits.val, range(len(splits.val)))):
            for i in rows:
                src = Path(data.describe(int(i)))
                dst = root / split / splits.classes[int(data.labels[i])] / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.resolve())
        sup = {**common, "data": str(root), "fraction": 1.0}
        sup_epochs = max(1, round(steps / per_epoch_sup))
        if "steps" not in skip:
            results.append(train("supervised_same_steps", {**sup, "epochs": sup_epochs}, out))
        if "compute" not in skip:
            passes = steps * args.batch * (1 + 2 * args.mu)
            ep = max(1, round(passes / (per_epoch_sup * args.batch)))
            keys = {**sup, "epochs": ep, "val_interval": max(1, ep // 10)}
            results.append(train("supervised_same_compute", keys, out))
    print(f"\nCIFAR-10, {args.labeled} labels of a {pool}-image pool ({unlabeled} unlabelled), "
          f"resnet20 at {args.imgsz} px, batch {args.batch} labelled (+{args.mu}x unlabelled), "
          f"FixMatch tau={args.tau}, {args.epochs} epochs = {steps} steps")  # fmt: skip
    print(f"{'run':26s} {'epochs':>6s} {'top1 last':>9s} {'top1 best':>9s} {'wall s':>7s} "
          f"{'train s':>7s} mask")  # fmt: skip
    for r in results:
        mask = f"{r['mask_rate']:.3f}" if r["mask_rate"] is not None else "-"
        print(f"{r['run']:26s} {r['epochs']:6d} {r['top1_last']:9.4f} {r['top1_best']:9.4f} "
              f"{r['wall_s']:7.0f} {r['train_seconds']:7.0f} {mask}")  # fmt: skip


if __name__ == "__main__":
    main()
