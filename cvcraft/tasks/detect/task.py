"""Object detection as a Trainer task, plus its val and predict entry points.

Data flow: reader (COCO / YOLO / VOC / shapes) -> ``detection_dataset`` (Mosaic, affine,
MixUp, HSV, flips on uint8 HWC with a per-item generator) -> ``collate_detect`` (uint8 NCHW
+ per-image targets) -> device -> float 0-1 -> detector. Any registered detector keeps the
contract in ``models/detection/base.py`` (forward / loss / postprocess), so this file trains
YOLO and Faster R-CNN alike.

Evaluation letterboxes every val image to ``imgsz``, maps the detections back to the
original image (``unletterbox_boxes``) and scores them with ``COCOEvaluator`` against the
original annotations: ``map`` = AP@[.5:.95], ``map50`` = AP@.5 (pycocotools' numbers).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

from cvcraft.data import build_loader
from cvcraft.data.collate import collate_detect
from cvcraft.data.detection.check import count_bad_boxes
from cvcraft.data.detection.container import DetectionData
from cvcraft.data.detection_dataset import (
    DetectAugment,
    batch_targets,
    coco_ground_truth,
    detection_dataset,
    load_detection_splits,
    subset,
)
from cvcraft.data.io import list_images
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.device import autocast, select_device
from cvcraft.engine.distributed import is_main_process
from cvcraft.engine.evaluation import run_evaluation
from cvcraft.engine.optim import unwrap_model
from cvcraft.engine.trainer import weights_of
from cvcraft.errors import ConfigError, DataError
from cvcraft.metrics.coco import METRIC_NAMES, COCOEvaluator
from cvcraft.metrics.coco import SUMMARY_KEYS as COCO_KEYS
from cvcraft.metrics.detection_confusion import DetectionConfusionMatrix
from cvcraft.models import create_model
from cvcraft.ops.anchors import autoanchor
from cvcraft.ops.nms import postprocess_nms
from cvcraft.structures import Sample, xyxy_to_xywh
from cvcraft.tasks.base import (
    BaseTask,
    build_model_with,
    drop_unreadable,
    finish_skipped,
    readable_images,
)
from cvcraft.tasks.detect.config import DetectConfig
from cvcraft.transforms.letterbox import Letterbox, unletterbox_boxes
from cvcraft.viz.detection_plots import draw_detections, write_detection_plots

EVAL_CONF = 0.001  # mAP integrates over all scores: keep nearly every detection
GRID_TILE = 192  # minimum side of a tile in the prediction grid (px)
TTA_SCALES = (1.0, 0.83, 0.67)  # with a horizontal flip on the 0.83 pass (YOLOv5's TTA)


def to_inputs(images: torch.Tensor, device: torch.device, in_chans: int = 3) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float 0-1 on ``device`` (the detector contract's input); a
    one-channel detector (``in_chans=1``) gets the channel mean (grey)."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if in_chans == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    return x


def build_detector(
    name: str, num_classes: int, model_kwargs: dict[str, Any], in_chans: int = 3
) -> nn.Module:
    """``create_model`` for a detector; raises ConfigError if ``name`` is not one."""
    kw = dict(model_kwargs)
    if in_chans != 3:  # only then: a detector's constructor default is RGB
        kw["in_chans"] = in_chans
    model = build_model_with(
        name, model_kwargs, lambda: create_model(name, num_classes=num_classes, **kw)
    )
    if not (hasattr(model, "loss") and hasattr(model, "postprocess")):
        raise ConfigError(
            f"model={name} is not a detector (no loss/postprocess); pick one of "
            "`cvcraft models 'yolo*'` or `cvcraft models 'faster*'`"
        )
    return model


def loss_options(cfg: DetectConfig) -> dict[str, Any]:
    """The YOLO training choices set away from their defaults, as model keyword arguments
    (``assigner``: the anchor-free YOLO; ``label_smoothing``: both YOLO losses); a model
    that does not take one is refused by ``build_detector``."""
    out: dict[str, Any] = {}
    if cfg.assigner:
        out["assigner"] = cfg.assigner
    if cfg.label_smoothing:
        out["label_smoothing"] = cfg.label_smoothing
    return out


def fit_model_anchors(model: nn.Module, data: Any, imgsz: int, seed: int) -> None:
    """YOLOv5's autoanchor: the train boxes' (w, h) at the letterboxed ``imgsz``; if the
    model's anchors reach a best possible recall below 0.98, k-means (+ genetic refinement)
    anchors replace them when they recall more (``ops.anchors.autoanchor``)."""
    anchors = getattr(model, "anchors", None)
    if not isinstance(anchors, torch.Tensor) or anchors.ndim != 2 or anchors.shape[1] != 2:
        raise ConfigError(
            "autoanchor=true is for detectors with fitted (w, h) anchors (yolov3, yolov3_tiny); "
            f"{type(model).__name__} has none"
        )
    recs = getattr(data, "images", None)
    if recs is None:
        raise ConfigError(
            f"autoanchor=true reads the train boxes from the annotations; {type(data).__name__} "
            "has none to read (use a COCO/YOLO/VOC dataset, or autoanchor=false)"
        )
    wh = [
        (r.boxes[:, 2:] - r.boxes[:, :2]) * (imgsz / max(r.width, r.height)) for r in recs
    ]  # (N_i, 2) each, at the letterboxed size
    wh_all = np.concatenate(wh) if wh else np.zeros((0, 2))
    res = autoanchor(wh_all, anchors.detach().cpu().numpy(), seed=seed)
    print(res.note)
    if res.replaced:
        with torch.no_grad():
            anchors.copy_(torch.from_numpy(res.anchors).to(anchors))


def init_backbone(model: nn.Module, path: str) -> None:
    """Initialise the detector's backbone from a cvcraft classification checkpoint.

    The matching is the detector family's business (``backbone_init.load_backbone_state``);
    freezing and per-group LR then work through ``freeze=[backbone]`` and
    ``lr_mults={backbone: 0.1}``.
    """
    try:
        mod = importlib.import_module("cvcraft.models.detection.backbone_init")
    except ModuleNotFoundError:
        raise ConfigError(
            "backbone_weights= needs cvcraft.models.detection.backbone_init, which this "
            "installation does not have; use weights= with a detection checkpoint instead"
        ) from None
    state = load_checkpoint(path)
    report = mod.load_backbone_state(model, weights_of(state))
    summary = report.summary() if hasattr(report, "summary") else "done"
    print(f"backbone_weights={path}: {summary}")


def multi_scale_size(imgsz: int, stride: int, rng: np.random.Generator) -> int:
    """A random side in [0.5, 1.5] x imgsz, a multiple of ``stride`` (YOLO multi-scale)."""
    lo, hi = max(stride, int(imgsz * 0.5)), int(imgsz * 1.5)
    return max(stride, int(rng.uniform(lo, hi + stride)) // stride * stride)


class DetectTask(BaseTask):
    """Everything detection-specific the Trainer delegates."""

    name = "detect"
    collate = collate_detect  # the batch layout (instance segmentation adds masks)
    masks = False  # whether the data is read with instance masks

    def make_dataset(self, data: Any, imgsz: int, augment: Any = None, **kw: Any) -> Any:
        """The training/eval dataset over ``data`` (``detection_dataset``'s arguments)."""
        return detection_dataset(data, imgsz, augment, **kw)

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.cfg: DetectConfig = cfg
        self.category_ids: list[int] = []
        self._step = 0
        self._epoch = 0
        self._items: dict[str, float] = {}
        self._n_items = 0

    # -- setup
    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        self.classes, self.category_ids = splits.classes, splits.category_ids
        if cfg.classes and [str(c) for c in cfg.classes] != self.classes:
            raise ConfigError(
                f"classes={cfg.classes} but {cfg.data} has classes {self.classes}; "
                "drop classes= or fix the dataset's class list"
            )
        resume = self.check_resume(trainer)
        self.train_data, self.val_data = splits.train, splits.val
        if isinstance(splits.train, DetectionData) and is_main_process():
            note = count_bad_boxes(splits.train)
            if note:
                print(f"data: train: {note}")
        aug = augment_from_config(cfg)
        # Mosaic is off for the last close_mosaic epochs; the dataset reads the epoch from
        # each item's key, so persistent workers need no message to switch.
        self.train_ds = self.make_dataset(
            splits.train,
            cfg.imgsz,
            aug,
            seed=cfg.seed,
            mosaic_until=cfg.epochs - cfg.close_mosaic,
            pipeline=cfg.augment or None,  # an augment: list replaces the knobs above
        )
        trainer.train_loader = build_loader(
            self.train_ds, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed,
            drop_last=True, collate_fn=self.collate,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(
                f"{cfg.data}: {len(splits.train)} training images is fewer than "
                f"batch={cfg.batch}; lower batch="
            )
        self.val_loader = self.build_val_loader(splits)
        if not self.gt["annotations"]:
            self.no_val_objects(trainer, len(splits.val))
        self.device = trainer.device
        kw = {**cfg.model_kwargs, **loss_options(cfg)}
        model = build_detector(cfg.model, len(self.classes), kw, cfg.in_chans)
        if cfg.backbone_weights and resume is None:
            init_backbone(model, cfg.backbone_weights)
        if cfg.autoanchor and resume is None:  # a resume has the fitted anchors in its weights
            fit_model_anchors(model, splits.train, cfg.imgsz, cfg.seed)
        self.stride = int(getattr(model, "stride", 32))
        if cfg.imgsz % self.stride:
            raise ConfigError(
                f"imgsz={cfg.imgsz} must be a multiple of {cfg.model}'s stride {self.stride}; "
                f"use imgsz={(cfg.imgsz + self.stride - 1) // self.stride * self.stride}"
            )
        trainer.model = model.to(trainer.device)
        self.steps_per_epoch = len(trainer.train_loader)
        out = Path(trainer.out)
        self.write_classes(out)
        if cfg.plots:
            write_detection_plots(out / "plots", labels_of=splits.train, classes=self.classes)

    def no_val_objects(self, trainer: Any, n_images: int) -> None:
        """A val split without objects has no mAP (COCO reports -1): say so, and let the val
        loss pick best.pt unless monitor= was given."""
        note = f"data: the {n_images} val images have no objects, so map/map50 are -1"
        if not self.cfg.monitor:
            trainer.monitor, trainer.monitor_mode = "val_loss", "min"
            trainer.best_fitness = math.inf
            note += "; best.pt follows val_loss"
        print(note)

    def load_splits(self) -> Any:
        cfg = self.cfg
        splits = load_detection_splits(cfg.data, imgsz=cfg.imgsz, val_fraction=cfg.val_fraction,
                                       seed=cfg.seed, fraction=cfg.fraction,
                                       skip_bad=cfg.skip_bad, masks=self.masks)  # fmt: skip
        for note in splits.notes:
            print(f"data: {note}")
        if cfg.skip_bad:
            splits.train = drop_unreadable(splits.train, subset, "train", cfg.workers or 1)
            splits.val = drop_unreadable(splits.val, subset, "val", cfg.workers or 1)
        return splits

    def build_val_loader(self, splits: Any) -> Any:
        """Letterboxed val images, and the COCO ground truth they are scored against."""
        self.gt = self.ground_truth(splits.val, splits.category_ids)
        ds = self.make_dataset(splits.val, self.cfg.imgsz, None, seed=self.cfg.seed)
        return build_loader(
            ds, self.cfg.batch, shuffle=False, workers=self.cfg.workers, seed=self.cfg.seed,
            collate_fn=self.collate,
        )  # fmt: skip

    def ground_truth(self, data: Any, category_ids: list[int]) -> dict:
        """The COCO dict the val split is scored against."""
        return coco_ground_truth(data, category_ids)

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        write_detection_plots(
            out / "plots",
            metrics=self.last_eval,  # with the precision arrays (PR curves)
            classes=self.classes,
            labels_of=self.val_data,
            grid=prediction_grid(model, self.val_data, self.cfg, self.device),
        )

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Reset the per-epoch loss parts; say when Mosaic switches off (close_mosaic)."""
        self._epoch, self._step = epoch, 0
        self._items, self._n_items = {}, 0
        if (
            self.cfg.mosaic > 0
            and self.cfg.close_mosaic
            and epoch == self.cfg.epochs - self.cfg.close_mosaic
        ):
            print(f"epoch {epoch + 1}: Mosaic off for the last {self.cfg.epochs - epoch} epochs")

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            **super().checkpoint_meta(),
            "category_ids": self.category_ids,
            "in_chans": self.cfg.in_chans,
        }

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_detector(
            state["model_name"], int(state["num_classes"]), state.get("model_kwargs") or {},
            int(state.get("in_chans", 3)),
        )  # fmt: skip

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        """The trained input size and channel count."""
        super().apply_checkpoint(state)
        self.cfg.in_chans = int(state.get("in_chans", 3))

    # -- train / eval
    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        x = to_inputs(batch["images"], self.device, self.cfg.in_chans)
        targets = batch_targets(batch, self.device)
        if self.cfg.multi_scale:
            rng = np.random.default_rng([self.cfg.seed, self._epoch, self._step, 2])
            side = multi_scale_size(self.cfg.imgsz, self.stride, rng)
            if side != x.shape[-1]:
                gain = side / x.shape[-1]
                x = nn.functional.interpolate(x, size=(side, side), mode="bilinear")
                targets = [{**t, "boxes": t["boxes"] * gain} for t in targets]
        self._step += 1
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x, targets)  # through the DDP wrapper (gradient sync); loss on the bare model
        loss, items = unwrap_model(model).loss(out, targets)
        for k, v in items.items():
            self._items[k] = self._items.get(k, 0.0) + float(v)
        self._n_items += 1
        return loss, int(x.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        return detector_forward(self.cfg, self.device)(model, batch)

    def build_evaluators(self) -> dict[str, Any]:
        return {
            "coco": DetectionEvaluator(self.gt, self.val_data, len(self.classes), self.cfg.conf)
        }

    def evaluate(self, model: nn.Module, loader: Any = None) -> dict[str, Any]:
        metrics = super().evaluate(model, loader)
        self.last_eval = metrics  # with the arrays, for the plots in finish()
        public = without_arrays(metrics)
        for k, v in self._items.items():
            public[f"train_{k}"] = v / max(self._n_items, 1)
        return public

    # -- plots at the end of a run
    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if not self.cfg.plots:
            return
        write_detection_plots(
            Path(trainer.out) / "plots",
            history=trainer.history,
            metrics=getattr(self, "last_eval", metrics),
            classes=self.classes,
            grid=prediction_grid(model, self.val_data, self.cfg, self.device),
        )


def without_arrays(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's view: no precision array (plots only), the confusion matrix as lists."""
    out = {k: v for k, v in metrics.items() if k != "precision"}
    if isinstance(out.get("confusion_matrix"), np.ndarray):
        out["confusion_matrix"] = out["confusion_matrix"].tolist()
    return out


class DetectionEvaluator:
    """COCO's 12 numbers (``map``, ``map50``, ...) and per-class AP of the detections mapped
    back to the original images, the detection confusion matrix, and ``val_loss`` (the
    detector's loss on the letterboxed val batches). ``outputs`` per batch:
    ``{"dets": per-image dicts, "loss": tensor or None}``."""

    def __init__(
        self, gt: dict, data: Any, num_classes: int, conf: float, keep_arrays: bool = True
    ) -> None:
        self.gt, self.data, self.keep_arrays = gt, data, keep_arrays
        self.coco = COCOEvaluator(gt)
        self.confusion = DetectionConfusionMatrix(num_classes, conf_threshold=conf,
                                                  iou_threshold=0.45)  # fmt: skip
        self.reset()

    def reset(self) -> None:
        self.coco.reset()
        self.confusion.matrix[:] = 0
        self.loss_sum, self.n_loss = 0.0, 0

    def update(self, batch: dict[str, Any], outputs: dict[str, Any]) -> None:
        if outputs.get("loss") is not None:
            self.loss_sum += float(outputs["loss"]) * len(batch["meta"])
            self.n_loss += len(batch["meta"])
        preds = []
        for d, meta in zip(outputs["dets"], batch["meta"]):
            boxes = unletterbox_boxes(d["boxes"].float(), meta)
            preds.append(
                {"image_id": meta["image_id"], "boxes": boxes, "scores": d["scores"].float(),
                 "labels": d["labels"]}
            )  # fmt: skip
            rec = self.data.images[meta["index"]]
            self.confusion.update(boxes, d["scores"], d["labels"], rec.boxes, rec.labels)
        self.coco.update(preds)

    def state_dict(self) -> dict[str, Any]:
        return {"coco": self.coco.state_dict(), "confusion": self.confusion.matrix.copy(),
                "loss_sum": self.loss_sum, "n_loss": self.n_loss}  # fmt: skip

    def merge(self, state: dict[str, Any]) -> None:
        self.coco.merge(state["coco"])
        self.confusion.matrix += state["confusion"]
        self.loss_sum += state["loss_sum"]
        self.n_loss += state["n_loss"]

    def compute(self) -> dict[str, Any]:
        res = self.coco.compute()
        out: dict[str, Any] = {METRIC_NAMES[k]: float(res[k]) for k in COCO_KEYS}
        if self.n_loss:
            out["val_loss"] = self.loss_sum / self.n_loss
        out["per_class"] = res["per_class"]
        if self.keep_arrays:
            out["precision"] = res["precision"]
            out["confusion_matrix"] = self.confusion.compute()
        return out


def detector_forward(cfg: DetectConfig, device: torch.device) -> Any:
    """The val forward: detections (TTA if ``cfg.tta``) and, without TTA, the detector's
    loss on the same outputs (every detector here defines it on eval outputs)."""

    def forward(model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        x = to_inputs(batch["images"], device, cfg.in_chans)
        if cfg.tta:
            with postprocess_nms(cfg.nms):
                return {"dets": tta_detect(model, x, cfg.val_conf, cfg.iou, cfg.max_det)}
        out = model(x)
        with postprocess_nms(cfg.nms):
            dets = model.postprocess(out, conf=cfg.val_conf, iou=cfg.iou, max_det=cfg.max_det)
        loss, _ = model.loss(out, batch_targets(batch, device))
        return {"dets": dets, "loss": loss}

    return forward


def evaluate_detector(
    model: nn.Module,
    loader: Any,
    gt: dict,
    data: Any,
    device: torch.device,
    cfg: DetectConfig,
    *,
    num_classes: int,
    keep_arrays: bool = True,
) -> dict[str, Any]:
    """COCO metrics, confusion matrix and val loss of ``model`` over ``loader``, reduced
    across DDP ranks (``engine.evaluation.run_evaluation``)."""
    evaluator = DetectionEvaluator(gt, data, num_classes, cfg.conf, keep_arrays)
    forward = detector_forward(cfg, device)
    return run_evaluation(model, loader, forward, [evaluator], device=device, amp=cfg.amp)


@torch.no_grad()
def tta_detect(
    model: nn.Module, x: torch.Tensor, conf: float, iou: float, max_det: int
) -> list[dict[str, torch.Tensor]]:
    """Test-time augmentation: the batch at scales 1, 0.83 (flipped) and 0.67, detections
    mapped back to ``x``'s pixels, merged per image with class-aware NMS at ``iou``."""
    h, w = x.shape[-2:]
    stride = int(getattr(model, "stride", 32))
    passes = []
    for s, flip in zip(TTA_SCALES, (False, True, False)):
        nh, nw = (
            max(stride, round(h * s / stride) * stride),
            max(stride, round(w * s / stride) * stride),
        )
        xi = x if (nh, nw) == (h, w) else nn.functional.interpolate(x, (nh, nw), mode="bilinear")
        if flip:
            xi = xi.flip(-1)
        dets = model.postprocess(model(xi), conf=conf, iou=iou, max_det=max_det)
        gain = xi.new_tensor([w / nw, h / nh, w / nw, h / nh])
        for d in dets:
            b = d["boxes"].float()
            if flip:
                b = torch.stack([nw - b[:, 2], b[:, 1], nw - b[:, 0], b[:, 3]], 1)
            d["boxes"] = b * gain
        passes.append(dets)
    merged = []
    for per_image in zip(*passes):
        boxes = torch.cat([d["boxes"] for d in per_image])
        scores = torch.cat([d["scores"].float() for d in per_image])
        labels = torch.cat([d["labels"] for d in per_image])
        keep = torchvision.ops.batched_nms(boxes, scores, labels, iou)[:max_det]
        merged.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return merged


@torch.no_grad()
def prediction_grid(
    model: nn.Module, data: Any, cfg: DetectConfig, device: torch.device, n: int = 16
) -> np.ndarray:
    """A 4-column mosaic of val images with the model's boxes drawn (uint8 HWC RGB)."""
    idx = np.linspace(0, len(data) - 1, num=min(n, len(data))).astype(int)
    model.eval()
    tiles = []
    for i in idx:  # a handful of images; one forward each keeps memory flat
        s = Letterbox(cfg.imgsz)(data.sample(int(i)))
        x = to_inputs(torch.from_numpy(s.image).permute(2, 0, 1)[None], device, cfg.in_chans)
        with postprocess_nms(cfg.nms):
            d = model.postprocess(model(x), conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det)[0]
        k = max(1, -(-GRID_TILE // cfg.imgsz))  # small inputs are enlarged so captions fit
        img = cv2.resize(s.image, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
        tiles.append(draw_detections(img, d["boxes"] * k, d["scores"], d["labels"], data.classes))
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    h, w = tiles[0].shape[:2]
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
    return grid


def coco_ids(
    files: list[Path], classes: list[str], category_ids: list[int], gt: str
) -> tuple[dict[Path, int], list[int], str]:
    """The image id of every file and the category id of every class for predictions.json.

    With ``gt`` (a COCO JSON): the ids of that file, images matched by file name and
    categories by class name, so ``cvcraft eval detect`` scores the pair. Without: an
    all-numeric file name is its id (COCO's own naming, ``000000000009.jpg`` -> 9), else
    the position in the sorted list; categories are the training data's ids.
    Returns ``(image ids, category ids, note)``.
    """
    if not gt:
        stems = [f.stem for f in files]
        if all(st.isdigit() for st in stems) and len({int(st) for st in stems}) == len(files):
            return {f: int(f.stem) for f in files}, category_ids, "image ids from file names"
        note = "image ids = positions in the sorted file list (give gt= for a dataset's ids)"
        return {f: i for i, f in enumerate(files)}, category_ids, note
    doc = json.loads(Path(gt).read_text())
    by_name = {Path(str(im.get("file_name", ""))).name: int(im["id"]) for im in doc["images"]}
    cat_by_name = {str(c["name"]): int(c["id"]) for c in doc.get("categories", [])}
    missing = [c for c in classes if c not in cat_by_name]
    if missing:
        raise DataError(
            f"gt={gt}: the model's classes {missing[:5]} are not categories of that file "
            f"(it has {list(cat_by_name)[:8]}...); give the COCO file of the data it was trained on"
        )
    unknown = [f.name for f in files if f.name not in by_name]
    if unknown:
        raise DataError(
            f"gt={gt}: {len(unknown)} source images are not in its images list (first: "
            f"{unknown[0]}); predict the images of that file or drop gt="
        )
    return {f: by_name[f.name] for f in files}, [cat_by_name[c] for c in classes], f"ids from {gt}"


@torch.no_grad()
def predict_detector(
    cfg: DetectConfig, out: Path, task: Any = None, annotate: Any = None
) -> list[dict[str, Any]]:
    """``cvcraft predict detect``: boxes for every image in ``source``.

    Writes ``out/<name>.jpg`` (boxes, labels and scores drawn on the original image),
    ``predictions.json`` (COCO results: image_id and category_id as ``coco_ids`` gives
    them, bbox xywh in original pixels, score, plus file_name) and ``images.json``
    (image_id -> path). Unreadable images are skipped and listed (``finish_skipped``).
    Returns one dict per image with ``path`` and ``summary``.

    ``task`` (default ``DetectTask``) loads the checkpoint; ``annotate(image, det, meta,
    boxes, classes)`` (det: the model's detection dict, boxes: in original pixels) returns the
    drawn image and one dict of extra COCO result fields per detection (instance masks as
    RLE); default: boxes drawn, no extra fields.
    """
    device = select_device(cfg.device)
    model, state = (task or DetectTask).load_model(cfg.weights, device)
    classes = list(state["classes"])
    cat_ids = list(state.get("category_ids") or range(1, len(classes) + 1))
    imgsz = int(state.get("imgsz", cfg.imgsz))
    in_chans = int(state.get("in_chans", 3))
    files = list_images(cfg.source)
    image_ids, cat_ids, note = coco_ids(files, classes, cat_ids, cfg.gt)
    print(f"predictions.json: {note}")
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    coco_results: list[dict[str, Any]] = []
    used_names: set[str] = set()
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(files), cfg.batch):
        read = readable_images(files[start : start + cfg.batch], skipped)
        if not read:
            continue
        boxed = [Letterbox(imgsz)(Sample(im)) for _, im in read]
        x = to_inputs(
            torch.from_numpy(np.stack([s.image for s in boxed])).permute(0, 3, 1, 2), device,
            in_chans,
        )  # fmt: skip
        with autocast(device, cfg.amp), postprocess_nms(cfg.nms):
            if cfg.tta:
                dets = tta_detect(model, x, cfg.conf, cfg.iou, cfg.max_det)
            else:
                dets = model.postprocess(model(x), conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det)
        for (f, im), s, d in zip(read, boxed, dets):
            image_id = image_ids[f]
            boxes = unletterbox_boxes(d["boxes"].float().cpu(), s.meta)
            scores, labels = d["scores"].float().cpu().numpy(), d["labels"].cpu().numpy()
            boxes_np = boxes.numpy()
            if annotate is None:
                drawn, extra = draw_detections(im, boxes_np, scores, labels, classes), None
            else:
                drawn, extra = annotate(im, d, s.meta, boxes_np, classes)
            name = _unique_name(f, used_names)
            cv2.imwrite(str(out / name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            xywh = xyxy_to_xywh(boxes_np.astype(np.float64))
            dets_out = [
                {"class": classes[int(c)], "score": float(sc), "box": [float(v) for v in b]}
                for b, sc, c in zip(boxes_np, scores, labels)
            ]
            coco_results += [
                {"image_id": image_id, "category_id": int(cat_ids[int(c)]),
                 "bbox": [round(float(v), 3) for v in bb], "score": round(float(sc), 5),
                 "file_name": str(f), **(extra[k] if extra else {})}
                for k, (bb, sc, c) in enumerate(zip(xywh, scores, labels))
            ]  # fmt: skip
            counts: dict[str, int] = {}
            for c in labels:
                counts[classes[int(c)]] = counts.get(classes[int(c)], 0) + 1
            summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no detections"
            results.append(
                {"path": str(f), "image_id": image_id, "saved": str(out / name),
                 "detections": dets_out, "summary": summary}
            )  # fmt: skip
    (out / "predictions.json").write_text(json.dumps(coco_results))
    (out / "images.json").write_text(
        json.dumps([{"id": r["image_id"], "file_name": r["path"]} for r in results], indent=1)
    )
    finish_skipped(out, skipped, len(files), cfg.skip_bad)
    return results


def _unique_name(path: Path, used: set[str]) -> str:
    """``stem.jpg``, or ``stem_2.jpg``... when two sources share a stem."""
    name, k = f"{path.stem}.jpg", 2
    while name in used:
        name, k = f"{path.stem}_{k}.jpg", k + 1
    used.add(name)
    return name


DetectTask.predict = staticmethod(predict_detector)  # type: ignore[attr-defined]


def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read as detection data (for pack and augment)."""
    kw = {"imgsz": imgsz} if imgsz else {}  # shapes scenes: the reader's default size
    splits = load_detection_splits(data, seed=seed, **kw)
    return splits.train, splits.val


def augment_from_config(cfg: DetectConfig) -> DetectAugment:
    """The training augmentation a detect (or instance) config asks for: Mosaic, MixUp,
    affine, flips and HSV at the config's values."""
    return DetectAugment(
        mosaic=cfg.mosaic, mixup=cfg.mixup, degrees=cfg.degrees, translate=cfg.translate,
        scale=cfg.scale, shear=cfg.shear, perspective=cfg.perspective,
        fliplr=cfg.hflip, flipud=cfg.vflip,
        hsv_h=cfg.hsv_h, hsv_s=cfg.hsv_s, hsv_v=cfg.hsv_v,
    )  # fmt: skip


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train detect`` builds with default keys: Mosaic,
    affine, HSV and flips at the config's defaults (for ``cvcraft augment``)."""
    cfg = DetectConfig(imgsz=imgsz, seed=seed)
    aug = augment_from_config(cfg)
    return detection_dataset(source, imgsz, aug, seed=seed)
