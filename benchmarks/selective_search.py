"""Selective search speed and recall: our Felzenszwalb segmentation against scikit-image's
(the oracle) on the same images in the same run, then the whole search per image and its
recall on shapes scenes.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/selective_search.py --reps 5

Speed: median of --reps alternating runs (ours, scikit-image) so background load hits both
alike; every pair is first checked to give the same partition.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from skimage.segmentation import felzenszwalb as sk_felzenszwalb

from cvcraft.classic.felzenszwalb import felzenszwalb
from cvcraft.classic.selective_search import selective_search
from cvcraft.data.detection_dataset import make_shapes_detection


def race(ours, peer, reps: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        peer()
        b.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, None, :2], gt[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], gt[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_b, area_g = (boxes[:, 2:] - boxes[:, :2]).prod(1), (gt[:, 2:] - gt[:, :2]).prod(1)
    return inter / (area_b[:, None] + area_g[None] - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scenes", type=int, default=20, help="shapes scenes for the search rows")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    rng = np.random.default_rng(0)
    images = {
        "shapes scene 256x256x3": make_shapes_detection(1, imgsz=256, split="val").sample(0).image,
        "uniform noise 256x256x3": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
    }
    print("| image, k (scale), sigma 0.8, min_size k | regions | ours ms | scikit-image ms |")
    print("|---|---|---|---|")
    for name, img in images.items():
        for k in (50, 100):
            ours = felzenszwalb(img, k, 0.8, k)
            ref = sk_felzenszwalb(img, k, 0.8, k)
            if not np.array_equal(ours, ref):
                raise SystemExit(f"{name} k={k}: the partitions differ")
            a, b = race(
                lambda img=img, k=k: felzenszwalb(img, k, 0.8, k),
                lambda img=img, k=k: sk_felzenszwalb(img, k, 0.8, k),
                args.reps,
            )
            print(f"| {name}, k={k} | {ours.max() + 1} | {a * 1e3:.1f} | {b * 1e3:.1f} |")

    d = make_shapes_detection(args.scenes, imgsz=128, split="val")
    for mode in ("fast", "quality"):
        n = args.scenes if mode == "fast" else max(2, args.scenes // 10)
        best, counts, t0 = [], [], time.perf_counter()
        for i in range(n):
            s = d.sample(i)
            boxes = selective_search(s.image, mode)
            counts.append(len(boxes))
            best.append(iou(boxes, s.boxes).max(0))
        per = (time.perf_counter() - t0) / n
        b = np.concatenate(best)
        print(
            f"selective_search {mode}, {n} shapes scenes 128 px ({len(b)} objects): "
            f"{per:.2f} s/image, {np.mean(counts):.0f} boxes/image, recall IoU>=0.5 "
            f"{(b >= 0.5).mean():.3f}, IoU>=0.7 {(b >= 0.7).mean():.3f}, MABO {b.mean():.3f}"
        )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
