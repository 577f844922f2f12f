"""Detection benchmark: cvcraft's anchor-free YOLO next to ultralytics' YOLOv8, in one run.

Inference (default): for each of our models and its YOLOv8 peer (same scale, built from
ultralytics' yaml with random init -- no weights are downloaded; speed does not depend on
the weights) -- parameters, GFLOPs (2 x MACs, our meta-device counter applied to both) and
CPU images/s at 640x640 for batch 1 and 8. Both run conv-BN fused, eval, no_grad, and each
timed call includes decoding to boxes + class scores (ultralytics' eval forward decodes;
ours is ``model(x)`` + ``model.decode``), NMS excluded. Reps alternate ours and theirs so
background load hits both alike; ratio = ours img/s / theirs img/s (>= 1 is faster).

Training (``--train``): trains each model with the cvcraft detection task on COCO128
(``train2017`` images) and evaluates on its ``val2017`` images (COCO mAP@[.5:.95] and
mAP@.5 by our COCO evaluator), printing map/map50, the training wall time and the total
(training + per-epoch evaluation + setup). From scratch
and with a few epochs on 128 images the mAP is low; it measures the pipeline, not the model.

    python benchmarks/detect.py                                   # yolo_n/s vs yolov8n/s
    python benchmarks/detect.py --models yolo_m --batch-sizes 1   # medium vs yolov8m
    python benchmarks/detect.py --train --models yolo_n --epochs 3 --imgsz 320

Torchvision twins (``--torchvision``): our detectors that are torchvision's networks
(``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``, ``ssd300_vgg16`` at 300 px,
``ssdlite320_mobilenet_v3_large`` at 320 px) next to torchvision's, loaded with the
same random weights: CPU images/s of backbone + head + anchors + post-processing (score
threshold, top-k, decode, NMS) on the same normalized batch. torchvision's resizing
transform is left out (the detect task letterboxes before the model), so both time the
same work.

    python benchmarks/detect.py --torchvision --size 512 --batch-sizes 1 2
    python benchmarks/detect.py --torchvision --tv-models ssd300_vgg16 ssdlite320_mobilenet_v3_large

Two-stage (``--two-stage``): Cascade R-CNN (three box-head stages) next to our Faster R-CNN
of the same trunk in the same run, forward + post-processing, random weights.

    python benchmarks/detect.py --two-stage --size 512 --batch-sizes 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cvcraft.models import create_model
from cvcraft.models.profile import count_macs
from cvcraft.nn.fuse import fuse_model

COCO128 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco128"


def build_pair(name: str, num_classes: int = 80):
    """Our model and ultralytics' YOLOv8 of the same scale (None if unavailable), both fused."""
    torch.manual_seed(0)
    ours = fuse_model(create_model(name, num_classes=num_classes).eval())
    theirs = None
    scale = name.rsplit("_", 1)[-1]
    if scale in ("n", "s", "m", "l", "x"):
        try:
            from ultralytics.nn.tasks import DetectionModel
        except ImportError:
            print("  note: ultralytics is not installed; timing ours only")
        else:
            theirs = DetectionModel(f"yolov8{scale}.yaml", nc=num_classes, verbose=False)
            theirs = theirs.eval().fuse(verbose=False)
    return ours, theirs


def gflops(model: torch.nn.Module, size: int) -> float:
    return 2 * count_macs(model, (3, size, size))["total"] / 1e9


@torch.no_grad()
def time_pair(ours, theirs, x: torch.Tensor, reps: int, warmup: int) -> tuple[float, float]:
    """Median seconds per call of ours (forward + decode) and theirs (eval forward), interleaved."""
    calls = [lambda: ours.decode(ours(x))]
    if theirs is not None:
        calls.append(lambda: theirs(x))
    secs = [1.0 / ips for ips in alternating_ips(calls, 1, reps, warmup)]
    return secs[0], secs[1] if len(secs) > 1 else float("nan")


def inference(args: argparse.Namespace) -> None:
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, fused, "
        f"median of {args.reps} reps (after {args.warmup} warm-up), decode included, no NMS"
    )
    head = f"{'model':8s} {'params':>8s} {'GFLOPs':>7s} | {'peer':8s} {'params':>8s} {'GFLOPs':>7s}"
    for b in args.batch_sizes:
        head += f" | {'b' + str(b) + ' img/s':>10s} {'peer':>7s} {'ratio':>5s}"
    print(head)
    for name in args.models:
        ours, theirs = build_pair(name)
        p_o = sum(p.numel() for p in ours.parameters()) / 1e6
        row = f"{name:8s} {p_o:7.2f}M {gflops(ours, args.size):7.2f}"
        if theirs is not None:
            p_t = sum(p.numel() for p in theirs.parameters()) / 1e6
            peer = "yolov8" + name.rsplit("_", 1)[-1]
            row += f" | {peer:8s} {p_t:7.2f}M {gflops(theirs, args.size):7.2f}"
        else:
            row += f" | {'-':8s} {'':8s} {'':7s}"
        for b in args.batch_sizes:
            x = torch.rand(b, 3, args.size, args.size)
            t_o, t_t = time_pair(ours, theirs, x, args.reps, args.warmup)
            ips_o, ips_t = b / t_o, b / t_t
            row += f" | {ips_o:10.2f} {ips_t:7.2f} {ips_o / ips_t:5.2f}"
        print(row, flush=True)


# torchvision has the same names; the SSDs run at their own input side, the rest at --size
TV_TWINS = ("retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssd300_vgg16",
            "ssdlite320_mobilenet_v3_large")  # fmt: skip
TV_SIDES = {"ssd300_vgg16": 300, "ssdlite320_mobilenet_v3_large": 320}


def tv_pair(name: str):
    """Ours and torchvision's twin with the same (random) weights, both eval; ours loads
    torchvision's state_dict through ``create_model(weights=)``."""
    import torchvision

    torch.manual_seed(0)
    tv = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None)
    # both take the same normalized batch (ours normalize 0-1 inputs unless told not to)
    ours = create_model(name, weights=tv.state_dict(), normalize_input=False).eval()  # 91 logits
    return ours, tv.eval()


def tv_detect(tv, x: torch.Tensor):
    """torchvision's forward without its resize transform: backbone, head, anchors, post."""
    from torchvision.models.detection.image_list import ImageList

    size = [tuple(x.shape[-2:])] * len(x)
    feats = list(tv.backbone(x).values())
    head = tv.head(feats)
    anchors = tv.anchor_generator(ImageList(x, size), feats)
    if "ssd" in type(tv).__name__.lower():  # SSD post-processes all maps at once
        return tv.postprocess_detections(head, anchors, size)
    per_level = [f.shape[-2] * f.shape[-1] for f in feats]
    a = head["cls_logits"].shape[1] // sum(per_level)
    split = [n * a for n in per_level]
    head = {k: list(v.split(split, 1)) for k, v in head.items()}
    return tv.postprocess_detections(head, [list(av.split(split)) for av in anchors], size)


@torch.no_grad()
def torchvision_twins(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, "
          f"median of {args.reps} alternating reps after {args.warmup} warm-up, "
          "post-processing included")  # fmt: skip
    for name in args.tv_models:
        ours, tv = tv_pair(name)
        side = TV_SIDES.get(name, args.size)
        for b in args.batch_sizes:
            x = torch.randn(b, 3, side, side)
            calls = [
                lambda m=ours, x=x: m.postprocess(m(x)),
                lambda m=tv, x=x: tv_detect(m, x),
            ]
            ips = alternating_ips(calls, b, args.reps, args.warmup)
            print(f"{name} {side}px b{b}: ours {ips[0]:.3f} img/s, torchvision {ips[1]:.3f} img/s, "
                  f"ratio {ips[0] / ips[1]:.2f}", flush=True)  # fmt: skip


def alternating_ips(calls: list, batch: int, reps: int, warmup: int) -> list[float]:
    """Images/s of each call: ``warmup`` rounds, then ``reps`` rounds that alternate the
    calls (so load drifts hit both alike); the median time per call."""
    for _ in range(warmup):
        for c in calls:
            c()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(reps):
        for c, t in zip(calls, times):
            t0 = time.perf_counter()
            c()
            t.append(time.perf_counter() - t0)
    return [batch / statistics.median(t) for t in times]


TWO_STAGE = (  # (ours, the baseline it extends): Cascade R-CNN next to our Faster R-CNN
    ("cascade_rcnn_resnet18_fpn", "fasterrcnn_resnet18_fpn"),
    ("cascade_rcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn"),
)


@torch.no_grad()
def two_stage(args: argparse.Namespace) -> None:
    """Cascade R-CNN's images/s next to our Faster R-CNN of the same trunk, same run: both
    eval, random weights from the same seed (trunk, FPN and RPN identical), forward +
    postprocess (score 0.05, NMS 0.5, 100 per image); alternating reps."""
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size}, "
          f"median of {args.reps} alternating reps after {args.warmup} warm-up, "
          "forward + post-processing")  # fmt: skip
    pairs = [p for p in TWO_STAGE if not args.models_given or p[0] in args.models]
    for name, base in pairs:
        models = []
        for n in (name, base):
            torch.manual_seed(0)
            models.append(create_model(n, num_classes=80).eval())
        for b in args.batch_sizes:
            x = torch.rand(b, 3, args.size, args.size)
            calls = [lambda m=m, x=x: m.postprocess(m(x)) for m in models]
            ips = alternating_ips(calls, b, args.reps, args.warmup)
            print(f"{name} b{b}: {ips[0]:.3f} img/s, {base} {ips[1]:.3f} img/s, "
                  f"ratio {ips[0] / ips[1]:.2f}", flush=True)  # fmt: skip


def coco128_yaml(tmp: Path, val_split: str = "val2017") -> Path:
    """A YOLO data yaml for COCO128 detection, validating on ``val_split`` (``train2017``:
    ultralytics' coco128 convention, validation on the training images). The shared copy's
    ``object_detection/images`` is a symlink stored as a plain file (its text is the target,
    ``../images``), so the layout is rebuilt in ``tmp`` with real symlinks: images/ and
    labels/ side by side."""
    root = COCO128.resolve()
    det = root / "object_detection"
    if not (det / "config.yaml").is_file():
        raise SystemExit(f"--train needs COCO128 at {root} (see GUIDE.md, 'Data you have')")
    if (det / "images").is_dir() and val_split == "val2017":
        return det / "config.yaml"
    cfg = yaml.safe_load((det / "config.yaml").read_text())
    (tmp / "images").symlink_to(root / "images", target_is_directory=True)
    (tmp / "labels").symlink_to(det / "labels", target_is_directory=True)
    cfg["path"] = str(tmp)
    if val_split != "val2017":  # the same images under another path (the same path would
        same = tmp / "same"  # read as "no val split" and hold out a fraction)
        for sub, src in (("images", root / "images"), ("labels", det / "labels")):
            (same / sub).mkdir(parents=True)
            (same / sub / val_split).symlink_to(src / val_split, target_is_directory=True)
        cfg["val"] = f"same/images/{val_split}"
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp / "config.yaml"


def train(args: argparse.Namespace) -> None:
    from cvcraft.cli import run

    data_dir = tempfile.TemporaryDirectory()
    data = coco128_yaml(Path(data_dir.name), args.val_split)
    print(
        f"COCO128: train2017 (128 images) -> {args.val_split} (128 images), imgsz {args.imgsz}, "
        f"{args.epochs} epochs, batch {args.batch}, {args.threads} threads, from scratch"
    )
    print(f"{'model':8s} {'map':>7s} {'map50':>7s} {'train s':>8s} {'total s':>8s}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            metrics = run(
                [
                    "train",
                    "detect",
                    f"data={data}",
                    f"model={name}",
                    f"imgsz={args.imgsz}",
                    f"epochs={args.epochs}",
                    f"batch={args.batch}",
                    f"lr={args.lr}",
                    "workers=0",
                    f"out={out}",
                ]
            )
            wall = time.perf_counter() - t0
        m = metrics if isinstance(metrics, dict) else {}
        nan = float("nan")
        print(
            f"{name:8s} {m.get('map', nan):7.4f} {m.get('map50', nan):7.4f} "
            f"{m.get('train_seconds', nan):8.1f} {wall:8.1f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["yolo_n", "yolo_s"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--size", type=int, default=640, help="inference input side")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--train", action="store_true", help="train on COCO128 instead of timing")
    ap.add_argument("--torchvision", action="store_true",
                    help="time our torchvision twins against torchvision's")  # fmt: skip
    ap.add_argument(
        "--two-stage",
        action="store_true",
        help="time Cascade R-CNN next to our Faster R-CNN (--models picks cascades)",
    )
    ap.add_argument("--tv-models", nargs="+", default=list(TV_TWINS), choices=TV_TWINS,
                    help="with --torchvision: which twins")  # fmt: skip
    ap.add_argument("--val-split", default="val2017", choices=["val2017", "train2017"],
                    help="with --train: validate on val2017 or on the training images")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=320, help="training/eval input side")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.002)
    args = ap.parse_args()
    args.models_given = "--models" in sys.argv
    torch.set_num_threads(args.threads)
    if args.two_stage:
        two_stage(args)
    elif args.torchvision:
        torchvision_twins(args)
    else:
        (train if args.train else inference)(args)


if __name__ == "__main__":
    main()
