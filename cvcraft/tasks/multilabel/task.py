"""Multi-label classification as a Trainer task, plus its val and predict entry points.

Data flow: ``MultiLabelData`` (multi-hot targets in ``Sample.extras["multi_hot"]``) ->
``AugmentedDataset`` with classify's pipeline (geometry leaves a ``label`` extra alone) ->
``Collate(("image",), extras=("multi_hot",))`` -> device -> normalization -> any classifier
with C outputs, read as C independent sigmoids. Unknown (-1) targets are masked out of the
loss and the metrics. After each evaluation the per-class F1-optimal thresholds are kept;
checkpoints carry them, and ``predict`` uses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data import build_loader, read_image
from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.collate import Collate
from cvcraft.data.io import list_images
from cvcraft.data.multilabel import MULTI_HOT, MultiLabelData, fold_splits, load_multilabel
from cvcraft.engine.device import autocast, select_device
from cvcraft.engine.evaluation import MetricsWithLoss
from cvcraft.errors import DataError
from cvcraft.losses.multilabel import MultiLabelLoss, bce_multilabel
from cvcraft.metrics.multilabel import MultiLabelMetrics, precision_recall_curves
from cvcraft.structures import Sample
from cvcraft.tasks.base import BaseTask, take_fraction
from cvcraft.tasks.classify.task import build_classifier, build_transforms
from cvcraft.tasks.image_input import train_stats
from cvcraft.tasks.multilabel.config import MultilabelConfig
from cvcraft.transforms.normalize import Preprocess
from cvcraft.viz.multilabel import format_ap_table, plot_multilabel_pr
from cvcraft.viz.plots import plot_curves

COLLATE = Collate(("image",), extras=(MULTI_HOT,))
POS_WEIGHT_CAP = 100.0  # a class seen once in 10k images would otherwise weigh 10k


def positive_weights(data: MultiLabelData, mode: str) -> list[float] | None:
    """``pos_weight`` per class from the known train labels: #neg / #pos (``auto``) or its
    square root (``sqrt``), capped at ``POS_WEIGHT_CAP``; a class without positives gets 1."""
    if mode == "none":
        return None
    pos, neg = data.positives().astype(np.float64), data.negatives().astype(np.float64)
    w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    w = np.sqrt(w) if mode == "sqrt" else w
    return np.clip(w, 1e-3, POS_WEIGHT_CAP).astype(np.float32).tolist()


def build_criterion(cfg: MultilabelConfig, pos_weight: list[float] | None) -> MultiLabelLoss:
    """The ``loss`` key with its options (focal: gamma/alpha, asl: gamma_pos/gamma_neg/clip)."""
    if cfg.loss == "focal":
        alpha = None if cfg.focal_alpha < 0 else cfg.focal_alpha
        return MultiLabelLoss("focal", pos_weight, gamma=cfg.focal_gamma, alpha=alpha)
    if cfg.loss == "asl":
        return MultiLabelLoss("asl", pos_weight, gamma_pos=cfg.gamma_pos,
                              gamma_neg=cfg.gamma_neg, clip=cfg.clip)  # fmt: skip
    return MultiLabelLoss("bce", pos_weight)


class MultilabelEvaluator(MetricsWithLoss):
    """``MultiLabelMetrics`` on sigmoid scores plus the masked mean BCE (``val_loss``)."""

    def __init__(self, num_classes: int, threshold: float, tune: bool, device: torch.device):
        self.metrics = MultiLabelMetrics(num_classes, threshold, tune)
        self.device = device
        self.reset()

    def update(self, batch: dict[str, Any], logits: torch.Tensor) -> None:
        t = batch[MULTI_HOT].to(self.device)
        self.loss_sum += float(bce_multilabel(logits, t, reduction="sum"))
        self.n += int((t >= 0).sum())
        self.metrics.update(logits.sigmoid(), t)


class MultilabelTask(BaseTask):
    """Everything multi-label-specific the Trainer delegates."""

    name = "multilabel"

    def __init__(self, cfg: MultilabelConfig) -> None:
        super().__init__(cfg)
        self.cfg: MultilabelConfig = cfg
        self.stats: dict[str, Any] | None = None
        self.thresholds: list[float] | None = None
        self.evaluator: MultilabelEvaluator | None = None

    # -- setup
    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        train = take_fraction(splits.train, cfg.fraction, cfg.seed, 2)
        self.classes = list(splits.classes)
        resume = self.check_resume(trainer)
        if resume is not None:
            self.thresholds = resume.get("thresholds")
        self.stats = train_stats(cfg, train.images, trainer.out, resume)
        self.train_data, self.val_data = train, splits.val
        ds = AugmentedDataset(train, build_transforms(cfg, True), seed=cfg.seed)
        trainer.train_loader = build_loader(
            ds, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed, drop_last=True,
            collate_fn=COLLATE,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(
                f"{cfg.data}: {len(train)} training images is fewer than batch={cfg.batch}; "
                "lower batch="
            )
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_classifier(
            cfg.model, len(self.classes), cfg.in_chans, cfg.imgsz, cfg.model_kwargs
        )
        trainer.model = model.to(trainer.device)
        self.pre = Preprocess(self.stats, cfg.normalize, cfg.in_chans).to(trainer.device)
        self.pos_weight = positive_weights(train, cfg.pos_weight)
        self.criterion = build_criterion(cfg, self.pos_weight).to(trainer.device)
        self.write_classes(trainer.out)

    def load_splits(self) -> Any:
        cfg = self.cfg
        splits = load_multilabel(
            cfg.data,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            imgsz_hint=cfg.imgsz,
            classes=[str(c) for c in cfg.classes],
        )
        if cfg.folds:  # k-fold (tasks/kfold.py): an iteratively stratified fold of train + val
            splits = fold_splits(splits, cfg.folds, cfg.fold, cfg.seed)
        self.fold_index = getattr(splits, "fold_index", None)
        return splits

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        ds = AugmentedDataset(splits.val, build_transforms(cfg, False), seed=cfg.seed)
        return build_loader(ds, cfg.batch, shuffle=False, workers=cfg.workers, seed=cfg.seed,
                            collate_fn=COLLATE)  # fmt: skip

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            **super().checkpoint_meta(),
            "in_chans": self.cfg.in_chans,
            "normalize": self.cfg.normalize,
            "norm_stats": self.stats,
            "threshold": self.cfg.threshold,
            "thresholds": self.thresholds,
        }

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        super().apply_checkpoint(state)
        self.stats = state.get("norm_stats")
        self.pre = Preprocess(self.stats, state.get("normalize", "none"), state["in_chans"])
        self.pre = self.pre.to(self.device)

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_classifier(
            state["model_name"],
            state["num_classes"],
            state["in_chans"],
            int(state.get("imgsz", 224)),
            state.get("model_kwargs") or {},
        )

    # -- train / eval
    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pre(batch["images"].to(self.device, non_blocking=True))

    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        x = self._inputs(batch)
        y = batch[MULTI_HOT].to(self.device, non_blocking=True)
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out  # auxiliary heads are not used
        return self.criterion(logits.float(), y), int(y.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(self._inputs(batch)).float()

    def build_evaluators(self) -> dict[str, Any]:
        cfg = self.cfg
        self.evaluator = MultilabelEvaluator(len(self.classes), cfg.threshold,
                                             cfg.tune_thresholds, self.device)  # fmt: skip
        return {"multilabel": self.evaluator}

    def evaluate(self, model: nn.Module, loader: Any = None) -> dict[str, Any]:
        out = super().evaluate(model, loader)
        if "thresholds" in out:
            self.thresholds = list(out["thresholds"])
        return out

    # -- outputs of a run: predictions, AP table, PR curves
    def write_outputs(self, out: Path, metrics: dict[str, Any], history: list[Any]) -> None:
        """``val_predictions.npz`` (scores, targets, paths: the arrays the final metrics were
        computed from), ``ap_per_class.csv`` and, with ``plots``, the PR curves and curves."""
        if self.evaluator is None:
            return
        scores, targets = self.evaluator.metrics.arrays()
        paths = np.array([self.val_data.describe(i) for i in range(len(self.val_data))])
        np.savez_compressed(out / "val_predictions.npz", scores=scores, targets=targets,
                            paths=paths[: len(scores)], classes=np.array(self.classes))  # fmt: skip
        ap = metrics.get("ap_per_class", [None] * len(self.classes))
        table = format_ap_table(self.classes, ap, (targets == 1).sum(0), metrics.get("thresholds"))
        (out / "ap_per_class.csv").write_text(table)
        if self.cfg.plots:
            (out / "plots").mkdir(parents=True, exist_ok=True)
            if history:
                plot_curves(history, out / "plots")
            curves = precision_recall_curves(scores, targets)
            plot_multilabel_pr(curves, ap, self.classes, out / "plots" / "pr_curves.png")

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        self.write_outputs(Path(trainer.out), metrics, trainer.history)

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        self.write_outputs(Path(out), metrics, [])


@torch.no_grad()
def predict_multilabel(cfg: MultilabelConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict multilabel``: per image, the classes whose probability reaches the
    checkpoint's tuned threshold (else ``threshold``), with every class's probability."""
    device = select_device(cfg.device)
    model, state = MultilabelTask.load_model(cfg.weights, device)
    classes = list(state["classes"])
    cfg.imgsz = int(state.get("imgsz", cfg.imgsz))
    thr = np.asarray(state.get("thresholds") or [state.get("threshold", 0.5)] * len(classes))
    pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"), state["in_chans"])
    pre = pre.to(device)
    tf = build_transforms(cfg, False)
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    files = list_images(cfg.source)
    for start in range(0, len(files), cfg.batch):
        chunk = files[start : start + cfg.batch]
        imgs = np.stack([tf(Sample(read_image(f)), rng).image for f in chunk])
        x = pre(torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device))
        with autocast(device, cfg.amp):
            probs = model(x).float().sigmoid().cpu().numpy()
        for f, p in zip(chunk, probs):
            on = np.flatnonzero(p >= thr)
            labels = [classes[i] for i in on]
            results.append({
                "path": str(f),
                "labels": labels,
                "scores": {c: float(v) for c, v in zip(classes, p)},
                "summary": " ".join(f"{classes[i]} {p[i]:.2f}" for i in on) or "(none)",
            })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    with open(out / "predictions.csv", "w") as fh:
        fh.write("path,labels\n")
        for r in results:
            fh.write(f"{r['path']},{'|'.join(r['labels'])}\n")
    return results


MultilabelTask.predict = staticmethod(predict_multilabel)  # type: ignore[attr-defined]
