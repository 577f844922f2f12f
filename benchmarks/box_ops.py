"""Box ops speed: every cvcraft NMS method and the pairwise IoU family vs torchvision.ops.

NMS runs on detector-like boxes (jittered copies of objects in a 640 x 640 image, uniform
scores, fixed seed) at 1k and 10k boxes; each method is timed next to
``torchvision.ops.nms`` on the same input in the same run. Pairwise IoU/GIoU/DIoU/CIoU are
timed at 1k x 1k next to their ``torchvision.ops`` counterparts (SIoU has no peer there).
The ratio column is ours / torchvision: > 1 means slower. Greedy NMS *is* torchvision's
kernel plus bookkeeping; the other methods do more work by design (Soft-NMS is sequential,
Fast/Matrix NMS build an (N, N) matrix), so their ratio is the cost of the method.

    python benchmarks/box_ops.py                     # 1k and 10k boxes, 1 thread
    python benchmarks/box_ops.py --sizes 1000 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torchvision

from cvcraft.ops import boxes as B
from cvcraft.ops.nms import NMS_METHODS, nms


def detector_boxes(n: int, seed: int, objects: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """n float32 xyxy boxes clustered around ``objects`` ground truths, plus scores."""
    gen = torch.Generator().manual_seed(seed)
    size = torch.rand(objects, 2, generator=gen) * 150 + 16
    centre = torch.rand(objects, 2, generator=gen) * (640 - size) + size / 2
    which = torch.randint(0, objects, (n,), generator=gen)
    wh = size[which] * (1 + 0.25 * torch.randn(n, 2, generator=gen)).clamp(min=0.3)
    c = centre[which] + torch.randn(n, 2, generator=gen) * size[which] * 0.15
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1).clamp(0, 640)
    return boxes, torch.rand(n, generator=gen)


def time_ms(
    fn: Callable[[], object], budget_s: float = 0.5, max_reps: int = 15, warmup: bool = True
) -> float:
    """Median wall time of ``fn`` in ms (after one warm-up call), within a time budget."""
    if warmup:
        fn()
    times: list[float] = []
    start = time.perf_counter()
    min_reps = min(3, max_reps)
    while len(times) < max_reps and (
        len(times) < min_reps or time.perf_counter() - start < budget_s
    ):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def nms_rows(sizes: Sequence[int], seed: int, score_threshold: float) -> list[dict]:
    rows = []
    for n in sizes:
        boxes, scores = detector_boxes(n, seed)
        peer = time_ms(lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.5))
        big = n > 2000  # the slow methods take seconds here: one cold run is enough
        for method in NMS_METHODS:
            kept = 0

            def run(b=boxes, s=scores, m=method) -> None:
                nonlocal kept
                kept = len(nms(b, s, 0.5, m, score_threshold=score_threshold).keep)

            ours = time_ms(run, max_reps=1 if big else 15, warmup=not big)
            rows.append(
                {"op": f"nms {method}", "size": f"{n}", "ours_ms": ours, "peer_ms": peer,
                 "peer": "tv.nms", "kept": kept}
            )  # fmt: skip
    return rows


def iou_rows(n: int, seed: int) -> list[dict]:
    a, _ = detector_boxes(n, seed)
    b, _ = detector_boxes(n, seed + 1)
    pairs = [
        ("box_iou", B.box_iou, torchvision.ops.box_iou),
        ("generalized_box_iou", B.generalized_box_iou, torchvision.ops.generalized_box_iou),
        ("distance_box_iou", B.distance_box_iou, torchvision.ops.distance_box_iou),
        ("complete_box_iou", B.complete_box_iou, torchvision.ops.complete_box_iou),
        ("siou", B.siou, None),
    ]
    rows = []
    for name, ours_fn, peer_fn in pairs:
        ours = time_ms(lambda f=ours_fn: f(a, b))
        peer = time_ms(lambda f=peer_fn: f(a, b)) if peer_fn is not None else float("nan")
        rows.append(
            {"op": name, "size": f"{n}x{n}", "ours_ms": ours, "peer_ms": peer,
             "peer": "tv" if peer_fn else "-", "kept": ""}
        )  # fmt: skip
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'op':<22}{'size':>11}{'ours ms':>11}{'peer':>8}{'peer ms':>10}{'ratio':>8}{'kept':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r["ours_ms"] / r["peer_ms"] if r["peer_ms"] == r["peer_ms"] else float("nan")
        lines.append(
            f"{r['op']:<22}{r['size']:>11}{r['ours_ms']:>11.2f}{r['peer']:>8}"
            f"{r['peer_ms']:>10.2f}{ratio:>8.2f}{r['kept']!s:>7}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table, return its rows (dicts) for other scripts."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="NMS box counts")
    p.add_argument("--iou-size", type=int, default=1000, help="N for the N x N IoU matrices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument(
        "--score-threshold", type=float, default=0.001,
        help="score floor for our NMS methods (Bodla's 0.001 for Soft-NMS)",
    )  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{args.threads} thread(s), seed {args.seed}"
    )
    rows = iou_rows(args.iou_size, args.seed) + nms_rows(
        args.sizes, args.seed, args.score_threshold
    )
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
