"""Compression on a small trained classifier: int8 (static, dynamic) and 50 % L1-channel
pruning against fp32 — accuracy, parameters, MACs, size and CPU latency, same process.

The classifier is a ResNet-20 trained briefly on the synthetic shapes (``--weights`` to
reuse a checkpoint, else ``cvcraft train classify`` runs first, ~1 min per epoch on one
core). Pruned models are measured right after pruning and after ``--ft-epochs`` of
fine-tuning by ``cvcraft prune ... finetune_epochs=N`` (a classify training run: the
Trainer, the run's augmentation, lr ``--ft-lr``). Latency: median of ``--reps`` forwards
at batch 1 and 32 after warm-up, ``torch.set_num_threads(--threads)``.

    OMP_NUM_THREADS=1 python benchmarks/compress.py --weights runs/.../best.pt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from cvcraft.data import ClassifyDataset, build_loader, load_classification
from cvcraft.engine.quantize import quantize_dynamic_linear, quantize_static, quantized_modules
from cvcraft.models.profile import count_macs, measure_latency
from cvcraft.tasks.classify.task import evaluate_classifier
from cvcraft.tasks.compress_tool import quantization_aware_finetune, run_prune
from cvcraft.tasks.model_tools import load_classifier_any, preprocess_of
from cvcraft.transforms import default_classify_transforms


def train_if_needed(args: argparse.Namespace) -> Path:
    if args.weights:
        return Path(args.weights)
    out = Path(args.run)
    cmd = [sys.executable, "-m", "cvcraft", "train", "classify", f"data={args.data}",
           "model=resnet20", f"epochs={args.epochs}", "imgsz=32", "batch=64", "workers=0",
           f"out={out}", "plots=false", "progress=false"]  # fmt: skip
    print("training:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    return out / "best.pt"


def size_mb(model: torch.nn.Module) -> float:
    import io

    buf = io.BytesIO()
    if quantized_modules(model):  # int8 modules keep packed weights outside the state_dict
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), buf)
    else:
        torch.save(model.state_dict(), buf)
    return len(buf.getvalue()) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="")
    p.add_argument("--data", default="shapes")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--run", default="runs/bench_compress")
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    weights = train_if_needed(args)
    cpu = torch.device("cpu")
    model, meta = load_classifier_any(weights, cpu)
    pre = preprocess_of(meta, cpu)
    splits = load_classification(args.data, seed=int(meta.get("config", {}).get("seed", 0)),
                                 imgsz_hint=32)  # fmt: skip
    tf = default_classify_transforms(32, train=False)
    val = build_loader(ClassifyDataset(splits.val, tf, seed=0), 128, shuffle=False, workers=0)

    pres: dict[int, torch.nn.Module] = {}  # a variant with its own normalisation

    def top1(m: torch.nn.Module) -> float:
        p_ = pres.get(id(m), pre)
        return 100 * float(evaluate_classifier(m, val, p_, len(splits.classes), cpu)["top1"])

    t0 = time.perf_counter()
    pick = np.linspace(0, len(splits.train) - 1, 512).round().astype(np.int64)
    cal_loader = build_loader(ClassifyDataset(splits.train.subset(pick), tf, seed=0), 64,
                              shuffle=False, workers=0)  # fmt: skip
    calib = [pre(b["images"]) for b in cal_loader]
    variants = {
        "fp32": model,
        "int8 static (fx, x86)": quantize_static(model, calib, "x86"),
        "int8 dynamic (Linear)": quantize_dynamic_linear(model),
        f"int8 QAT ({args.qat_epochs} ep)": quantization_aware_finetune(
            model, splits.train, meta, pre,
            {"qat_epochs": str(args.qat_epochs), "qat_lr": str(args.qat_lr)}, 64,
        ),
    }  # fmt: skip
    res = run_prune({
        "weights": str(weights), "method": "l1_channel", "amount": "0.5", "data": args.data,
        "n": "64", "out": str(Path(args.run) / "pruned_l1.pt"),
        "finetune_epochs": str(args.ft_epochs), "finetune_lr": str(args.ft_lr),
    })  # fmt: skip
    variants["pruned 50% channels"] = load_classifier_any(res["path"], cpu)[0]
    tuned, tuned_meta = load_classifier_any(res["finetuned"], cpu)
    pres[id(tuned)] = preprocess_of(tuned_meta, cpu)  # the fine-tune run's statistics
    variants[f"pruned 50% + {args.ft_epochs} ep fine-tune"] = tuned
    print(f"(quantize/prune/fine-tune took {time.perf_counter() - t0:.0f} s)")

    base = None
    print(f"\nthreads={args.threads}, val images={len(splits.val)}, weights={weights}")
    head = f"{'variant':<30} {'top1 %':>7} {'params':>8} {'MMACs':>7} {'MB':>6} "
    print(head + f"{'ms b=1':>8} {'ms b=32':>8} {'x fp32 b=1':>10} {'x fp32 b=32':>11}")
    for name, m in variants.items():
        m.eval()
        macs = count_macs(m, (3, 32, 32))["total"] / 1e6 if not quantized_modules(m) else None
        params = sum(p.numel() for p in m.parameters())
        lat1 = measure_latency(m, (3, 32, 32), 1, warmup=5, reps=args.reps)
        lat32 = measure_latency(m, (3, 32, 32), 32, warmup=3, reps=max(5, args.reps // 3))
        base = base or (lat1, lat32)
        macs_s = f"{macs:7.2f}" if macs is not None else f"{'(same)':>7}"
        params_s = f"{params:8d}" if params else f"{'(int8)':>8}"
        speed = f"{base[0] / lat1:10.2f} {base[1] / lat32:11.2f}"
        print(f"{name:<30} {top1(m):7.2f} {params_s} {macs_s} {size_mb(m):6.3f} "
              f"{lat1:8.3f} {lat32:8.2f} {speed}")  # fmt: skip


if __name__ == "__main__":
    main()
