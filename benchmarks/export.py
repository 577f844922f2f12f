"""ONNX Runtime against eager PyTorch: CPU latency of the same exported model, same threads.

For each model: export with ``cvcraft.engine.export`` (dynamic batch), check parity, then
time the median of ``--reps`` forwards at batch 1 and ``--batch`` after warm-up, eager
(``torch.no_grad``, eval) and onnxruntime (``intra_op_num_threads = --threads``).
Random weights: latency does not depend on them.

    OMP_NUM_THREADS=1 python benchmarks/export.py
    python benchmarks/export.py --models resnet18,mobilenet_v2 --size 224 --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from cvcraft.engine.export import OnnxModel, export_model
from cvcraft.models import create_model
from cvcraft.models.profile import measure_latency

DEFAULT = "resnet20:32,resnet18_cifar:32,mobilenet_v2:96,vit_tiny_patch4_32:32,resnet50:128"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT, help="name:side,... (side = input H = W)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}, batch 1 and {args.batch}, median of {args.reps} runs")
    print(f"{'model':<22} {'side':>4} {'parity':>9} {'torch b1':>9} {'ort b1':>8} {'x':>5} "
          f"{'torch bN':>9} {'ort bN':>8} {'x':>5}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            name, side = spec.split(":")
            s = int(side)
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, **({"img_size": s} if "vit" in name else {}))
            model.eval()
            t0 = time.perf_counter()
            path = Path(tmp) / f"{name}.onnx"
            rep = export_model(model, torch.randn(1, 3, s, s), path, "onnx", dynamic=True,
                               check=torch.randn(2, 3, s, s))  # fmt: skip
            ort = OnnxModel(path, threads=args.threads)
            row = []
            for b in (1, args.batch):
                reps = args.reps if b == 1 else max(5, args.reps // 2)
                t = measure_latency(model, (3, s, s), b, warmup=3, reps=reps)
                o = measure_latency(ort, (3, s, s), b, warmup=3, reps=reps)
                row += [t, o, t / o]
            print(f"{name:<22} {s:>4} {rep['max_abs_diff']:9.1e} {row[0]:9.2f} {row[1]:8.2f} "
                  f"{row[2]:5.2f} {row[3]:9.1f} {row[4]:8.1f} {row[5]:5.2f}"
                  f"   ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
