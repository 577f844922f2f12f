"""Teaching benchmark: the same convolution three ways — naive loops, im2col + one matrix
product per group (both numpy, cvcraft.reference.conv), and torch's conv2d — forward and
forward+backward, float32, one thread. No target: it shows why im2col (and then a tuned
kernel) is how convolution is computed. Each row also checks the three outputs agree.

    python benchmarks/reference.py                       # small sizes, under a minute
    python benchmarks/reference.py --sizes 16 32 --channels 16 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cvcraft.reference import conv


def time_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``reps`` calls after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def rows_for(size: int, channels: int, kernel: int, stride: int, groups: int, reps: int) -> list:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, channels, size, size)).astype(np.float32)
    w = rng.normal(size=(channels, channels // groups, kernel, kernel)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    args = (stride, kernel // 2, 1, groups)
    y = conv.conv2d_im2col(x, w, b, *args)
    dy = rng.normal(size=y.shape).astype(np.float32)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))

    def torch_fwd():
        with torch.no_grad():
            return F.conv2d(xt, wt, bt, *args[:2], 1, groups)

    def torch_fwd_bwd():
        F.conv2d(xt, wt, bt, *args[:2], 1, groups).backward(torch.tensor(dy))

    err = max(
        float(np.abs(conv.conv2d_naive(x, w, b, *args) - y).max()),
        float(np.abs(torch_fwd().numpy() - y).max()),
    )
    shape = f"4x{channels}x{size}x{size} k{kernel} s{stride} g{groups}"
    out = []

    def naive_fwd_bwd():
        return conv.conv2d_naive(x, w, b, *args), conv.conv2d_naive_backward(dy, x, w, *args)

    def im2col_fwd_bwd():
        return conv.conv2d_im2col(x, w, b, *args), conv.conv2d_im2col_backward(dy, x, w, *args)

    for label, naive, im2col, peer in (
        ("fwd", lambda: conv.conv2d_naive(x, w, b, *args),
         lambda: conv.conv2d_im2col(x, w, b, *args), torch_fwd),
        ("fwd+bwd", naive_fwd_bwd, im2col_fwd_bwd, torch_fwd_bwd),
    ):  # fmt: skip
        t_naive = time_ms(naive, max(1, reps // 5))
        t_im2col = time_ms(im2col, reps)
        t_torch = time_ms(peer, reps)
        out.append((shape, label, t_naive, t_im2col, t_torch, err))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {a.threads}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    header = ("input, conv", "pass", "naive ms", "im2col ms", "torch ms", "naive/im2col",
              "im2col/torch", "max |diff|")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    configs = [(3, 1, 1), (3, 2, 1), (3, 1, a.channels)]  # plain, strided, depthwise
    for size in a.sizes:
        for kernel, stride, groups in configs:
            for shape, label, tn, ti, tt, err in rows_for(
                size, a.channels, kernel, stride, groups, a.reps
            ):
                print(f"| {shape} | {label} | {tn:.2f} | {ti:.2f} | {tt:.3f} | "
                      f"{tn / ti:.1f}x | {ti / tt:.1f}x | {err:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
