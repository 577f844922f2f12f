"""Augmentation speed: every single-image op, ours next to albumentations and torchvision v2.

Images are the COCO128 train images (``../shared/data/coco128/images/train2017``, mostly
640 x 480), decoded once. Every library runs on one thread (``cv2.setNumThreads(1)``,
``torch.set_num_threads(1)``) with the same op and parameters; torchvision gets uint8 CHW
tensors prepared outside the timing (its native input). For each op the images are passed
through ``--passes`` times (more while within a 1.5 s budget); each call is timed alone and
images/s = n / sum of the fastest time per image, which is robust to a busy machine.
``ratio`` = ours / albumentations (> 1: we are faster). Peers where the libraries differ
in definition:

- brightness/contrast/saturation/hue: albumentations' torchvision-compatible kernels
  (``A.ColorJitter`` always runs all four, so one component is timed through its kernel).
- perspective: torchvision ``RandomPerspective(0.5)`` and ours share the sampling;
  albumentations' ``Perspective(scale=(0.05, 0.15))`` is its closest corner jitter.
- jpeg at a fixed quality (75), since the coding cost depends on it.
- gaussian_noise: std 10 (of 255) per channel; torchvision's GaussianNoise needs float
  input, so it has no uint8 peer. Policies exist only in torchvision.

The last lines time a YOLO-style detection pipeline on samples with boxes: Mosaic (4
images, if ``cvcraft.transforms.mosaic`` is present) + RandomAffine + HSV + flip +
letterbox to 640, and the same pipeline without Mosaic.

    python benchmarks/augment.py                    # 32 images, ~3-4 minutes
    python benchmarks/augment.py --images 16 --ops hflip,affine,equalize
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from cvcraft import transforms as C
from cvcraft.structures import Sample, convert_boxes

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco128"


def load_images(n: int) -> list[np.ndarray]:
    """The first ``n`` COCO128 train images as uint8 RGB."""
    paths = sorted((ROOT / "images" / "train2017").glob("*.jpg"))[:n]
    if not paths:
        raise SystemExit(f"no images under {ROOT / 'images' / 'train2017'}")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def load_samples(n: int) -> list[Sample]:
    """COCO128 train images with their YOLO boxes, as Samples (absolute xyxy)."""
    paths = sorted((ROOT / "images" / "train2017").glob("*.jpg"))[:n]
    out = []
    for p in paths:
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        lbl = ROOT / "object_detection" / "labels" / "train2017" / (p.stem + ".txt")
        rows = np.loadtxt(lbl, ndmin=2) if lbl.exists() else np.zeros((0, 5))
        boxes = convert_boxes(
            rows[:, 1:5].astype(np.float32),
            "cxcywh",
            "xyxy",
            image_size=img.shape[:2],
            src_normalized=True,
        )
        out.append(Sample(img, boxes=boxes, box_labels=rows[:, 0].astype(np.int64)))
    return out


Run = tuple[Callable[[object], object], list, Callable[[int], None]]


def throughput(fn: Callable[[object], object], inputs: list, passes: int, reseed) -> float:
    """Images per second of one (fn, inputs, reseed) run (see ``interleaved``)."""
    return interleaved([(fn, inputs, reseed)], passes)[0]


def interleaved(
    runs: list[Run], passes: int, budget_s: float = 1.5, max_passes: int = 40
) -> list[float]:
    """images/s of each run: n / sum over images of the fastest call on that image.

    Before every call ``reseed(i)`` (untimed) seeds that library's randomness from the
    image index, so every pass repeats the same parameters per image and the minimum is
    over identical work (random policies would otherwise report their cheapest op).
    Passes are interleaved across the libraries so load changes hit all alike, and each
    call is timed on its own: on a shared machine a 0.1 ms call is rarely preempted in
    every pass, where a whole pass almost always is. At least ``passes`` passes, more (up
    to ``max_passes``) while under ``budget_s``.
    """
    for fn, inputs, reseed in runs:
        for i, x in enumerate(inputs[:2]):
            reseed(i)
            fn(x)
    best = [np.full(len(inputs), np.inf) for _, inputs, _ in runs]
    start, done = time.perf_counter(), 0
    while done < passes or (time.perf_counter() - start < budget_s and done < max_passes):
        for k, (fn, inputs, reseed) in enumerate(runs):
            for i, x in enumerate(inputs):
                reseed(i)
                t0 = time.perf_counter()
                fn(x)
                best[k][i] = min(best[k][i], time.perf_counter() - t0)
        done += 1
    return [len(b) / float(b.sum()) for b in best]


class OurRng:
    """The Generator our transforms draw from, re-created from the image index."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __call__(self, i: int) -> None:
        self.rng = np.random.default_rng(i)


def seed_python_and_torch(i: int) -> None:
    random.seed(i)
    torch.manual_seed(i)


def cases() -> list[tuple[str, object, object | None, object | None]]:
    """(name, ours Transform, albumentations callable or None, torchvision callable or None)."""
    import albumentations as A
    import albumentations.augmentations.pixel.functional as AF
    import torchvision.transforms.v2 as T
    import torchvision.transforms.v2.functional as TF

    bil = T.InterpolationMode.BILINEAR
    const = cv2.BORDER_CONSTANT

    def alb(t):
        call = lambda img: t(image=img)["image"]  # noqa: E731
        call.reseed = t.set_random_seed  # type: ignore[attr-defined]
        return call

    def alb_factor(kernel, lo, hi):
        return lambda img: kernel(img, random.uniform(lo, hi))

    return [
        ("hflip", C.HorizontalFlip(1.0), alb(A.HorizontalFlip(p=1)), T.RandomHorizontalFlip(1)),
        ("vflip", C.VerticalFlip(1.0), alb(A.VerticalFlip(p=1)), T.RandomVerticalFlip(1)),
        (
            "rotate",
            C.RandomRotation(30),
            alb(A.Rotate(limit=30, border_mode=const, fill=0, p=1)),
            T.RandomRotation(30, interpolation=bil),
        ),
        (
            "affine",
            C.RandomAffine(15, 0.1, (0.8, 1.2), 10),
            alb(
                A.Affine(
                    rotate=(-15, 15),
                    translate_percent=(-0.1, 0.1),
                    scale=(0.8, 1.2),
                    shear=(-10, 10),
                    border_mode=const,
                    p=1,
                )
            ),
            T.RandomAffine(15, (0.1, 0.1), (0.8, 1.2), 10, interpolation=bil),
        ),
        (
            "perspective",
            C.RandomPerspective(0.5),
            alb(A.Perspective(scale=(0.05, 0.15), border_mode=const, p=1)),
            T.RandomPerspective(0.5, p=1, interpolation=bil),
        ),
        (
            "random_resized_crop",
            C.RandomResizedCrop(224, interpolation="linear"),
            alb(A.RandomResizedCrop((224, 224), p=1)),
            T.RandomResizedCrop(224, antialias=False),
        ),
        (
            "resize_640",
            C.Resize(640, interpolation="linear"),
            alb(A.Resize(640, 640, p=1)),
            T.Resize((640, 640), antialias=False),
        ),
        (
            "letterbox_640",
            C.Letterbox(640, interpolation="linear"),
            alb(
                A.Compose(
                    [
                        A.LongestMaxSize(640, p=1),
                        A.PadIfNeeded(640, 640, border_mode=const, fill=114, p=1),
                    ]
                )
            ),
            None,
        ),
        (
            "brightness",
            C.Brightness(0.2),
            alb_factor(AF.adjust_brightness_torchvision, 0.8, 1.2),
            T.ColorJitter(brightness=0.2),
        ),
        (
            "contrast",
            C.Contrast(0.2),
            alb_factor(AF.adjust_contrast_torchvision, 0.8, 1.2),
            T.ColorJitter(contrast=0.2),
        ),
        (
            "saturation",
            C.Saturation(0.2),
            alb_factor(AF.adjust_saturation_torchvision, 0.8, 1.2),
            T.ColorJitter(saturation=0.2),
        ),
        (
            "hue",
            C.Hue(0.1),
            alb_factor(AF.adjust_hue_torchvision, -0.1, 0.1),
            T.ColorJitter(hue=0.1),
        ),
        (
            "color_jitter",
            C.ColorJitter(0.2, 0.2, 0.2, 0.1),
            alb(A.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1)),
            T.ColorJitter(0.2, 0.2, 0.2, 0.1),
        ),
        (
            "gamma",
            C.RandomGamma((0.8, 1.2)),
            alb(A.RandomGamma((80, 120), p=1)),
            lambda t: TF.adjust_gamma(t, random.uniform(0.8, 1.2)),
        ),
        ("grayscale", C.Grayscale(3), alb(A.ToGray(3, p=1)), T.Grayscale(3)),
        ("equalize", C.Equalize(), alb(A.Equalize(p=1)), T.RandomEqualize(1)),
        ("autocontrast", C.AutoContrast(), alb(A.AutoContrast(p=1)), T.RandomAutocontrast(1)),
        ("posterize", C.Posterize(4), alb(A.Posterize(4, p=1)), T.RandomPosterize(4, 1)),
        (
            "solarize",
            C.Solarize(128),
            alb(A.Solarize((128 / 255, 128 / 255), p=1)),
            T.RandomSolarize(128, 1),
        ),
        ("sharpness", C.Sharpness((2.0, 2.0)), None, T.RandomAdjustSharpness(2.0, 1)),
        ("invert", C.Invert(), alb(A.InvertImg(p=1)), T.RandomInvert(1)),
        (
            "gaussian_blur",
            C.GaussianBlur(5, (1.0, 1.0)),
            alb(A.GaussianBlur((5, 5), (1.0, 1.0), p=1)),
            T.GaussianBlur(5, 1.0),
        ),
        ("median_blur", C.MedianBlur(5), alb(A.MedianBlur((5, 5), p=1)), None),
        (
            "gaussian_noise",
            C.GaussianNoise((10.0, 10.0)),
            alb(A.GaussNoise((10 / 255, 10 / 255), p=1)),
            None,
        ),
        (
            "salt_pepper",
            C.SaltAndPepper((0.01, 0.06)),
            alb(A.SaltAndPepper((0.01, 0.06), (0.5, 0.5), p=1)),
            None,
        ),
        (
            "jpeg_q75",  # fixed quality: coding cost depends on it
            C.JpegCompression(75),
            alb(A.ImageCompression("jpeg", (75, 75), p=1)),
            T.JPEG(75),
        ),
        (
            "channel_shuffle",
            C.ChannelShuffle(),
            alb(A.ChannelShuffle(p=1)),
            T.RandomChannelPermutation(),
        ),
        ("clahe", C.CLAHE((4.0, 4.0)), alb(A.CLAHE((4, 4), p=1)), None),
        (
            "cutout",
            C.Cutout(4, 32),
            alb(A.CoarseDropout((4, 4), (32, 32), (32, 32), fill=0, p=1)),
            None,
        ),
        ("random_erasing", C.RandomErasing(p=1.0), alb(A.Erasing(p=1)), T.RandomErasing(p=1)),
        ("hsv", C.HSVJitter(0.015, 0.7, 0.4), None, None),
        ("autoaugment", C.AutoAugment(), None, T.AutoAugment()),
        ("randaugment", C.RandAugment(), None, T.RandAugment()),
        ("trivialaugment", C.TrivialAugmentWide(), None, T.TrivialAugmentWide()),
        ("augmix", C.AugMix(), None, T.AugMix()),
    ]


def pipeline_rows(n: int, passes: int) -> list[tuple[str, float]]:
    """images/s of the YOLO-style detection pipeline, with and without Mosaic."""
    samples = load_samples(n)
    seeds = OurRng()
    single = C.Compose(
        [
            C.RandomAffine(0, 0.1, 0.5, 0),
            C.HSVJitter(0.015, 0.7, 0.4),
            C.HorizontalFlip(0.5),
            C.Letterbox(640, interpolation="linear"),
        ]
    )
    rows = [
        (
            "affine+hsv+flip+letterbox",
            throughput(lambda s: single(s, seeds.rng), samples, passes, seeds),
        )
    ]
    try:
        from cvcraft.transforms.mosaic import Mosaic
    except ImportError:
        print("cvcraft.transforms.mosaic not found: pipeline measured without Mosaic only")
        return rows
    mosaic = Mosaic(640)

    def with_mosaic(s: Sample) -> Sample:
        rng = seeds.rng
        partners = [samples[i] for i in rng.integers(0, len(samples), mosaic.n_inputs - 1)]
        return single(mosaic([s, *partners], rng), rng)

    ips = throughput(with_mosaic, samples, passes, seeds)
    rows.append(("mosaic+affine+hsv+flip+letterbox", ips))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--ops", default="", help="comma-separated subset of op names")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    images = load_images(args.images)
    tensors = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
    wanted = set(filter(None, args.ops.split(",")))
    seeds = OurRng()
    print(f"{len(images)} COCO128 images, 1 thread; images/s (higher is better)")
    print(f"{'op':22s} {'ours':>9s} {'alb':>9s} {'tv2':>9s} {'ours/alb':>9s} {'ours/tv2':>9s}")
    ratios = []
    for name, ours, alb, tv in cases():
        if wanted and name not in wanted:
            continue
        runs: list[Run] = [(lambda im, t=ours: t(im, seeds.rng), images, seeds)]
        if alb is not None:
            runs.append((alb, images, getattr(alb, "reseed", seed_python_and_torch)))
        if tv is not None:
            runs.append((tv, tensors, seed_python_and_torch))
        speeds = interleaved(runs, args.passes)
        o = speeds.pop(0)
        a = speeds.pop(0) if alb is not None else None
        v = speeds.pop(0) if tv is not None else None
        if a is not None:
            ratios.append(o / a)

        def fmt(x, w=9, d=0):
            return f"{x:{w}.{d}f}" if x is not None else f"{'-':>{w}s}"

        ra, rv = fmt(a and o / a, d=2), fmt(v and o / v, d=2)
        print(f"{name:22s} {fmt(o)} {fmt(a)} {fmt(v)} {ra} {rv}", flush=True)
    if ratios:
        gm = math.exp(sum(map(math.log, ratios)) / len(ratios))
        print(
            f"geometric mean ours/albumentations over {len(ratios)} shared ops: {gm:.2f}x; "
            f"min {min(ratios):.2f}x"
        )
    if not wanted:
        for name, ips in pipeline_rows(args.images, args.passes):
            print(f"detection pipeline {name}: {ips:.0f} images/s")


if __name__ == "__main__":
    main()
