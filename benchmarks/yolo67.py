"""YOLOv6 / YOLOv7 benchmark: inference images/s next to ultralytics' same-structure model,
and COCO128 training (ultralytics' convention: train and validate on the same 128 images).

Inference (default): ``yolov6_n/s`` re-parameterised (RepVGG blocks fused to one 3x3 conv)
and conv-BN fused, next to ultralytics' ``yolov6n/s.yaml`` DetectionModel fused (the same
graph: tests/models/test_det_yolov6.py copies weights and gets equal outputs), random init
(speed does not depend on the weights), eval, no_grad; each timed call includes decoding to
boxes + class scores, NMS excluded. Reps alternate ours and theirs; ratio = ours / theirs
images/s. ``yolov7``/``yolov7_n`` have no ultralytics peer (ultralytics has no YOLOv7):
timed alone, re-parameterised and fused, aux head absent (inference form).

    python benchmarks/yolo67.py --size 320 --batch-sizes 1 4

Training (``--train``): ``cvcraft train detect`` on COCO128 ``train2017`` and validation on
the same images, from scratch (no pretrained weights here), printing map/map50, training
seconds and wall time, and the load average at the start and end.

    python benchmarks/yolo67.py --train --models yolov6_n --epochs 30 --imgsz 160
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml
from detect import coco128_yaml, time_pair  # benchmarks/detect.py's helpers

from cvcraft.models import create_model
from cvcraft.nn.fuse import fuse_model
from cvcraft.nn.repvgg import reparameterize_model

PEERS = {"yolov6_n": "yolov6n.yaml", "yolov6_s": "yolov6s.yaml"}


def build(name: str):
    """Ours in inference form and ultralytics' same-structure model (or None), both fused."""
    torch.manual_seed(0)
    ours = fuse_model(reparameterize_model(create_model(name, num_classes=80)))
    theirs = None
    if name in PEERS:
        from ultralytics.nn.tasks import DetectionModel

        theirs = DetectionModel(PEERS[name], nc=80, verbose=False).eval().fuse(verbose=False)
    return ours, theirs


def inference(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}px, fused, median of "
          f"{args.reps} reps, decode included, no NMS, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    for name in args.models:
        ours, theirs = build(name)
        n_o = sum(p.numel() for p in ours.parameters())
        n_t = sum(p.numel() for p in theirs.parameters()) if theirs is not None else 0
        row = f"{name:9s} params {n_o / 1e6:6.2f}M"
        row += f" | peer {PEERS[name][:-5]} {n_t / 1e6:6.2f}M" if theirs is not None else " | -"
        for b in args.batch_sizes:
            x = torch.rand(b, 3, args.size, args.size)
            t_o, t_t = time_pair(ours, theirs, x, args.reps, args.warmup)  # interleaved reps
            row += f" | b{b} {b / t_o:7.2f} img/s"
            if theirs is not None:
                row += f" peer {b / t_t:7.2f} ratio {t_t / t_o:4.2f}"
        print(row, flush=True)


def same_images_yaml(tmp: Path) -> Path:
    """COCO128 with ``val`` = the ``train2017`` images under another folder name (symlinks):
    the detect task holds out part of train when both splits name the same files, so the
    same images are reached through ``images/val2017`` -> ``train2017``."""
    src = tmp / "src"
    src.mkdir()
    det = Path(coco128_yaml(src)).parent
    cfg = yaml.safe_load((det / "config.yaml").read_text())
    for sub in ("images", "labels"):
        (tmp / sub).mkdir(exist_ok=True)
        for split in ("train2017", "val2017"):  # both point at the train images and labels
            (tmp / sub / split).symlink_to((det / sub / "train2017").resolve(), True)
    cfg.update(path=str(tmp), train="images/train2017", val="images/val2017")
    (tmp / "coco128_same.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp / "coco128_same.yaml"


def train(args: argparse.Namespace) -> None:
    from cvcraft.cli import run

    tmp = tempfile.TemporaryDirectory()
    same = same_images_yaml(Path(tmp.name))
    print(f"COCO128 train2017 -> the same 128 images, imgsz {args.imgsz}, {args.epochs} epochs, "
          f"batch {args.batch}, from scratch")  # fmt: skip
    for name in args.models:
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            m = run(["train", "detect", f"data={same}", f"model={name}", f"imgsz={args.imgsz}",
                     f"epochs={args.epochs}", f"batch={args.batch}", f"lr={args.lr}",
                     "optimizer=adamw", "workers=0", "progress=false", "plots=false",
                     f"val_interval={args.epochs}", f"out={out}"])  # fmt: skip
            wall = time.perf_counter() - t0
        print(f"{name:9s} map {m['map']:.4f} map50 {m['map50']:.4f} train "
              f"{m.get('train_seconds', float('nan')):.0f} s wall {wall:.0f} s load "
              f"{load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["yolov6_n", "yolov6_s", "yolov7_n"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.002)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train(args) if args.train else inference(args)


if __name__ == "__main__":
    main()
