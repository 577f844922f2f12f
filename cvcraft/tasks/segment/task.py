"""Semantic segmentation as a Trainer task, plus its val and predict entry points.

Data flow: reader -> ``segment_dataset`` (optional Mosaic, then scale / crop / flip / HSV on
uint8 HWC with the mask following every geometric op, nearest, 255 fill) -> collate (pads to
the batch's largest image, mask padding 255) -> device -> float + normalization -> model.

Inference works at the training resolution (after the optional ``resize`` of the longer
side): an image that fits in an ``imgsz`` window goes through the model whole (padded to a
multiple of ``size_divisor``); a larger one is covered by overlapping ``imgsz`` windows whose
logits are averaged (``sliding_window_logits``). Validation uses the same path, so the
metrics are those of what ``predict`` produces.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.data.collate import collate_segment
from cvcraft.data.io import list_images, write_image
from cvcraft.data.loader import build_loader
from cvcraft.data.sampling import weights_from_spec
from cvcraft.data.segmentation import SegSplits, load_segmentation, segment_dataset
from cvcraft.engine.device import autocast, select_device
from cvcraft.engine.evaluation import MetricsWithLoss, run_evaluation
from cvcraft.engine.trainer import ModelPart
from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.distillation import kd_loss
from cvcraft.losses.segmentation import build_segmentation_loss
from cvcraft.metrics.segmentation import SegmentationMetrics
from cvcraft.models import create_model
from cvcraft.structures import Sample
from cvcraft.tasks.base import (
    BaseTask,
    build_model_with,
    drop_unreadable,
    finish_skipped,
    readable_images,
    take_fraction,
)
from cvcraft.tasks.segment.config import SegmentConfig
from cvcraft.transforms.base import Compose, Transform
from cvcraft.transforms.color import HSVJitter
from cvcraft.transforms.geometric import (
    HorizontalFlip,
    PadRandomCrop,
    RandomAffine,
    Resize,
    VerticalFlip,
)
from cvcraft.transforms.normalize import IMAGENET_STATS, STATS_SAMPLES, Preprocess, compute_stats
from cvcraft.transforms.pipelines import sized_spec, split_pipeline
from cvcraft.viz.plots import plot_confusion_matrix, plot_curves
from cvcraft.viz.segmentation import overlay_mask, plot_segmentation_grid

GRID_IMAGES = 8  # val images in plots/predictions.png


# ----------------------------------------------------------------------------- data
def load_splits(cfg: SegmentConfig) -> SegSplits:
    """The train/val data the config names; notes (e.g. images without masks) are printed."""
    splits = load_segmentation(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed,
                               imgsz=cfg.imgsz)  # fmt: skip
    for note in splits.notes:
        print(f"data: {note}")
    if cfg.skip_bad:
        take = lambda data, idx: data.subset(idx)  # noqa: E731
        splits.train = drop_unreadable(splits.train, take, "train", cfg.workers or 1)
        splits.val = drop_unreadable(splits.val, take, "val", cfg.workers or 1)
    if cfg.classes and [str(c) for c in cfg.classes] != list(splits.classes):
        raise DataError(
            f"{cfg.data}: classes {list(splits.classes)} differ from classes={cfg.classes}"
        )
    return splits


def build_transforms(cfg: SegmentConfig, train: bool) -> Compose:
    """Train: [resize] -> random scale/rotate -> random ``imgsz`` crop -> flips -> HSV; an
    ``augment:`` list replaces everything after the resize (its per-image part, then a
    random ``imgsz`` crop, which is the identity when the pipeline already made that size).
    Eval: [resize] only (inference handles any size)."""
    steps: list[Transform] = []
    if cfg.resize:
        steps.append(Resize((cfg.resize, cfg.resize), keep_ratio=True))
    if not train:
        return Compose(steps)
    if cfg.augment:
        _, per_item = split_pipeline(sized_spec(cfg.augment, cfg.imgsz))
        return Compose([*steps, per_item, PadRandomCrop(cfg.imgsz, padding=0)])
    if cfg.degrees or (cfg.scale_min, cfg.scale_max) != (1.0, 1.0):
        steps.append(RandomAffine(degrees=cfg.degrees, scale=(cfg.scale_min, cfg.scale_max)))
    steps.append(PadRandomCrop(cfg.imgsz, padding=0))
    if cfg.hflip:
        steps.append(HorizontalFlip(p=cfg.hflip))
    if cfg.vflip:
        steps.append(VerticalFlip(p=cfg.vflip))
    if cfg.hsv_h or cfg.hsv_s or cfg.hsv_v:
        steps.append(HSVJitter(cfg.hsv_h, cfg.hsv_s, cfg.hsv_v))
    return Compose(steps)


def multi_sample_transforms(cfg: SegmentConfig) -> list[tuple[Any, float]]:
    """(transform, probability) pairs for the training set: Mosaic, then Copy-Paste; with an
    ``augment:`` list, its multi-sample steps (each with its own ``p``) instead."""
    if cfg.augment:
        multi, _ = split_pipeline(sized_spec(cfg.augment, cfg.imgsz))
        return [(t, 1.0) for t in multi]
    out: list[tuple[Any, float]] = []
    if cfg.mosaic:
        from cvcraft.transforms.mosaic import Mosaic

        out.append((Mosaic(cfg.imgsz, n=4), cfg.mosaic))
    if cfg.copy_paste:
        from cvcraft.transforms.copy_paste import CopyPaste

        out.append((CopyPaste(object_prob=0.5, flip=0.5), cfg.copy_paste))
    return out


# ----------------------------------------------------------------------------- inference
def padded_forward(model: nn.Module, x: torch.Tensor, divisor: int = 32) -> torch.Tensor:
    """``model(x)`` on x (N, C, H, W) zero-padded bottom/right to a multiple of ``divisor``,
    cropped back to (N, K, H, W); auxiliary outputs are dropped, a lower-resolution output
    is upsampled (bilinear)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    xp = F.pad(x, (0, pw, 0, ph)) if ph or pw else x
    out = model(xp)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.shape[-2:] != xp.shape[-2:]:
        out = F.interpolate(out, size=xp.shape[-2:], mode="bilinear", align_corners=False)
    return out[..., :h, :w]


MANY_WINDOWS = 16  # more windows per image than this gets a warning (a too-small imgsz)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering [0, size): every ``stride``, the last one flush with the end."""
    if size <= window:
        return [0]
    n = math.ceil((size - window) / stride) + 1
    return sorted({min(i * stride, size - window) for i in range(n)})


def sliding_window_logits(
    model: nn.Module,
    x: torch.Tensor,
    window: int | tuple[int, int],
    overlap: float = 0.25,
    divisor: int = 32,
) -> torch.Tensor:
    """Logits (N, K, H, W) of x (N, C, H, W) from overlapping windows, averaged where they
    overlap (the mmseg "slide" mode). An image that fits in one window is run whole, so the
    result equals ``padded_forward(model, x)`` there. stride = window * (1 - overlap)."""
    wh, ww = (window, window) if isinstance(window, int) else window
    h, w = x.shape[-2:]
    if h <= wh and w <= ww:
        return padded_forward(model, x, divisor)
    wh, ww = min(wh, h), min(ww, w)
    sy, sx = max(1, int(wh * (1 - overlap))), max(1, int(ww * (1 - overlap)))
    ys, xs = window_starts(h, wh, sy), window_starts(w, ww, sx)
    if len(ys) * len(xs) > MANY_WINDOWS:
        warnings.warn(
            f"sliding-window inference runs {len(ys) * len(xs)} windows of {wh}x{ww} px on each "
            f"{h}x{w} image: slow, and each window sees little context. Use an imgsz= closer "
            "to the images' size, or resize= them to the size the model was trained at",
            stacklevel=2,
        )
    acc: torch.Tensor | None = None
    count = torch.zeros(1, 1, h, w, device=x.device)
    for y0 in ys:  # a few windows; each runs the whole batch
        for x0 in xs:
            out = padded_forward(model, x[..., y0 : y0 + wh, x0 : x0 + ww], divisor).float()
            if acc is None:
                acc = torch.zeros(x.shape[0], out.shape[1], h, w, device=x.device)
            acc[..., y0 : y0 + wh, x0 : x0 + ww] += out
            count[..., y0 : y0 + wh, x0 : x0 + ww] += 1
    return acc / count  # type: ignore[operator]


def mask_pixel_labels(data: Any, num_classes: int, seed: int, n: int = 64) -> np.ndarray:
    """The class of every labelled pixel of up to ``n`` seeded training masks (ignored and
    out-of-range values left out): the counts ``class_weights=inverse|sqrt`` weigh by."""
    rng = np.random.default_rng([seed, 13])
    idx = np.sort(rng.permutation(len(data))[: min(n, len(data))])
    pixels = [np.asarray(data.sample(int(i)).semantic_mask).reshape(-1) for i in idx]
    flat = np.concatenate(pixels) if pixels else np.zeros(0, np.int64)
    return flat[flat < num_classes].astype(np.int64)


class TeacherLogits(nn.Module):
    """A segmentation teacher on uint8 batches: its own normalisation, main logits only,
    resized to the input when the model outputs a coarser map."""

    def __init__(self, pre: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.pre, self.model = pre, model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pre(images)
        out = self.model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


class SegmentationEvaluator(MetricsWithLoss):
    """Confusion-matrix metrics (mIoU, pixel accuracy, MPA, fwIoU, Dice, per-class IoU) and
    ``val_loss`` (``criterion`` over batches with any labelled pixel)."""

    def __init__(
        self,
        num_classes: int,
        device: torch.device,
        ignore_index: int = 255,
        criterion: nn.Module | None = None,
    ) -> None:
        self.metrics = SegmentationMetrics(num_classes, ignore_index)
        self.device, self.ignore_index, self.criterion = device, ignore_index, criterion
        self.reset()

    def update(self, batch: dict[str, Any], logits: torch.Tensor) -> None:
        y = batch["masks"].to(self.device)
        if self.criterion is not None and bool((y != self.ignore_index).any()):
            self.loss_sum += float(self.criterion(logits, y)) * int(y.shape[0])
            self.n += int(y.shape[0])
        self.metrics.update(logits, y)


def crf_refine(logits: torch.Tensor, images: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Dense-CRF refined log-probabilities (N, C, H, W) from logits and the uint8 images
    (N, 3 | 1, H, W) they were computed on (``ops.crf.dense_crf``, pydensecrf's defaults)."""
    from cvcraft.ops.crf import dense_crf

    probs = logits.float().softmax(1).cpu().numpy()
    imgs = images.cpu()
    if imgs.shape[1] == 1:
        imgs = imgs.expand(-1, 3, -1, -1)
    hwc = imgs.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    out = np.stack([dense_crf(p, im, iterations=iterations) for p, im in zip(probs, hwc)])
    return torch.from_numpy(np.log(np.clip(out, 1e-8, None))).to(logits.device)


def segmenter_forward(
    pre: nn.Module,
    device: torch.device,
    window: int,
    overlap: float,
    divisor: int,
    crf_iterations: int | None = None,
) -> Any:
    """The val forward: normalise, then whole-image or sliding-window logits (float);
    with ``crf_iterations`` the dense-CRF refined log-probabilities instead."""

    def forward(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        x = pre(batch["images"].to(device))
        logits = sliding_window_logits(model, x, window, overlap, divisor).float()
        if crf_iterations is not None:
            logits = crf_refine(logits, batch["images"], crf_iterations)
        return logits

    return forward


def evaluate_segmenter(
    model: nn.Module,
    loader: Any,
    pre: nn.Module,
    num_classes: int,
    device: torch.device,
    *,
    window: int,
    overlap: float = 0.25,
    divisor: int = 32,
    ignore_index: int = 255,
    criterion: nn.Module | None = None,
    amp: bool = False,
) -> dict[str, Any]:
    """Segmentation metrics (+ ``val_loss``) of ``model`` over ``loader``, reduced across DDP
    ranks (``engine.evaluation.run_evaluation``)."""
    evaluator = SegmentationEvaluator(num_classes, device, ignore_index, criterion)
    forward = segmenter_forward(pre, device, window, overlap, divisor)
    return run_evaluation(model, loader, forward, [evaluator], device=device, amp=amp)


# ----------------------------------------------------------------------------- task
def build_segmenter(
    name: str, num_classes: int, in_chans: int, model_kwargs: dict[str, Any]
) -> nn.Module:
    return build_model_with(
        name,
        model_kwargs,
        lambda: create_model(name, num_classes=num_classes, in_chans=in_chans, **model_kwargs),
    )


def _stats(data: Any, mode: str, seed: int) -> dict[str, Any] | None:
    if mode == "none":
        return None
    if mode == "imagenet":
        return dict(IMAGENET_STATS)
    n = len(data)
    rng = np.random.default_rng([seed, 11])
    idx = np.sort(rng.choice(n, size=min(n, STATS_SAMPLES // 10), replace=False))
    stats = compute_stats(data.sample(int(i)).image for i in idx)
    stats["samples"] = len(idx)
    return stats


class SegmentTask(BaseTask):
    """Everything semantic-segmentation-specific the Trainer delegates."""

    name = "segment"

    def __init__(self, cfg: SegmentConfig) -> None:
        super().__init__(cfg)
        self.cfg: SegmentConfig = cfg
        self.stats: dict[str, Any] | None = None
        self.teacher: nn.Module | None = None

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = load_splits(cfg)
        val = splits.val
        train = take_fraction(splits.train, cfg.fraction, cfg.seed)
        self.classes = list(splits.classes)
        self.class_ids = splits.class_ids
        k = len(self.classes)
        weights = weights_from_spec(
            cfg.class_weights, lambda: mask_pixel_labels(train, k, cfg.seed), k
        )
        resume = self.check_resume(trainer)
        if resume is not None and resume.get("norm_stats") is not None:
            self.stats = resume["norm_stats"]
        else:
            self.stats = _stats(train, cfg.normalize, cfg.seed)
            if self.stats is not None:
                (Path(trainer.out) / "norm_stats.json").write_text(json.dumps(self.stats, indent=1))
        self.train_data, self.val_data = train, val
        ds_train = segment_dataset(
            train, build_transforms(cfg, True), cfg.seed, multi_sample_transforms(cfg)
        )
        trainer.train_loader = build_loader(
            ds_train, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed,
            drop_last=True, collate_fn=collate_segment,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(
                f"{cfg.data}: {len(train)} training images is fewer than batch={cfg.batch}; "
                "lower batch="
            )
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_segmenter(cfg.model, k, cfg.in_chans, cfg.model_kwargs)
        trainer.model = model.to(trainer.device)
        self.pre = Preprocess(self.stats, cfg.normalize, cfg.in_chans).to(trainer.device)
        self.criterion = build_segmentation_loss(
            cfg.loss,
            ignore_index=cfg.ignore_index,
            class_weights=weights,
            aux_weight=cfg.aux_weight,
            focal_gamma=cfg.focal_gamma,
        ).to(trainer.device)
        if cfg.teacher:
            self._setup_teacher(trainer)
        self.write_classes(trainer.out)

    def load_splits(self) -> Any:
        return load_splits(self.cfg)

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        ds = segment_dataset(splits.val, build_transforms(cfg, False), cfg.seed)
        return build_loader(ds, cfg.batch, shuffle=False, workers=cfg.workers, seed=cfg.seed,
                            collate_fn=collate_segment)  # fmt: skip

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        """The trained input size, resize, padding divisor and normalization; the val loss
        is plain cross-entropy (the training loss may have needed the training data)."""
        self.pre = _apply_state(self.cfg, state).to(self.device)
        self.criterion = build_segmentation_loss("ce", ignore_index=self.cfg.ignore_index).to(
            self.device
        )

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        write_plots(out, [], metrics, model, self.val_data, self.pre, self.classes, self.device,
                    self.cfg)  # fmt: skip

    def public_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**metrics, "classes": list(self.classes)}

    def checkpoint_meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            **super().checkpoint_meta(),
            "in_chans": cfg.in_chans,
            "normalize": cfg.normalize,
            "norm_stats": self.stats,
            "resize": cfg.resize,
            "size_divisor": cfg.size_divisor,
            "ignore_index": cfg.ignore_index,
            "class_ids": getattr(self, "class_ids", None),
        }

    def train_loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        x = self.pre(batch["images"].to(self.device, non_blocking=True))
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch["masks"].to(self.device, non_blocking=True)
        out = model(x)
        loss = self.criterion(out, y)
        if self.teacher is not None:
            # pixel-wise Hinton KD on the main logits; ignored pixels (255) left out
            main = out[0] if isinstance(out, (tuple, list)) else out
            with torch.no_grad():
                t = self.teacher(batch["images"].to(self.device, non_blocking=True)).float()
            soft = kd_loss(main, t, self.cfg.kd_t, y, self.cfg.ignore_index)
            loss = (1 - self.cfg.kd_alpha) * loss + self.cfg.kd_alpha * soft
        return loss, int(y.shape[0])

    def _setup_teacher(self, trainer: Any) -> None:
        """A frozen teacher model part (with its own normalisation), same classes."""
        cfg = self.cfg
        model, state = SegmentTask.load_model(cfg.teacher, trainer.device)
        if list(state["classes"]) != self.classes:
            raise ConfigError(
                f"teacher={cfg.teacher} was trained on classes {state['classes'][:10]}, the data "
                f"has {self.classes[:10]}; distil from a teacher of the same classes"
            )
        pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"),
                         state["in_chans"]).to(trainer.device)  # fmt: skip
        self.teacher = TeacherLogits(pre, model).eval()
        trainer.extra_parts["teacher"] = ModelPart(self.teacher, train=False)

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_segmenter(
            state["model_name"],
            state["num_classes"],
            state["in_chans"],
            state.get("model_kwargs") or {},
        )

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        cfg = self.cfg
        forward = segmenter_forward(self.pre, self.device, cfg.imgsz, cfg.overlap,
                                    cfg.size_divisor,
                                    cfg.crf_iterations if cfg.crf else None)  # fmt: skip
        return forward(model, batch)

    def build_evaluators(self) -> dict[str, Any]:
        return {
            "segmentation": SegmentationEvaluator(
                len(self.classes), self.device, self.cfg.ignore_index, self.criterion
            )
        }

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.cfg.plots:
            write_plots(Path(trainer.out), trainer.history, metrics, model, self.val_data,
                        self.pre, self.classes, self.device, self.cfg)  # fmt: skip


def write_plots(
    out: Path,
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    model: nn.Module,
    val_data: Any,
    pre: nn.Module,
    classes: list[str],
    device: torch.device,
    cfg: SegmentConfig,
) -> None:
    """Curves, the pixel confusion matrix and (image, truth, prediction) rows of val images."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, plots)
    if "confusion_matrix" in metrics and len(classes) <= 60:
        plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]), classes, plots / "confusion_matrix.png"
        )
    tf = build_transforms(cfg, False)
    idx = np.linspace(0, len(val_data) - 1, num=min(GRID_IMAGES, len(val_data))).astype(int)
    rng = np.random.default_rng(0)
    samples = [tf(val_data.sample(int(i)), rng) for i in idx]
    model.eval()
    preds = []
    with torch.no_grad():
        for s in samples:  # images may differ in size: one forward each
            x = pre(torch.from_numpy(s.image).permute(2, 0, 1)[None].to(device))
            logits = sliding_window_logits(model, x, cfg.imgsz, cfg.overlap, cfg.size_divisor)
            preds.append(logits.argmax(1)[0].to(torch.uint8).cpu().numpy())
    plot_segmentation_grid(
        [s.image for s in samples],
        [s.semantic_mask for s in samples],
        preds,
        plots / "predictions.png",
        classes,
    )


# ----------------------------------------------------------------------------- val / predict
def _apply_state(cfg: SegmentConfig, state: dict[str, Any]) -> nn.Module:
    """Make cfg's inference keys those the model was trained with; return its Preprocess."""
    cfg.imgsz = int(state.get("imgsz", cfg.imgsz))
    cfg.resize = int(state.get("resize", cfg.resize))
    cfg.size_divisor = int(state.get("size_divisor", cfg.size_divisor))
    return Preprocess(state.get("norm_stats"), state.get("normalize", "none"), state["in_chans"])


@torch.no_grad()
def predict_segmenter(cfg: SegmentConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict segment``: per image a mask PNG (``masks/``: the dataset's own mask
    values when it named classes by id, else class indices) and a colour overlay
    (``overlays/``) at the image's own size, plus predictions.json."""
    device = select_device(cfg.device)
    model, state = SegmentTask.load_model(cfg.weights, device)
    classes = list(state["classes"])
    ids = None  # class index -> the dataset's mask value (uint16 PNG when above 255)
    if state.get("class_ids"):
        ids = np.asarray(
            state["class_ids"], np.uint16 if max(state["class_ids"]) > 255 else np.uint8
        )
    pre = _apply_state(cfg, state).to(device)
    tf = build_transforms(cfg, False)
    src = Path(cfg.source)
    files = list_images(src)
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for f in files:  # images differ in size: one (windowed) forward each
        read = readable_images([f], skipped)
        if not read:
            continue
        image = read[0][1]
        s = tf(Sample(image, meta={"path": str(f)}), rng)
        x = pre(torch.from_numpy(s.image).permute(2, 0, 1)[None].to(device))
        with autocast(device, cfg.amp):
            logits = sliding_window_logits(model, x, cfg.imgsz, cfg.overlap, cfg.size_divisor)
        if logits.shape[-2:] != image.shape[:2]:  # back from the ``resize`` scale
            logits = F.interpolate(logits.float(), size=image.shape[:2], mode="bilinear",
                                   align_corners=False)  # fmt: skip
        if cfg.crf:
            rgb = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            logits = crf_refine(logits, rgb, cfg.crf_iterations)
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        rel = f.relative_to(src) if src.is_dir() else Path(f.name)
        mask_path = out / "masks" / rel.with_suffix(".png")
        overlay_path = out / "overlays" / rel.with_suffix(".png")
        write_image(mask_path, pred if ids is None else ids[pred])  # the dataset's own ids
        write_image(overlay_path, overlay_mask(image, pred, cfg.alpha))
        counts = np.bincount(pred.ravel(), minlength=len(classes))
        share = counts / max(pred.size, 1)
        top = [int(c) for c in np.argsort(-share)[:3] if share[c] > 0]
        results.append(
            {
                "path": str(f),
                "mask": str(mask_path),
                "overlay": str(overlay_path),
                "pixel_share": {classes[c]: float(share[c]) for c in np.flatnonzero(counts)},
                "summary": ", ".join(f"{classes[c]} {share[c]:.1%}" for c in top),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    finish_skipped(out, skipped, len(files), cfg.skip_bad)
    return results


SegmentTask.predict = staticmethod(predict_segmenter)  # type: ignore[attr-defined]


def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read as segmentation data (for pack and augment)."""
    kw = {"imgsz": imgsz} if imgsz else {}  # shapes scenes: the reader's default size
    splits = load_segmentation(data, seed=seed, **kw)
    return splits.train, splits.val


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train segment`` builds with default keys (for
    ``cvcraft augment pipeline=default``)."""
    cfg = SegmentConfig(imgsz=imgsz, seed=seed)
    return segment_dataset(source, build_transforms(cfg, True), seed, multi_sample_transforms(cfg))
