"""Infrared-visible fusion on RoadScene: short DenseFuse training runs against the classical
baselines (pixel average, pixel max, Laplacian pyramid), all scored by one evaluator on the
same held-out pairs at their native size.

The networks are trained with ``cvcraft train fuse`` on the train split (val_fraction=0.2 ->
177 train / 44 held-out pairs, seed 0): ``learned`` end to end with the fusion loss, ``ae``
as the paper (an auto-encoder on single-image reconstruction, then ``cvcraft val fuse
strategy=add`` and ``strategy=l1`` on the one checkpoint). The baselines fuse the same
held-out infrared image and visible luma (the float luma the network sees, rounded to uint8
as the evaluator does).

    PYTHONPATH=. python benchmarks/image_fusion.py                 # ~3 min quiet, 7 min busy
    PYTHONPATH=. python benchmarks/image_fusion.py --w-gradient 1 --strategy l1
    PYTHONPATH=. python benchmarks/image_fusion.py --figure docs/img/fusion_roadscene.jpg
    PYTHONPATH=. python benchmarks/image_fusion.py --networks ae     # the two auto-encoder rows
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from cvcraft.classic.fusion import FUSION_RULES, fuse_classical
from cvcraft.cli import main
from cvcraft.data.fusion import load_fusion
from cvcraft.metrics.fusion import FUSION_METRICS, FusionEvaluator, to_uint8
from cvcraft.tasks.fuse.task import FuseTask, collate_fuse, colour_fused, fuse_sample, model_input

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "roadscene"


def baselines(data: str, val_fraction: float, seed: int) -> dict[str, dict[str, float]]:
    """Each classical rule's mean metrics over the held-out pairs."""
    val = load_fusion(data, val_fraction=val_fraction, seed=seed).val
    evs = {r: FusionEvaluator() for r in FUSION_RULES}
    for i in range(len(val)):
        batch = collate_fuse([val.sample(i)])
        x = model_input(batch["images"], batch["infrared"])
        a, b = to_uint8(x[0, 0]), to_uint8(x[0, 1])
        for r, ev in evs.items():
            ev.add(a, b, fuse_classical(a, b, r))
    return {r: ev.compute() for r, ev in evs.items()}


def figure(weights: Path, data: str, path: str, pairs: int = 3) -> None:
    """Rows of held-out pairs: infrared | visible | max | Laplacian | network (colour)."""
    from cvcraft.data.io import write_image
    from cvcraft.viz.augment_grid import make_grid

    model, _ = FuseTask.load_model(weights, torch.device("cpu"))
    val = load_fusion(data, val_fraction=0.2, seed=0).val
    cells = []
    for i in range(pairs):
        s = val.sample(i)
        ir, vy, fy = fuse_sample(model, s, torch.device("cpu"))
        cells += [np.repeat(ir[..., None], 3, 2), s.image]
        for rule in ("max", "laplacian"):
            cells.append(colour_fused(s.image, fuse_classical(ir, vy, rule)))
        cells.append(colour_fused(s.image, fy))
    grid = make_grid(cells, cols=5)
    scale = min(1.0, 1200 / grid.shape[1])  # a README-sized picture
    write_image(path, cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    print(f"figure: {path}")


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--imgsz", type=int, default=96)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--w-gradient", type=float, default=4.0, help="gradient loss weight")
    ap.add_argument("--strategy", default="concat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default="", help="also write fused examples to this PNG")
    ap.add_argument("--networks", default="learned", help="comma list of learned, ae")
    ap.add_argument("--rec-ssim", type=float, default=10.0, help="auto-encoder SSIM weight")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    rows.update(baselines(args.data, 0.2, args.seed))
    t_base = time.perf_counter() - t0
    nets = args.networks.split(",")
    t_train = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if "ae" in nets:
            t0 = time.perf_counter()
            rows.update(autoencoder(args, Path(tmp)))
            t_train += time.perf_counter() - t0
        if "learned" not in nets:
            report(rows, t_base, t_train)
            return
        t0 = time.perf_counter()
        kw = f"model_kwargs={{width: {args.width}, strategy: {args.strategy}}}"
        # evaluated once, after the last epoch (full-size val pairs are the costly part)
        main(["train", "fuse", f"data={args.data}", f"epochs={args.epochs}", kw,
              f"imgsz={args.imgsz}", f"seed={args.seed}", f"w_gradient={args.w_gradient}",
              f"val_interval={args.epochs}", "workers=1", "progress=false", "plots=false",
              f"out={tmp}/run"])  # fmt: skip
        t_train += time.perf_counter() - t0
        name = (
            f"densefuse w{args.width} {args.strategy}, w_grad {args.w_gradient:g}, {args.epochs} ep"
        )
        rows[name] = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        if args.figure:
            figure(Path(tmp) / "run" / "best.pt", args.data, args.figure)
    report(rows, t_base, t_train)


def autoencoder(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    """Train DenseFuse's auto-encoder on reconstruction once; val with each fusion rule."""
    run = tmp / "ae"
    common = [f"data={args.data}", f"imgsz={args.imgsz}", f"seed={args.seed}", "workers=1",
              "progress=false", "plots=false", f"model_kwargs={{width: {args.width}}}"]  # fmt: skip
    main(["train", "fuse", *common, "strategy=add", f"epochs={args.epochs}",
          f"w_rec_ssim={args.rec_ssim}", f"val_interval={args.epochs}", f"out={run}"])  # fmt: skip
    rows = {}
    for rule in ("add", "l1"):
        main(["val", "fuse", *common, f"weights={run / 'best.pt'}", f"strategy={rule}",
              f"out={tmp / rule}"])  # fmt: skip
        name = f"densefuse w{args.width} auto-encoder (rec., lambda {args.rec_ssim:g}), {rule}"
        rows[name] = json.loads((tmp / rule / "metrics.json").read_text())
    return rows


def report(rows: dict[str, dict[str, float]], t_base: float, t_train: float) -> None:
    print(f"\nRoadScene held-out pairs: {int(rows['average']['val_images'])}; baselines "
          f"{t_base:.1f} s, network train+eval {t_train:.1f} s")  # fmt: skip
    print(
        "| method | "
        + " | ".join(m.upper() if m != "qabf" else "Qabf" for m in FUSION_METRICS)
        + " |"
    )
    print("|---" * (len(FUSION_METRICS) + 1) + "|")
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in FUSION_METRICS) + " |")


if __name__ == "__main__":
    run()
