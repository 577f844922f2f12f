"""Conv-BN fusion and RepVGG re-parameterization: same outputs, less time, in one run.

For each model: max |fused - original| on a random batch (eval mode) and the median CPU
forward latency of both, measured alternately so background load hits both alike.

    python benchmarks/fusion.py --models resnet18 resnet50 repvgg_a0 --batch 8 --reps 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from cvcraft.models import create_model
from cvcraft.nn.fuse import fuse_model
from cvcraft.nn.repvgg import reparameterize_model


def _time(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x)
    return (time.perf_counter() - t0) * 1e3


@torch.no_grad()
def bench(name: str, batch: int, reps: int, size: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(name).eval()
    for m in model.modules():  # non-trivial BN statistics, so the fold is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = (
        reparameterize_model(copy.deepcopy(model))
        if name.startswith("repvgg")
        else fuse_model(model)
    )
    x = torch.randn(batch, 3, size, size)
    diff = float((fused(x) - model(x)).abs().max())
    a, b = [], []
    for _ in range(reps):
        a.append(_time(model, x))
        b.append(_time(fused, x))
    ta, tb = statistics.median(a), statistics.median(b)
    return {"max_abs_diff": diff, "original_ms": ta, "fused_ms": tb, "speedup": ta / tb}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "repvgg_a0"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.size}px, median of {args.reps}"
    )
    print(f"{'model':<12} {'max|diff|':>10} {'original ms':>12} {'fused ms':>10} {'speedup':>8}")
    for name in args.models:
        r = bench(name, args.batch, args.reps, args.size)
        print(
            f"{name:<12} {r['max_abs_diff']:>10.2e} {r['original_ms']:>12.1f} "
            f"{r['fused_ms']:>10.1f} {r['speedup']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
