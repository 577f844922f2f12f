"""coco128 for issue 18: instance-segmentation mask AP, and semantic mIoU with / without the
dense CRF. Everything runs through the CLI (`cvcraft train|val instance|segment`), from
scratch (no pretrained weights exist on this machine).

    python benchmarks/instance_coco128.py --part instance   # YOLO-seg on coco128
    python benchmarks/instance_coco128.py --part crf        # U-Net person/background, CRF

``--part instance`` trains on the 100 labelled train2017 images (YOLO-seg polygons) and, as
ultralytics' coco128 convention does, validates on the same images: a data YAML whose
``val`` is train2017 (and whose ``train`` is the other folder, so the reader does not hold
out a split). ``--part crf`` trains a U-Net on the person-vs-background copy of coco128's
semantic masks (train2017) and validates on val2017 with ``crf=false`` and ``crf=true``.
Each part prints its table and the commands' numbers; keep each under ~10 minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def _person_dataset(src: Path, dst: Path) -> Path:
    """``benchmarks/segment.py``'s person-vs-background copy of the semantic masks."""
    spec = importlib.util.spec_from_file_location("seg_bench", HERE / "segment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.person_dataset(src, dst)


def _yolo_yaml(root: Path, dst: Path, train: str, val: str) -> Path:
    """A copy of coco128's YOLO-seg data YAML with the given train/val image folders."""
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    cfg.update(path=str(root.resolve()), train=train, val=val)
    dst.write_text(yaml.safe_dump(cfg))
    return dst


def instance(args: argparse.Namespace, tmp: Path) -> None:
    from cvcraft.cli import run

    root = Path(args.data) / "instance_segmentation"
    train_yaml = _yolo_yaml(root, tmp / "train.yaml", "images/train2017", "images/val2017")
    same_yaml = _yolo_yaml(root, tmp / "same.yaml", "images/val2017", "images/train2017")
    out = Path(args.out) / "instance"
    argv = ["train", "instance", f"data={train_yaml}", f"model={args.model}",
            f"imgsz={args.imgsz}", f"epochs={args.epochs}", "batch=8", "optimizer=adamw",
            f"lr={args.lr}", "warmup_epochs=1", "mosaic=1.0", f"close_mosaic={args.epochs // 4}",
            "workers=1", "val_interval=1000", "plots=false", "progress=false",
            f"out={out}", "exist_ok=true"]  # fmt: skip
    t0 = time.time()
    run(argv)
    train_s = time.time() - t0
    m = run(["val", "instance", f"data={same_yaml}", f"weights={out / 'best.pt'}",
             f"out={out / 'val_same'}", "workers=1", "plots=false", "exist_ok=true"])  # fmt: skip
    print(f"\ncoco128 instance ({args.model}, {args.imgsz} px, {args.epochs} epochs, from "
          f"scratch, train {train_s:.0f} s), validated on the training images:")  # fmt: skip
    keys = ("mask_map", "mask_map50", "map", "map50")
    print(" ".join(f"{k}={m[k]:.4f}" for k in keys), f"images={m['images']}")


def crf(args: argparse.Namespace, tmp: Path) -> None:
    from cvcraft.cli import run

    data = _person_dataset(Path(args.data) / "semantic_segmentation", tmp / "person")
    out = Path(args.out) / "crf"
    run(["train", "segment", f"data={data}", "model=unet", "model_kwargs={base: 16}",
         f"epochs={args.seg_epochs}", f"imgsz={args.seg_imgsz}", f"resize={args.seg_imgsz}",
         "batch=8", "optimizer=adamw", "lr=0.001", "weight_decay=0.0001", "loss=ce",
         "workers=1", "plots=false", "progress=false", f"out={out}", "exist_ok=true"])  # fmt: skip
    rows = []
    for flag in ("false", "true"):
        t0 = time.time()
        m = run(["val", "segment", f"data={data}", f"weights={out / 'best.pt'}", f"crf={flag}",
                 f"resize={args.seg_imgsz}", f"out={out / f'val_crf_{flag}'}", "workers=1",
                 "plots=false", "exist_ok=true"])  # fmt: skip
        rows.append((flag, m["miou"], m["pixel_acc"], time.time() - t0))
    print(f"\ncoco128 person vs background (U-Net base 16, {args.seg_epochs} epochs, "
          f"{args.seg_imgsz} px), val2017 resized to {args.seg_imgsz} px:")  # fmt: skip
    for flag, miou, acc, s in rows:
        print(f"crf={flag:5s} miou={miou:.4f} pixel_acc={acc:.4f} val_s={s:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=("instance", "crf"), required=True)
    ap.add_argument("--data", default="../shared/data/coco128")
    ap.add_argument("--out", default="runs/coco128_issue18")
    ap.add_argument("--model", default="yolo_seg_p")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--seg-epochs", type=int, default=8)
    ap.add_argument("--seg-imgsz", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        (instance if args.part == "instance" else crf)(args, Path(tmp))
    print(json.dumps({"uptime": os.getloadavg()}))


if __name__ == "__main__":
    main()
