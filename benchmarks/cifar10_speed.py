"""CIFAR-10 at airbench speed: cvcraft's ``recipe=speedrun`` next to airbench94 (the CPU port
in ``../shared/peers/airbench94_cpu.py``), on the same train/val split, in the same run.

The script makes a stratified split of the CIFAR-10 JPEGs into two ImageFolders of
symlinks (``WORK/split_<limit>_<val>_<seed>/{train,val}``; the folder name carries the split
because the peer caches its decoded tensors by path), then runs each side as its own
subprocess with the same thread count and prints both accuracies (with TTA) and times:

- ``wall``: the whole process (decoding, setup, training, evaluation);
- ``train``: the side's own training clock (cvcraft's ``train_seconds``, the sum of its
  epochs; airbench's ``total_time_seconds``, its timed training plus the TTA evaluation).

Issue 23's target is cvcraft's accuracy >= airbench's in <= 0.5x its time. A full run takes
tens of minutes per side on 2 cores; ``--limit`` and ``--epochs`` make a smoke run:

    python benchmarks/cifar10_speed.py                              # the measurement
    python benchmarks/cifar10_speed.py --limit 2000 --epochs 1      # smoke (~ minutes)
    python benchmarks/cifar10_speed.py --skip-peer --set amp=true channels_last=true
    python benchmarks/cifar10_speed.py --skip-peer --bare-steps 20   # engine vs a bare loop
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10" / "train"
PEER = ROOT.parent / "shared" / "peers" / "airbench94_cpu.py"
IMAGE_EXTS = {".jpg", ".jpeg", ".png"}


def make_split(data: Path, work: Path, val_per_class: int, limit: int, seed: int) -> Path:
    """``work/split_*/{train,val}/<class>/`` symlinks: ``val_per_class`` images of every class
    to val, the rest (at most ``limit`` in all, equal per class; 0 = no cap) to train."""
    classes = sorted(d.name for d in data.iterdir() if d.is_dir())
    if not classes:
        sys.exit(f"{data}: no class folders (expected the CIFAR-10 ImageFolder)")
    root = work / f"split_{limit}_{val_per_class}_{seed}"
    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    per_class = limit // len(classes) if limit else 0
    for c in classes:
        files = sorted(p for p in (data / c).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        files = [files[i] for i in rng.permutation(len(files))]
        if len(files) <= val_per_class:
            sys.exit(f"{data / c}: {len(files)} images, need more than --val-per-class")
        val, train = files[:val_per_class], files[val_per_class:]
        if per_class:
            train = train[:per_class]
        for name, part in (("train", train), ("val", val)):
            folder = root / name / c
            folder.mkdir(parents=True, exist_ok=True)
            for f in part:
                link = folder / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    (root / "done").write_text("ok\n")
    return root


def run(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[str, float]:
    """Run ``cmd``, tee its output to ``log``; (output, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); see {log}\n{tail}")
    return proc.stdout, wall


def run_cvcraft(split: Path, work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    out = work / "cvcraft_run"
    keys = [f"data={split}", f"recipe={args.recipe}", f"out={out}", "exist_ok=true",
            "progress=false", f"seed={args.seed}", f"threads={args.threads}"]  # fmt: skip
    if args.epochs:
        keys.append(f"epochs={args.epochs}")
    keys += args.set
    cmd = [sys.executable, "-m", "cvcraft", "train", "classify", *keys]
    _, wall = run(cmd, work / "cvcraft.log", env)
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "metrics.csv") as fh:  # the last epoch's train_ips (images/s)
        rows = list(csv.DictReader(fh))
    ips = float(rows[-1]["train_ips"]) if rows and "train_ips" in rows[-1] else float("nan")
    return {"top1": metrics["top1"], "wall": wall, "train": metrics.get("train_seconds"),
            "ips": ips}  # fmt: skip


def run_peer(split: Path, work: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(PEER), str(split / "train"), str(split / "val")]
    stdout, wall = run(cmd, work / "airbench.log", env)
    acc = re.search(r"Accuracy \(TTA\):\s*([0-9.]+)", stdout)
    # the final table row: |  eval  | ... | tta_val_acc | total_time_seconds |
    row = [line for line in stdout.splitlines() if re.search(r"\|\s*eval\s*\|", line)]
    train = float(row[-1].strip("| ").split("|")[-1]) if row else None
    return {"top1": float(acc.group(1)) if acc else float("nan"), "wall": wall, "train": train}


def bare_loop_ips(split: Path, args: argparse.Namespace) -> float:
    """Images/s of the recipe as a bare loop (target c): the same model, whitening fit, device
    augmentation, loss, optimizer and lookahead on a uint8 tensor already in memory, with no
    loader, trainer, hooks or evaluation. The first step is a warm-up and is not timed."""
    if str(ROOT) not in sys.path:  # this checkout's cvcraft, not another install's
        sys.path.insert(0, str(ROOT))
    import torch

    from cvcraft.data import load_classification
    from cvcraft.engine.lookahead import Lookahead
    from cvcraft.models import create_model
    from cvcraft.tasks.recipes import load_recipe
    from cvcraft.transforms.device_aug import DeviceAugment

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    r = load_recipe("classify", args.recipe)
    r.update(kv.split("=", 1) for kv in args.set)  # --set amp=true ... as the run gets them
    amp = str(r.get("amp", False)).lower() == "true"
    channels_last = str(r.get("channels_last", False)).lower() == "true"
    train = load_classification(str(split), cache=True).train
    batch, steps = int(r["batch"]), args.bare_steps
    n = min(len(train), batch * (steps + 1))
    images = torch.from_numpy(np.stack([train.load_image(i) for i in range(n)]))
    images = images.permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
    labels = torch.as_tensor(np.asarray(train.labels[:n]), dtype=torch.int64)
    mean = images.float().mean((0, 2, 3), keepdim=True)
    std = images.float().std((0, 2, 3), keepdim=True)
    model = create_model(r["model"], num_classes=10, **(r.get("model_kwargs") or {}))
    model.whiten.fit((images.float() - mean) / std)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=float(r["lr"]), momentum=float(r["momentum"]), nesterov=True,
                          weight_decay=float(r["weight_decay"]))  # fmt: skip
    aug = DeviceAugment(bool(r["alt_flip"]), int(r["device_translate"]), args.seed)
    la = Lookahead(int(r["lookahead"]), float(r["lookahead_decay"]))
    la.reset(model)
    g = torch.Generator().manual_seed(args.seed)
    model.train()
    t0 = 0.0
    for t in range(steps + 1):
        if t == 1:
            t0 = time.perf_counter()
        idx = torch.randint(0, n, (batch,), generator=g)
        x = (aug(images[idx], idx, 0, g).float() - mean) / std
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(
            logits.float(), labels[idx], label_smoothing=float(r["label_smoothing"])
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        la.step(model, t + 1, steps + 1)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="CIFAR-10 ImageFolder (train)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cvcraft_cifar10_speed"))
    ap.add_argument("--val-per-class", type=int, default=1000, help="held-out images per class")
    ap.add_argument("--limit", type=int, default=0, help="cap on training images (0 = all)")
    ap.add_argument("--epochs", type=int, default=0, help="cvcraft epochs (0 = the recipe's)")
    ap.add_argument("--recipe", default="speedrun")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-peer", action="store_true", help="only cvcraft's side")
    ap.add_argument("--set", nargs="*", default=[], help="extra cvcraft key=value overrides")
    ap.add_argument("--bare-steps", type=int, default=0,
                    help="also time the recipe as a bare loop N steps (target c)")  # fmt: skip
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: not found (the shared CIFAR-10 JPEGs; pass --data)")
    args.work.mkdir(parents=True, exist_ok=True)
    split = make_split(args.data, args.work, args.val_per_class, args.limit, args.seed)
    n_train = sum(1 for _ in (split / "train").rglob("*.*"))
    n_val = sum(1 for _ in (split / "val").rglob("*.*"))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT))
    print(f"split {split}: {n_train} train / {n_val} val images; {args.threads} threads")
    rows = {"cvcraft " + args.recipe: run_cvcraft(split, args.work, args, env)}
    if not args.skip_peer:
        rows["airbench94_cpu"] = run_peer(split, args.work, env)
    print(f"{'side':<20} {'top1 (TTA)':>10} {'train s':>9} {'wall s':>9}")
    for name, r in rows.items():
        train = f"{r['train']:.1f}" if r["train"] is not None else "-"
        print(f"{name:<20} {r['top1']:>10.4f} {train:>9} {r['wall']:>9.1f}")
    if args.bare_steps:
        ips = rows["cvcraft " + args.recipe]["ips"]
        bare = bare_loop_ips(split, args)
        print(f"images/s: cvcraft engine {ips:.1f}, bare loop {bare:.1f} ({ips / bare:.3f}x)")
    if len(rows) == 2:
        ours, peer = rows.values()
        print(
            f"ratio cvcraft/airbench: wall {ours['wall'] / peer['wall']:.2f}x, "
            f"accuracy {ours['top1'] - peer['top1']:+.4f}"
        )


if __name__ == "__main__":
    main()
