"""Classic CV in one run: HOG / LBP extraction speed and SSIM speed against scikit-image,
and HOG+SVM / LBP+SVM accuracy on a CIFAR-10 split next to the same pipelines written
directly with scikit-learn + scikit-image.

    OMP_NUM_THREADS=1 python benchmarks/classic.py --train 5000 --val 1000

Speed: median of --reps alternating runs (ours, peer) so background load hits both alike.
Our HOG and LBP run on the whole batch at once (the way features are extracted for
training); scikit-image is called per image, as its API requires.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "train"


def load_split(n_train: int, n_val: int, seed: int = 0):
    """A class-balanced random split of the CIFAR-10 train JPEGs. -> uint8 RGB arrays."""
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: the accuracy part needs the shared CIFAR-10 copy")
    classes = sorted(p.name for p in DATA.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    per_tr, per_va = n_train // len(classes), n_val // len(classes)
    tr, va = [], []
    for c, name in enumerate(classes):
        files = sorted((DATA / name).glob("*.jpg"))
        pick = rng.choice(len(files), per_tr + per_va, replace=False)
        chosen = [(str(files[i]), c) for i in pick]
        tr += chosen[:per_tr]
        va += chosen[per_tr:]

    def read(items):
        x = np.stack([cv2.imread(p)[..., ::-1] for p, _ in items])
        return x, np.array([c for _, c in items])

    return (*read(tr), *read(va))


def timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def race(ours, peer, reps: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(reps):
        a.append(timed(ours, 1))
        b.append(timed(peer, 1))
    return statistics.median(a), statistics.median(b)


def speed(images: np.ndarray, reps: int) -> list[tuple[str, float, float, str]]:
    from skimage.feature import hog as sk_hog
    from skimage.feature import local_binary_pattern as sk_lbp
    from skimage.metrics import structural_similarity

    from cvcraft.classic.hog import hog
    from cvcraft.classic.lbp import local_binary_pattern
    from cvcraft.metrics.image import ssim

    grey = cv2.cvtColor(images.reshape(-1, 32, 3), cv2.COLOR_RGB2GRAY).reshape(-1, 32, 32)
    rows = []
    ok = np.allclose(hog(grey, 9, 8, 2), [sk_hog(g, 9, (8, 8), (2, 2)) for g in grey], atol=1e-6)
    t = race(lambda: hog(grey, 9, 8, 2), lambda: [sk_hog(g, 9, (8, 8), (2, 2)) for g in grey], reps)
    rows.append((f"HOG grey, {len(grey)} images 32x32", *t, f"equal={ok}"))
    ok = np.allclose(
        hog(images, 9, 8, 2, channel_axis=-1),
        [sk_hog(g, 9, (8, 8), (2, 2), channel_axis=-1) for g in images],
        atol=1e-6,
    )
    t = race(
        lambda: hog(images, 9, 8, 2, channel_axis=-1),
        lambda: [sk_hog(g, 9, (8, 8), (2, 2), channel_axis=-1) for g in images],
        reps,
    )
    rows.append((f"HOG colour, {len(grey)} images 32x32x3", *t, f"equal={ok}"))
    ok = np.array_equal(
        local_binary_pattern(grey, 8, 1, "uniform"), [sk_lbp(g, 8, 1, "uniform") for g in grey]
    )
    t = race(
        lambda: local_binary_pattern(grey, 8, 1, "uniform"),
        lambda: [sk_lbp(g, 8, 1, "uniform") for g in grey],
        reps,
    )
    rows.append((f"LBP P=8 R=1 uniform, {len(grey)} images", *t, f"equal={ok}"))
    big = cv2.resize(images[0], (512, 512), interpolation=cv2.INTER_CUBIC)
    a = cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)
    b = cv2.GaussianBlur(a, (0, 0), 1.0)
    kw = dict(data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ok = abs(ssim(a, b) - structural_similarity(a, b, **kw)) < 1e-9
    t = race(lambda: ssim(a, b), lambda: structural_similarity(a, b, **kw), reps)
    rows.append(("SSIM 512x512 grey (Gaussian window)", *t, f"equal={ok}"))
    return rows


def accuracy(xtr, ytr, xva, yva) -> list[tuple[str, float, float, float, float]]:
    from skimage.feature import hog as sk_hog
    from skimage.feature import local_binary_pattern as sk_lbp
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC

    from cvcraft.classic.ml import create_classic_model

    def sk_hog_feats(x):
        return np.stack([sk_hog(i, 9, (8, 8), (2, 2), channel_axis=-1) for i in x])

    def sk_lbp_feats(x):
        g = cv2.cvtColor(x.reshape(-1, 32, 3), cv2.COLOR_RGB2GRAY).reshape(-1, 32, 32)
        out = []
        for im in g:
            codes = sk_lbp(im, 8, 1, "uniform").astype(int)
            cells = codes.reshape(4, 8, 4, 8).transpose(0, 2, 1, 3).reshape(16, 64)
            out.append(np.concatenate([np.bincount(c, minlength=10) / 64 for c in cells]))
        return np.array(out)

    rows = []
    for name, peer_feats, fp in (
        ("hog_svm", sk_hog_feats, {"cell": 8, "block": 2}),
        ("lbp_svm", sk_lbp_feats, {"grid": 4}),
    ):
        t0 = time.perf_counter()
        ours = create_classic_model(name, fp, {"probability": False}).fit(xtr, ytr)
        acc_o = float((ours.predict(xva) == yva).mean())
        t_o = time.perf_counter() - t0
        t0 = time.perf_counter()
        peer = make_pipeline(
            FunctionTransformer(peer_feats),
            StandardScaler(),
            SVC(C=10.0, gamma="scale", random_state=0),
        ).fit(xtr, ytr)
        acc_p = float((peer.predict(xva) == yva).mean())
        t_p = time.perf_counter() - t0
        rows.append((name, acc_o, acc_p, t_o, t_p))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--speed-images", type=int, default=2000)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cv2.setNumThreads(1)
    xtr, ytr, xva, yva = load_split(args.train, args.val)
    print(f"CIFAR-10 split: {len(xtr)} train / {len(xva)} val (class-balanced, seed 0)\n")
    print(f"{'speed':<40} {'ours ms':>9} {'skimage ms':>11} {'ratio':>7}  check")
    for name, a, b, note in speed(xtr[: args.speed_images], args.reps):
        print(f"{name:<40} {a * 1e3:>9.1f} {b * 1e3:>11.1f} {b / a:>6.1f}x  {note}")
    print(
        f"\n{'accuracy':<10} {'ours top-1':>10} {'sklearn top-1':>14} {'ours s':>8} "
        f"{'sklearn s':>10}"
    )
    for name, ao, ap_, to, tp in accuracy(xtr, ytr, xva, yva):
        print(f"{name:<10} {ao:>10.4f} {ap_:>14.4f} {to:>8.1f} {tp:>10.1f}")


if __name__ == "__main__":
    main()
