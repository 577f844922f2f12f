"""Training-step images/s of the speedrun network (SpeedNet) under each precision / memory
layout / compile choice, on this CPU (issue 23: "bf16 autocast with channels_last ... measure
it; torch.compile where it pays on the CPU -- measure it").

One training step = forward under the choice, label-smoothed cross-entropy in fp32, backward,
Nesterov SGD step, on random (B, 3, 32, 32) inputs. Each variant warms up (compiling, for the
compiled ones; the compile time is printed separately) and then times ``--steps`` steps; the
best of ``--repeats`` is reported. Run it on a quiet machine:

    python benchmarks/cifar10_precision.py                  # widths 64/256/256 (recipe=speedrun)
    python benchmarks/cifar10_precision.py --widths 128 384 384   # recipe=long's network
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's cvcraft, not another install's
    sys.path.insert(0, str(ROOT))

from cvcraft.models import create_model  # noqa: E402


def step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, amp: bool):
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.2)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def measure(widths, batch, amp, channels_last, compiled, steps, repeats) -> tuple[float, float]:
    """(images/s, warm-up seconds) of one variant."""
    torch.manual_seed(0)
    model = create_model("speednet", num_classes=10, widths=widths)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.85, nesterov=True)
    fwd = torch.compile(model) if compiled else model
    step = step_fn(fwd, opt, amp)
    t0 = time.perf_counter()
    for _ in range(2):  # warm-up: compilation, allocator, oneDNN primitive caches
        step(x, y)
    warm = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        best = min(best, time.perf_counter() - t0)
    return steps * batch / best, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"torch {torch.__version__}, {args.threads} threads, oneDNN bf16 support: {cpu_bf16}")
    print(f"SpeedNet widths {args.widths}, batch {args.batch}, {args.steps} steps x best of "
          f"{args.repeats}")  # fmt: skip
    variants = [(amp, cl, comp) for comp in (False, True) for amp in (False, True)
                for cl in (False, True)]  # fmt: skip
    base = None
    print(f"{'variant':<32} {'images/s':>9} {'vs fp32':>8} {'warm-up s':>10}")
    for amp, cl, comp in variants:
        if comp and args.no_compile:
            continue
        name = f"{'bf16' if amp else 'fp32'}{' channels_last' if cl else ''}"
        name += " compiled" if comp else ""
        ips, warm = measure(args.widths, args.batch, amp, cl, comp, args.steps, args.repeats)
        base = base or ips
        print(f"{name:<32} {ips:>9.1f} {ips / base:>7.2f}x {warm:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
