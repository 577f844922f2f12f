"""Multi-label and retrieval in one run: metric speed against scikit-learn, multi-label mAP
on coco128 (train2017 -> val2017 image-level labels) and retrieval rank-1 / mAP on MNIST
digits used as identities.

    OMP_NUM_THREADS=1 python benchmarks/multilabel_retrieval.py [--skip-train]

Speed: median of --reps alternating runs (ours, peer). Ours: per-class AP of an (N, C)
score matrix in one vectorized pass; peer: sklearn.metrics.average_precision_score (macro).
Retrieval: ours on a (Q, G) distance matrix at once; peer: sklearn's AP per query (the loop
the re-ID protocol describes). Training runs use `cvcraft train` exactly as a user would.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvcraft.cli import run  # noqa: E402
from cvcraft.metrics.multilabel import average_precision  # noqa: E402
from cvcraft.metrics.retrieval import retrieval_metrics  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def race(ours, peer, reps: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(reps):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        peer()
        b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def metric_speed(reps: int) -> None:
    rng = np.random.default_rng(0)
    n, c = 20000, 80
    t = (rng.random((n, c)) < 0.05).astype(np.int8)
    s = rng.random((n, c)) + 0.5 * t
    ours, peer = race(lambda: average_precision(s, t), lambda: average_precision_score(t, s), reps)
    check = abs(np.nanmean(average_precision(s, t)) - average_precision_score(t, s))
    print(f"mAP {n}x{c}: ours {ours * 1e3:.1f} ms, sklearn {peer * 1e3:.1f} ms, "
          f"ratio {peer / ours:.1f}x (|diff| {check:.1e})")  # fmt: skip
    q, g = rng.normal(size=(1000, 64)), rng.normal(size=(5000, 64))
    qid, gid = rng.integers(0, 200, 1000), rng.integers(0, 200, 5000)

    def per_query() -> None:
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        dist = 1 - qn @ gn.T
        [average_precision_score(gid == qid[i], -dist[i]) for i in range(len(q))]

    ours, peer = race(lambda: retrieval_metrics(q, g, qid, gid), per_query, max(1, reps // 2))
    print(f"retrieval 1000 queries x 5000 gallery: ours {ours * 1e3:.0f} ms, "
          f"sklearn per query {peer * 1e3:.0f} ms, ratio {peer / ours:.1f}x")  # fmt: skip


def mnist_folder(src: Path, dst: Path) -> Path:
    """The 10,000 MNIST test digits as a class-per-identity PNG folder (digit = identity)."""
    from cvcraft.data.idx import read_idx
    from cvcraft.data.io import write_image

    data = read_idx(src / "t10k-images-idx3-ubyte.gz", src / "t10k-labels-idx1-ubyte.gz")
    for i in range(len(data)):
        d = dst / str(int(data.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / f"{i:05d}.png", data.load_image(i))
    return dst


def train_runs(epochs_ml: int, epochs_emb: int, parts: tuple[str, ...]) -> None:
    tmp = Path(tempfile.mkdtemp())
    coco = SHARED / "coco128" / "object_detection"
    if coco.is_dir() and "coco" in parts:
        t0 = time.perf_counter()
        m = run(["train", "multilabel", f"data={coco}", "model=resnet18", "imgsz=128",
                 f"epochs={epochs_ml}", "batch=16", "optimizer=adamw", "lr=0.001",
                 "weight_decay=0.05", "schedule=cosine", "crop=rrc", "scale_min=0.5",
                 "loss=asl", "workers=1", "progress=false", "plots=false",
                 f"out={tmp / 'coco'}"])  # fmt: skip
        prior = json.loads((tmp / "coco" / "metrics.json").read_text())
        t = np.load(tmp / "coco" / "val_predictions.npz")["targets"]
        has = t.sum(0) > 0
        chance = float(t[:, has].mean(0).mean())  # AP of a constant score = prevalence
        print(f"coco128 chance-level map (mean val prevalence): {chance:.4f}")
        print(f"coco128 multi-label (train2017 -> val2017, 80 classes, resnet18 from scratch, "
              f"{epochs_ml} epochs, ASL): map {m['map']:.4f} over {prior['map_classes']} "
              f"classes, f1_micro_tuned {m['f1_micro_tuned']:.4f}, "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    mnist = SHARED / "mnist"
    if mnist.is_dir() and "mnist" in parts:
        folder = mnist_folder(mnist, tmp / "mnist_digits")
        t0 = time.perf_counter()
        m = run(["train", "embed", f"data={folder}", "model=resnet20", "imgsz=32",
                 f"epochs={epochs_emb}", "p=10", "k=8", "batch=256", "optimizer=adamw",
                 "lr=0.002", "weight_decay=0.05", "schedule=cosine", "hflip=0", "dim=64",
                 "workers=1", "progress=false", "plots=false", "val_fraction=0.2",
                 f"out={tmp / 'mnist'}"])  # fmt: skip
        print(f"MNIST digits as identities (10k test digits, 80/20 split, leave-one-out "
              f"retrieval on val, triplet batch-hard, resnet20, {epochs_emb} epochs): "
              f"rank1 {m['rank1']:.4f}, rank5 {m['rank5']:.4f}, map {m['map']:.4f}, "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--parts", default="coco,mnist", help="training parts to run")
    ap.add_argument("--epochs-ml", type=int, default=15)
    ap.add_argument("--epochs-emb", type=int, default=3)
    a = ap.parse_args()
    metric_speed(a.reps)
    if not a.skip_train:
        train_runs(a.epochs_ml, a.epochs_emb, tuple(a.parts.split(",")))


if __name__ == "__main__":
    main()
