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
    deeplabv3plus_resnet50  smp.DeepLabV3Plus("resnet50") with our SMP_DEEPLABV3PLUS kwargs
                            (os 16, rates 12/24/36, separable convs without the inner BN,
                            a separable conv after ASPP, 1 decoder conv, align_corners):
                            identical weights; outputs differ only by the same first-block
                            dilation as DeepLabV3 (tests: equal once that conv matches)
    unet_pp_resnet34        smp.UnetPlusPlus("resnet34") with our SMP_UNETPLUSPLUS kwargs
                            (decoder_channels 256..16, nearest ups, 3x3 head): identical
                            weights via smp_unetplusplus_state_dict (concat order differs)
    pspnet_resnet50         smp.PSPNet("resnet50"): smp stops at layer2 without dilation
                            (encoder_depth=3); ours is the paper's dilated os-8 ResNet-50 ->
                            not equivalent, shown for reference only

Same networks, computed differently where it is exact (to rounding, see max|diff| and the
tests): our ASPP's dilated convs skip the taps that read only zero padding (AtrousConv2d:
at 256 px the os-8/16 maps are 32x32/16x16 against rates up to 36), and our U-Net++ applies
each node's first conv to the nearest-2x upsampled input in polyphase form at the source
resolution (NestedNode.forward_up2, 2.25x fewer MACs on that part).

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
from cvcraft.models.segmentation.deeplab import SMP_DEEPLABV3PLUS
from cvcraft.models.segmentation.unet_pp import SMP_UNETPLUSPLUS, smp_unetplusplus_state_dict


def _same_order(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict:
    """smp's tensors under our names, for layouts that list the same tensors in the same order."""
    src, dst = theirs.state_dict(), ours.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    return dict(zip(dst, src.values()))


def _unet_pp(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict:
    return smp_unetplusplus_state_dict(ours, theirs.state_dict())


# ours: (our kwargs, smp class, smp kwargs, weight map smp -> ours or None, note)
PAIRS = {
    "unet_resnet34": (
        dict(head_kernel=3),
        smp.Unet,
        dict(encoder_name="resnet34"),
        _same_order,
        "",
    ),
    "deeplabv3_resnet50": (
        {},
        smp.DeepLabV3,
        dict(encoder_name="resnet50"),
        _same_order,
        "same weights; smp dilates a stage's first conv too; ours skips ASPP padding taps",
    ),  # fmt: skip
    "deeplabv3plus_resnet50": (
        SMP_DEEPLABV3PLUS,
        smp.DeepLabV3Plus,
        dict(encoder_name="resnet50"),
        _same_order,
        "same weights; smp dilates layer4's first conv too; ours skips ASPP padding taps",
    ),  # fmt: skip
    "unet_pp_resnet34": (
        SMP_UNETPLUSPLUS,
        smp.UnetPlusPlus,
        dict(encoder_name="resnet34"),
        _unet_pp,
        "same weights (concat order remapped); ours: polyphase nearest-up convs",
    ),  # fmt: skip
    "pspnet_resnet50": (
        {},
        smp.PSPNet,
        dict(encoder_name="resnet50"),
        None,
        "NOT equivalent: smp PSPNet = layer2, no dilation",
    ),  # fmt: skip
}


@torch.no_grad()
def time_pair(ours, theirs, x: torch.Tensor, reps: int, warmup: int) -> tuple[list, list]:
    """Seconds per forward of each model for every rep, reps interleaved, order alternating."""
    for _ in range(warmup):
        ours(x), theirs(x)
    t_ours, t_theirs = [], []
    pairs = [(ours, t_ours), (theirs, t_theirs)]
    for rep in range(reps):
        # Alternate who goes first so an order effect (cache and allocator state left by
        # the other model) falls on both alike.
        for model, times in pairs if rep % 2 == 0 else pairs[::-1]:
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return t_ours, t_theirs


def build_pair(name: str, num_classes: int):
    """Our model and smp's; smp's weights copied into ours when the layouts map."""
    kw, cls, smp_kw, weight_map, _ = PAIRS[name]
    torch.manual_seed(0)
    theirs = cls(encoder_weights=None, classes=num_classes, **smp_kw).eval()
    ours = create_model(name, num_classes=num_classes, **kw).eval()
    if weight_map is not None:
        ours.load_state_dict(weight_map(ours, theirs))
    return ours, theirs, weight_map is not None


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
