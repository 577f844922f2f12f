"""CIFAR-10 with the cvcraft engine vs a bare hand-written PyTorch loop, in one run.

Trains a CIFAR-sized ResNet through the same code path as ``cvcraft train classify`` on
../shared/data/cifar10/train (45,000 train / 5,000 val, stratified, seed 0) and reports
val top-1, wall time and train images/s. Then it times the same model, batch size and
precision in a bare loop (in-memory uint8 tensors, random crop + flip in torch, normalize,
forward, loss, backward, SGD step) to measure the engine's overhead.

    python benchmarks/cifar10_classify.py --model resnet20 --epochs 15 --batch 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cvcraft.data import load_classification
from cvcraft.engine.trainer import Trainer
from cvcraft.models import create_model
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"


def bare_loop_ips(model_name: str, batch: int, amp: bool, steps: int, channels_last: bool) -> float:
    """Images/s of a minimal training loop on pre-decoded data (no engine, no loader)."""
    splits = load_classification(str(DATA), val_fraction=0.1, seed=0, cache=True)
    n = min(len(splits.train), batch * (steps + 5))
    imgs = torch.from_numpy(np.stack([splits.train.load_image(i) for i in range(n)]))
    imgs = imgs.permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
    labels = torch.from_numpy(splits.train.labels[:n])
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    mean = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1)
    std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1)
    model.train()
    t0, seen = 0.0, 0
    for step in range(steps + 5):
        if step == 5:  # warm-up steps excluded from timing
            t0, seen = time.perf_counter(), 0
        i = (step * batch) % (n - batch)
        x = imgs[i : i + batch]
        y = labels[i : i + batch]
        # pad-4 random crop + horizontal flip, the same augmentation as the engine's
        x = torch.nn.functional.pad(x, (4, 4, 4, 4))
        dx, dy = np.random.randint(0, 9, 2)
        x = x[:, :, dy : dy + 32, dx : dx + 32]
        if np.random.rand() < 0.5:
            x = x.flip(3)
        x = (x.float() - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        seen += batch
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bare-steps", type=int, default=60)
    ap.add_argument("--out", default="runs/bench/cifar10")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the 45k train images")
    ap.add_argument("--skip-train", action="store_true", help="only time the bare loop")
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: this benchmark needs the shared CIFAR-10 JPEGs")
    torch.set_num_threads(torch.get_num_threads())
    result: dict[str, object] = {
        "model": args.model,
        "batch": args.batch,
        "amp": args.amp,
        "threads": torch.get_num_threads(),
    }
    if not args.skip_train:
        cfg = task_config(
            "classify",
            {
                "data": str(DATA),
                "model": args.model,
                "epochs": args.epochs,
                "batch": args.batch,
                "imgsz": 32,
                "lr": args.lr,
                "optimizer": "sgd",
                "nesterov": True,
                "weight_decay": 5e-4,
                "schedule": "one_cycle",
                "warmup_epochs": 0.0,
                "val_fraction": 0.1,
                "seed": 0,
                "cache": True,
                "workers": args.workers,
                "amp": args.amp,
                "channels_last": args.channels_last,
                "out": args.out,
                "progress": False,
                "crop": "pad",
                "hflip": 0.5,
                "fraction": args.fraction,
            },
        )
        t0 = time.perf_counter()
        metrics = Trainer(ClassifyTask(cfg), cfg).fit()
        result.update(
            {
                "epochs": args.epochs,
                "fraction": args.fraction,
                "val_top1": metrics["top1"],
                "wall_seconds": time.perf_counter() - t0,
                "engine_train_ips": metrics["train_ips"],
            }
        )
    result["bare_loop_ips"] = bare_loop_ips(
        args.model, args.batch, args.amp, args.bare_steps, args.channels_last
    )
    if "engine_train_ips" in result:
        result["engine_vs_bare"] = float(result["engine_train_ips"]) / float(
            result["bare_loop_ips"]
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
