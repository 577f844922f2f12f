"""YOLOv2 / v4 / v5 recipes: inference images/s next to ultralytics' same-structure model, and
COCO128 training rows.

Inference (default): each model conv-BN fused, eval, no_grad, ``model(x)`` + ``model.decode``
(boxes and class scores, NMS excluded) at ``--size``, batch sizes ``--batch-sizes``; the peer
is ultralytics' DetectionModel built from its yaml (random init, no download) where one has
the same structure: ``yolov5nu`` / ``yolov5su`` are ultralytics' ``yolov5n.yaml`` /
``yolov5s.yaml`` layer for layer. The anchor-based ``yolov5n`` / ``yolov5s`` are timed
next to the same ultralytics builds too, whose head differs (anchor-free, decoupled), so
that ratio compares the networks, not the implementations. YOLOv2 and YOLOv4 have no
ultralytics build: ours only. Reps alternate ours and theirs (``benchmarks/detect.py``'s
``time_pair``).

Training (``--train``): the detect task on COCO128 from scratch (no pretrained weights are
available here), trained on the 128 ``train2017`` images and validated on the same images
(ultralytics' coco128.yaml convention), printing map / map50 and the wall time.

    python benchmarks/yolo_recipes.py                       # inference, 320 px, b1 and b8
    python benchmarks/yolo_recipes.py --train --models yolov5n --epochs 30 --imgsz 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import coco128_yaml, gflops, time_pair  # noqa: E402  (the sibling benchmark)

from cvcraft.models import create_model  # noqa: E402
from cvcraft.nn.fuse import fuse_model  # noqa: E402

# ours -> ultralytics yaml of the same backbone/neck (same head only for the *u models)
PEERS = {"yolov5nu": "yolov5n.yaml", "yolov5su": "yolov5s.yaml",
         "yolov5n": "yolov5n.yaml", "yolov5s": "yolov5s.yaml"}  # fmt: skip
DEFAULT_MODELS = ["yolov5nu", "yolov5n", "yolov5su", "yolov5s", "yolov4_small", "yolov2_small"]


def build(name: str):
    torch.manual_seed(0)
    ours = fuse_model(create_model(name, num_classes=80).eval())
    theirs = None
    if name in PEERS:
        try:
            from ultralytics.nn.tasks import DetectionModel
        except ImportError:
            print("  note: ultralytics is not installed; timing ours only")
        else:
            theirs = DetectionModel(PEERS[name], nc=80, verbose=False).eval().fuse(verbose=False)
    return ours, theirs


def inference(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, fused, "
          f"median of {args.reps} reps, decode included, no NMS")  # fmt: skip
    head = f"{'model':13s} {'params':>7s} {'GFLOPs':>6s} | {'peer':13s} {'params':>7s}"
    for b in args.batch_sizes:
        head += f" | {'b' + str(b) + ' img/s':>10s} {'peer':>7s} {'ratio':>5s}"
    print(head)
    for name in args.models:
        ours, theirs = build(name)
        row = f"{name:13s} {sum(p.numel() for p in ours.parameters()) / 1e6:6.2f}M "
        row += f"{gflops(ours, args.size):6.2f}"
        if theirs is not None:
            p_t = sum(p.numel() for p in theirs.parameters()) / 1e6
            row += f" | {PEERS[name]:13s} {p_t:6.2f}M"
        else:
            row += f" | {'-':13s} {'':7s}"
        for b in args.batch_sizes:
            x = torch.rand(b, 3, args.size, args.size)
            t_o, t_t = time_pair(ours, theirs, x, args.reps, args.warmup)
            row += f" | {b / t_o:10.2f} {b / t_t:7.2f} {t_t / t_o:5.2f}"
        print(row, flush=True)


def coco128_same_images(tmp: Path) -> Path:
    """A YOLO data yaml whose val split is COCO128's train2017 images again (ultralytics'
    coco128.yaml convention). The detect task holds out a share of train when val names the
    same files, so val is reached through its own symlinked folder (``val_same``)."""
    (tmp / "src").mkdir()
    src = coco128_yaml(tmp / "src")  # builds tmp/src/{images,labels} when the share needs it
    cfg = yaml.safe_load(src.read_text())
    root = Path(cfg.get("path") or ".")
    root = root if root.is_absolute() else (src.parent / root).resolve()
    for kind in ("images", "labels"):
        (tmp / kind).mkdir()
        target = (root / kind / "train2017").resolve()
        (tmp / kind / "train2017").symlink_to(target, target_is_directory=True)
        (tmp / kind / "val_same").symlink_to(target, target_is_directory=True)
    cfg.update(path=str(tmp), train="images/train2017", val="images/val_same")
    (tmp / "coco128_trainval.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp / "coco128_trainval.yaml"


def train(args: argparse.Namespace) -> None:
    from cvcraft.cli import run

    tmp = tempfile.TemporaryDirectory()
    data = coco128_same_images(Path(tmp.name))
    print(f"COCO128 train2017 -> the same 128 images, imgsz {args.imgsz}, {args.epochs} epochs, "
          f"batch {args.batch}, {args.threads} threads, from scratch")  # fmt: skip
    print(f"{'model':13s} {'map':>7s} {'map50':>7s} {'wall s':>7s}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            keys = [f"data={data}", f"model={name}", f"imgsz={args.imgsz}",
                    f"epochs={args.epochs}", f"batch={args.batch}", f"lr={args.lr}",
                    "optimizer=adamw", "workers=0", "progress=false", "plots=false",
                    f"val_interval={args.val_interval}", f"out={out}", *args.extra]  # fmt: skip
            metrics = run(["train", "detect", *keys])
            wall = time.perf_counter() - t0
        m = metrics if isinstance(metrics, dict) else {}
        nan = float("nan")
        print(f"{name:13s} {m.get('map', nan):7.4f} {m.get('map50', nan):7.4f} {wall:7.1f}",
              flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--size", type=int, default=320, help="inference input side")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--train", action="store_true", help="train on COCO128 instead of timing")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.004)
    ap.add_argument("--val-interval", type=int, default=10)
    ap.add_argument("extra", nargs="*", help="more key=value detect-task overrides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    (train if args.train else inference)(args)


if __name__ == "__main__":
    main()
