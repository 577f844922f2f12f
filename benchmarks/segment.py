"""Segmentation models: forward images/s of cvcraft's architectures next to
segmentation_models_pytorch's (smp) equivalents, in the same run, at the same input size.

Each row builds ours and smp's configuration of the same network, copies smp's weights into
ours where the layouts map one to one (then also reports the max output difference), and
times eval/no_grad forwards with reps alternating between the two so background load hits
both alike. img/s is from the best rep (timeit's advice: the minimum is the run least
disturbed by other processes); ratio = ours img/s / smp img/s (>= 1: ours at least as
fast), "med" the same ratio from the median reps.

Pairs (smp 0.6 defaults; our kwargs chosen to be the same network):
    unet_resnet34           smp.Unet("resnet34")                     identical weights
    deeplabv3_resnet50      smp.DeepLabV3("resnet50")  (os 8)        identical weights; outputs
                            differ only because smp also dilates the strided first block
                            of a dilated stage (ours follows torchvision/the DeepLab code)
    deeplabv3plus_resnet50  smp.DeepLabV3Plus("resnet50") (os 16, separable ASPP + 1 decoder
                            conv, rates 12/24/36): smp's separable conv has no BN/ReLU between
                            depthwise and pointwise, ours does -> own init, same topology
    unet_pp_resnet34        smp.UnetPlusPlus("resnet34"): ours follows the paper (node
                            widths = encoder widths, transposed-conv ups), smp uses its own
                            decoder widths -> different networks, params printed
    pspnet_resnet50         smp.PSPNet("resnet50"): smp stops at layer2 without dilation
                            (encoder_depth=3); ours is the paper's dilated os-8 ResNet-50 ->
                            not equivalent, shown for reference only

    python benchmarks/segment.py                         # all pairs, 256x256, batch 1
    python benchmarks/segment.py --models unet_resnet34 --size 512 --batch 2 --reps 7
    python benchmarks/segment.py --train                 # + U-Net / DeepLabV3+ on coco128
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch

from cvcraft.models import create_model

# ours: (our kwargs, smp class, smp kwargs, weights map one to one, note)
PAIRS = {
    "unet_resnet34": (dict(head_kernel=3), smp.Unet, dict(encoder_name="resnet34"), True, ""),
    "deeplabv3_resnet50": (
        {},
        smp.DeepLabV3,
        dict(encoder_name="resnet50"),
        True,
        "same weights; smp dilates a stage's first conv too",
    ),  # fmt: skip
    "deeplabv3plus_resnet50": (
        dict(separable=True, decoder_convs=1, rates=(12, 24, 36)),
        smp.DeepLabV3Plus,
        dict(encoder_name="resnet50"),
        False,
        "BN inside separable convs",
    ),  # fmt: skip
    "unet_pp_resnet34": (
        {},
        smp.UnetPlusPlus,
        dict(encoder_name="resnet34"),
        False,
        "different decoder widths",
    ),  # fmt: skip
    "pspnet_resnet50": (
        {},
        smp.PSPNet,
        dict(encoder_name="resnet50"),
        False,
        "NOT equivalent: smp PSPNet = layer2, no dilation",
    ),  # fmt: skip
}


@torch.no_grad()
def time_pair(ours, theirs, x: torch.Tensor, reps: int, warmup: int) -> tuple[list, list]:
    """Seconds per forward of each model for every rep, reps interleaved."""
    for _ in range(warmup):
        ours(x), theirs(x)
    t_ours, t_theirs = [], []
    for _ in range(reps):
        for model, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return t_ours, t_theirs


def build_pair(name: str, num_classes: int):
    """Our model and smp's; smp's weights copied into ours when the layouts map 1:1."""
    kw, cls, smp_kw, same_layout, _ = PAIRS[name]
    torch.manual_seed(0)
    theirs = cls(encoder_weights=None, classes=num_classes, **smp_kw).eval()
    ours = create_model(name, num_classes=num_classes, **kw).eval()
    if same_layout:
        src, dst = theirs.state_dict(), ours.state_dict()
        assert [v.shape for v in src.values()] == [v.shape for v in dst.values()], name
        ours.load_state_dict(dict(zip(dst, src.values())))
    return ours, theirs, same_layout


def speed(args: argparse.Namespace) -> None:
    print(
        f"torch {torch.__version__}, smp {smp.__version__}, {torch.get_num_threads()} threads, "
        f"input {args.batch}x3x{args.size}x{args.size}, best and median of {args.reps} reps "
        f"(after {args.warmup} warm-up), eval + no_grad"
    )
    print(
        f"{'model':24s} {'params':>8s} {'smp params':>10s} {'ours img/s':>10s} "
        f"{'smp img/s':>10s} {'ratio':>6s} {'med':>5s} {'max|diff|':>10s}  note"
    )
    x = torch.randn(args.batch, 3, args.size, args.size)
    for name in args.models:
        ours, theirs, same = build_pair(name, args.classes)
        diff = "-"
        if same:
            with torch.no_grad():
                diff = f"{(ours(x) - theirs(x)).abs().max().item():.1e}"
        ts_o, ts_t = time_pair(ours, theirs, x, args.reps, args.warmup)
        t_o, t_t = min(ts_o), min(ts_t)
        med = statistics.median(ts_t) / statistics.median(ts_o)
        p_o = sum(p.numel() for p in ours.parameters()) / 1e6
        p_t = sum(p.numel() for p in theirs.parameters()) / 1e6
        print(
            f"{name:24s} {p_o:7.2f}M {p_t:9.2f}M {args.batch / t_o:10.2f} {args.batch / t_t:10.2f} "
            f"{t_t / t_o:6.2f} {med:5.2f} {diff:>10s}  {PAIRS[name][4]}",
            flush=True,
        )


def person_dataset(src: Path, dst: Path) -> Path:
    """A person-vs-background copy of coco128's semantic masks (class 1 -> 1, others -> 0,
    255 stays ignore) with a config.yaml pointing at the original images."""
    import cv2
    import yaml

    cfg = yaml.safe_load((src / "config.yaml").read_text())
    out = {"classes": {0: "background", 1: "person"}}
    for split in ("train", "val"):
        masks = dst / "masks" / split
        masks.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cfg[split]["masks"]).glob("*.png")):
            m = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(masks / f.name), np.where(m == 255, 255, m == 1).astype(np.uint8))
        out[split] = {"images": str((src / cfg[split]["images"]).resolve()), "masks": str(masks)}
    (dst / "config.yaml").write_text(yaml.safe_dump(out))
    return dst


# model name -> model_kwargs for the --train runs (small enough for a CPU in minutes).
TRAIN_MODELS = {"unet": {"base": 16}, "deeplabv3plus_resnet18": {}}


def train(args: argparse.Namespace) -> None:
    """U-Net and DeepLabV3+ trained through the CLI's segmentation task on coco128's
    semantic masks, person-vs-background and the full class set: val mIoU and train time."""
    src = Path(args.data) / "semantic_segmentation"
    if not (src / "config.yaml").exists():
        print(f"--train: {src}/config.yaml not found; pass --data to the coco128 folder")
        return
    from cvcraft.cli import run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"person": person_dataset(src, Path(tmp) / "person"), "all": src}
        for name, kw in TRAIN_MODELS.items():
            for label, data in sets.items():
                run_dir = Path(tmp) / "runs" / f"{name}_{label}"
                argv = ["train", "segment", f"data={data}", f"model={name}",
                        f"model_kwargs={json.dumps(kw)}", f"epochs={args.epochs}",
                        f"imgsz={args.imgsz}", f"resize={args.imgsz}", "batch=8",
                        "optimizer=adamw", "lr=0.001", "weight_decay=0.0001", "loss=ce",
                        "workers=0", f"out={run_dir}"]  # fmt: skip
                m = run(argv)
                rows.append(f"{name:24s} {label:>8s} {m['miou']:9.4f} {m['pixel_acc']:9.4f} "
                            f"{m['train_seconds']:8.1f}")  # fmt: skip
    print(f"\ncoco128 semantic masks, {args.epochs} epochs, imgsz {args.imgsz}, from scratch:")
    print(f"{'model':24s} {'classes':>8s} {'val mIoU':>9s} {'pixel acc':>9s} {'train s':>8s}")
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--train", action="store_true", help="also train U-Net/DeepLabV3+ on coco128")
    ap.add_argument("--skip-speed", action="store_true", help="only the --train part")
    ap.add_argument("--data", default="../shared/data/coco128", help="coco128 folder (--train)")
    ap.add_argument("--epochs", type=int, default=5, help="--train epochs per run")
    ap.add_argument("--imgsz", type=int, default=128, help="--train crop / resize side")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_speed:
        speed(args)
    if args.train:
        train(args)


if __name__ == "__main__":
    main()
