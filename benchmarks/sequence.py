"""Sequence-model speed: our LSTM/GRU (equations, one Python step per frame) and CTC loss
(forward algorithm in log space) next to torch's ATen kernels, in the same run; the CRNN
forward + backward at training size; beam search against greedy decoding.

Everything runs on one thread (``torch.set_num_threads(1)``). Each case is timed ``--reps``
times after a warm-up and the *fastest* run is kept (robust on a busy machine).
``ratio`` = torch time / ours (> 1: we are faster; < 1: torch's fused kernels win).

    python benchmarks/sequence.py              # ~1 minute
    python benchmarks/sequence.py --reps 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cvcraft.losses.ctc import ctc_loss
from cvcraft.models import create_model
from cvcraft.models.recognition.ctc_decode import ctc_beam_search, ctc_greedy_decode
from cvcraft.nn.recurrent import GRU, LSTM


def best_time(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        out = module(x)
        (out[0] if isinstance(out, tuple) else out).sum().backward()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    # Recurrent layers: CRNN-sized sequences (T=32, B=32) and a longer one.
    for name, ours_cls, ref_cls in (("lstm", LSTM, torch.nn.LSTM), ("gru", GRU, torch.nn.GRU)):
        for T, B, I, H, L in ((32, 32, 256, 96, 2), (128, 16, 64, 128, 1)):
            ref = ref_cls(I, H, num_layers=L, bidirectional=True)
            ours = ours_cls(I, H, num_layers=L, bidirectional=True)
            ours.load_state_dict(ref.state_dict())
            x = torch.randn(T, B, I)
            t_ours = best_time(fwd_bwd(ours, x), args.reps)
            t_ref = best_time(fwd_bwd(ref, x), args.reps)
            rows.append((f"{name} bi x{L} T={T} B={B} H={H} fwd+bwd", t_ours, t_ref))
    # CTC loss: forward + backward.
    for T, B, C, S in ((32, 32, 11, 5), (100, 16, 40, 30)):
        logits = torch.randn(T, B, C, requires_grad=True)
        targets = torch.randint(1, C, (B, S))
        il, tl = torch.full((B,), T), torch.full((B,), S)

        def run(fn=None, logits=logits, targets=targets, il=il, tl=tl) -> None:
            logits.grad = None
            fn(F.log_softmax(logits, 2), targets, il, tl).backward()

        t_ours = best_time(lambda: run(ctc_loss), args.reps)
        t_ref = best_time(lambda: run(F.ctc_loss), args.reps)
        rows.append((f"ctc loss T={T} B={B} C={C} S={S} fwd+bwd", t_ours, t_ref))
    # CRNN at training size (no torch twin: shown alone).
    model = create_model("crnn")
    x = torch.rand(32, 1, 32, 128)
    t_crnn = best_time(fwd_bwd(model, x), args.reps)
    # Decoding a CRNN-sized batch: beam search vs greedy.
    lp = F.log_softmax(torch.randn(32, 32, 11) * 3, 2)
    t_greedy = best_time(lambda: ctc_greedy_decode(lp), args.reps)
    t_beam = best_time(lambda: ctc_beam_search(lp, beam=8), args.reps)
    print(f"{'case':<44} {'ours ms':>9} {'torch ms':>9} {'ratio':>7}")
    for name, a, b in rows:
        print(f"{name:<44} {a * 1e3:>9.1f} {b * 1e3:>9.1f} {b / a:>7.2f}")
    print(f"{'crnn fwd+bwd B=32 1x32x128':<44} {t_crnn * 1e3:>9.1f}")
    print(f"{'ctc greedy decode T=32 B=32 C=11':<44} {t_greedy * 1e3:>9.2f}")
    print(f"{'ctc beam search (8) T=32 B=32 C=11':<44} {t_beam * 1e3:>9.1f}")


if __name__ == "__main__":
    main()
