"""Image classification as a Trainer task, plus its val and predict entry points.

Data flow: reader -> ``ClassifyDataset`` (augmentation on uint8 HWC with a per-sample
generator) -> collate to a uint8 NCHW batch -> device -> float + normalization with the
training set's statistics (``Normalizer``) -> model. Normalization runs on the device
because moving uint8 is 4x cheaper than float32 and the op is trivially parallel there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.attacks import fgsm, pgd, trades_loss
from cvcraft.data import (
    ClassifyDataset,
    build_loader,
    load_classification,
)
from cvcraft.data.folds import single_label_fold
from cvcraft.data.io import list_images
from cvcraft.data.sampling import (
    RepeatAwareDataset,
    build_sampler,
    label_distribution,
    weights_from_spec,
)
from cvcraft.data.stats_cache import cached_stats
from cvcraft.engine import distributed as ddp
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.device import autocast, select_device
from cvcraft.engine.evaluation import MetricsWithLoss, run_evaluation
from cvcraft.engine.lookahead import Lookahead
from cvcraft.engine.optim import unwrap_model
from cvcraft.engine.trainer import ModelPart
from cvcraft.errors import ConfigError, DataError
from cvcraft.explain.layers import find_layer
from cvcraft.losses import build_loss
from cvcraft.losses.classification import deep_supervision_loss
from cvcraft.losses.distillation import hint_loss, kd_loss
from cvcraft.metrics.classification import ClassificationMetrics
from cvcraft.models import create_model, model_default_cfg
from cvcraft.nn.prune import shrink_to_widths
from cvcraft.nn.whitening import PatchWhitening, set_whitening_epoch
from cvcraft.structures import Sample
from cvcraft.tasks.base import (
    BaseTask,
    build_model_with,
    check_input_size,
    finish_skipped,
    readable_images,
    take_fraction,
)
from cvcraft.tasks.classify.classic import (
    CLASSIC_MODELS,
    ClassicFit,
    build_classic,
    classic_from_checkpoint,
)
from cvcraft.tasks.classify.config import ClassifyConfig
from cvcraft.tasks.classify.semi import (
    FixMatchStats,
    fixmatch_dataset,
    fixmatch_loss,
    mean_teacher_step,
    pseudo_label_step,
    split_labeled,
)
from cvcraft.tasks.classify.tta import tta_logits
from cvcraft.transforms import build_transforms as build_pipeline
from cvcraft.transforms import default_classify_transforms
from cvcraft.transforms.device_aug import DeviceAugment
from cvcraft.transforms.mix import MixupCutmix
from cvcraft.transforms.normalize import IMAGENET_STATS, STATS_SAMPLES, Preprocess
from cvcraft.viz.plots import plot_confusion_matrix, plot_curves, plot_prediction_grid

AUX_LOSS_WEIGHT = 0.3  # each auxiliary head's loss weight when a model does not say


def load_splits(cfg: ClassifyConfig) -> Any:
    """The train/val data the config names; notes (e.g. skipped images) are printed."""
    splits = load_classification(
        cfg.data,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        cache=cfg.cache,
        cache_dir=cfg.cache_dir or None,
        skip_bad=cfg.skip_bad,
        classes=[str(c) for c in cfg.classes] or None,
    )
    for note in splits.notes:
        print(f"data: {note}")
    return splits


def build_transforms(cfg: ClassifyConfig, train: bool) -> Any:
    """The train or val pipeline; a non-empty ``augment:`` spec replaces the default train one
    (it must end at imgsz x imgsz, or collate reports the size mismatch)."""
    if train and cfg.augment:
        return build_pipeline(cfg.augment)
    # (multilabel and embed reuse this with configs that have no device-augmentation keys)
    if train and getattr(cfg, "device_translate", 0):  # crop and flip happen on the device
        return default_classify_transforms(cfg.imgsz, train=False)
    crop = cfg.crop if cfg.crop != "auto" else ("pad" if cfg.imgsz <= 64 else "rrc")
    return default_classify_transforms(
        cfg.imgsz,
        train=train,
        crop=crop,
        scale=(cfg.scale_min, 1.0),
        hflip=0.0 if getattr(cfg, "alt_flip", False) else cfg.hflip,
        vflip=cfg.vflip,
        degrees=cfg.degrees,
        translate=cfg.translate,
        hsv=(cfg.hsv_h, cfg.hsv_s, cfg.hsv_v),
        cutout=cfg.cutout,
        policy=cfg.policy or None,
        erasing=cfg.erasing,
    )


def build_criterion(cfg: ClassifyConfig, labels: np.ndarray, num_classes: int) -> nn.Module:
    """``loss`` (ce | focal) with ``class_weights`` (none | inverse | sqrt, from the label
    counts; focal takes them as its per-class alpha). Label smoothing stays in the loss for
    hard targets; with soft targets (mixing) ``MixupCutmix`` has already applied it."""
    soft = uses_soft_targets(cfg)
    smoothing = 0.0 if soft else cfg.label_smoothing
    w = weights_from_spec(cfg.class_weights, lambda: labels, num_classes)
    if cfg.loss == "focal":
        return build_loss("focal", alpha=w)
    return build_loss(cfg.loss, label_smoothing=smoothing, weight=w)


def uses_soft_targets(cfg: ClassifyConfig) -> bool:
    """Mixup/CutMix on, or focal loss with label smoothing (focal has no smoothing option, so
    the smoothed targets are made up front)."""
    mixing = (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0) and cfg.mix_prob > 0
    return mixing or (cfg.loss == "focal" and cfg.label_smoothing > 0)


class ClassifyTask(BaseTask):
    """Everything classification-specific the Trainer delegates."""

    name = "classify"

    def __init__(self, cfg: ClassifyConfig) -> None:
        super().__init__(cfg)
        self.cfg: ClassifyConfig = cfg
        self.stats: dict[str, Any] | None = None
        self.epoch, self.step = 0, 0
        self.train_correct: Any = 0  # int, then a device tensor once training counts
        self.train_seen = 0
        self.classic: ClassicFit | None = None  # the fitting step of a classic model

    # -- setup
    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        val = splits.val
        train = take_fraction(splits.train, cfg.fraction, cfg.seed, len(splits.classes))
        self.classes = list(splits.classes)
        if len(self.classes) < 2:
            raise DataError(
                f"{cfg.data}: one class ({', '.join(self.classes) or 'none'}): a classifier "
                "needs at least two (with one, every prediction is right and top-1 is "
                "always 1.0); add a folder per class, or check data= points at the folder "
                "that holds the class folders"
            )
        train, unlabeled = split_labeled(cfg, train)  # semi=fixmatch: few labels + the rest
        if cfg.bag >= 0:  # bagging (tasks/ensemble.py): member bag's bootstrap resample
            from cvcraft.tasks.ensemble import bootstrap_indices

            train = train.subset(bootstrap_indices(len(train), cfg.seed, cfg.bag))
        resume = self.check_resume(trainer)
        self.stats = self._stats(train, trainer.out, resume)
        self.train_data, self.val_data = train, val
        world, rank = ddp.world_size(), ddp.rank()
        if cfg.sampler != "random" and rank == 0:
            report = label_distribution(train.labels, self.classes)
            print(f"data: train label distribution (sampler={cfg.sampler})\n{report}")
        sampler = build_sampler(
            cfg.sampler, train.labels, cfg.seed, batch_size=max(1, cfg.batch // world),
            **({"num_replicas": world, "rank": rank} if world > 1 else {}),
        )  # fmt: skip
        # repeated draws of one item (weighted/balanced samplers) get distinct augmentations
        ds_cls = ClassifyDataset if sampler is None else RepeatAwareDataset
        ds_train = ds_cls(train, build_transforms(cfg, True), seed=cfg.seed)
        semi: dict[str, Any] = {}
        if cfg.semi:  # each item: a labelled image + mu unlabelled ones in weak/strong views
            ds_train, semi = fixmatch_dataset(cfg, train, unlabeled, build_transforms(cfg, True))
        self.semi_stats = FixMatchStats()
        trainer.train_loader = build_loader(
            ds_train, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed,
            drop_last=True, sampler=sampler, **semi,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(
                f"{cfg.data}: {len(train)} training images is fewer than batch={cfg.batch}; "
                "lower batch="
            )
        if cfg.model in CLASSIC_MODELS:  # fitted once on the unaugmented images (classic.py)
            trainer.train_loader = build_loader(
                ClassifyDataset(train, build_transforms(cfg, False), seed=cfg.seed), cfg.batch,
                shuffle=False, workers=cfg.workers, seed=cfg.seed,
            )  # fmt: skip
            self.classic = ClassicFit(self)
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_classifier(
            cfg.model, len(self.classes), cfg.in_chans, cfg.imgsz, cfg.model_kwargs
        )
        # fine-tuning a `cvcraft prune` checkpoint: the model at its widths, and so its runs
        self.pruned = pruned_of(cfg.weights)
        if self.pruned.get("widths"):
            model = shrink_to_widths(model, self.pruned["widths"])
        if self.classic is None:  # a classic model has no forward before its fit
            check_input_size(model, cfg.model, cfg.in_chans, cfg.imgsz)
        trainer.model = model.to(trainer.device)
        self.pre = Preprocess(self.stats, cfg.normalize, cfg.in_chans).to(trainer.device)
        self.criterion = build_criterion(cfg, train.labels, len(self.classes)).to(trainer.device)
        self.soft_targets = uses_soft_targets(cfg)
        self.mix = MixupCutmix(
            len(self.classes), cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob, cfg.mix_switch,
            cfg.label_smoothing,
        )  # fmt: skip
        self.channels_last = cfg.channels_last
        self.trainer = trainer
        self._setup_speed_parts(trainer, train, resume)
        if cfg.teacher:
            self._setup_teacher(trainer, model)
        self.write_classes(trainer.out)

    def _setup_speed_parts(self, trainer: Any, train: Any, resume: Any) -> None:
        """The speedrun pieces (docs/speedrun.md): fit any patch-whitening stem on the
        training images, the device augmentation, the lookahead callback."""
        cfg = self.cfg
        whiten = [m for m in trainer.model.modules() if isinstance(m, PatchWhitening)]
        if whiten and resume is None:
            idx = np.random.default_rng([cfg.seed, 23]).permutation(len(train))
            idx = np.sort(idx[: cfg.whiten_samples])
            tf, rng = build_transforms(cfg, False), np.random.default_rng(0)  # resize only
            imgs = np.stack([tf(Sample(train.load_image(int(i))), rng).image for i in idx])
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).to(trainer.device)  # (N, C, S, S)
            with torch.no_grad():
                z = self.pre(x)
                for m in whiten:
                    m.fit(z)
        self.device_aug = (
            DeviceAugment(cfg.alt_flip, cfg.device_translate, cfg.seed)
            if cfg.alt_flip or cfg.device_translate
            else None
        )
        if cfg.lookahead:
            trainer.callbacks.append(Lookahead(cfg.lookahead, cfg.lookahead_decay))

    def _setup_teacher(self, trainer: Any, student: nn.Module) -> None:
        """The teacher as a frozen model part (never stepped, never checkpointed); with
        ``kd=hint`` also the 1x1-conv regressor as a trained part and the two hooked maps."""
        cfg = self.cfg
        teacher, state = ClassifyTask.load_model(cfg.teacher, trainer.device)
        if list(state["classes"]) != self.classes:
            raise ConfigError(
                f"teacher={cfg.teacher} was trained on classes {state['classes'][:10]}, the data "
                f"has {self.classes[:10]}; distil from a teacher of the same classes"
            )
        pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"),
                         state["in_chans"]).to(trainer.device)  # fmt: skip
        self.teacher = nn.Sequential(pre, teacher).eval()
        trainer.extra_parts["teacher"] = ModelPart(self.teacher, train=False)
        if cfg.kd != "hint":
            return
        s_name, t_name = cfg.kd_layers.split(":", 1)
        self.maps: dict[str, torch.Tensor] = {}
        s_layer, t_layer = find_layer(student, s_name), find_layer(teacher, t_name)
        s_layer.register_forward_hook(lambda m, i, o: self.maps.__setitem__("s", o))
        t_layer.register_forward_hook(lambda m, i, o: self.maps.__setitem__("t", o))
        with torch.no_grad():  # one dummy pass gives both widths
            x = torch.zeros(1, cfg.in_chans, cfg.imgsz, cfg.imgsz, device=trainer.device)
            was = student.training
            student.eval()(x)
            student.train(was)
            teacher(x)
        c_s, c_t = self.maps["s"].shape[1], self.maps["t"].shape[1]
        regressor = nn.Conv2d(c_s, c_t, 1).to(trainer.device)
        trainer.extra_parts["hint"] = ModelPart(regressor, ema=False)

    def load_splits(self) -> Any:
        splits = load_splits(self.cfg)
        if self.cfg.folds:  # k-fold (tasks/kfold.py): a stratified fold of train + val
            splits = single_label_fold(splits, self.cfg.folds, self.cfg.fold, self.cfg.seed)
        self.fold_index = getattr(splits, "fold_index", None)
        return splits

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        ds = ClassifyDataset(splits.val, build_transforms(cfg, False), seed=cfg.seed)
        return build_loader(ds, cfg.batch, shuffle=False, workers=cfg.workers, seed=cfg.seed)

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        super().apply_checkpoint(state)
        self.stats = state.get("norm_stats")
        mode = state.get("normalize", "none")
        self.pre = Preprocess(self.stats, mode, state["in_chans"]).to(self.device)
        self.channels_last = False

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        write_plots(out, [], metrics, model, self.val_data, self.pre, self.classes, self.device,
                    build_transforms(self.cfg, False))  # fmt: skip

    def _stats(self, train: Any, out: Path, resume: dict[str, Any] | None) -> dict[str, Any] | None:
        mode = self.cfg.normalize
        if mode == "none":
            return None
        if resume is not None and resume.get("norm_stats") is not None:
            return resume["norm_stats"]
        if mode == "imagenet":
            stats = dict(IMAGENET_STATS)
        else:
            # computed once per dataset and cached on disk (keyed by files, labels, options)
            seed = [self.cfg.seed, 11]
            where = Path(self.cfg.cache_dir) / "stats" if self.cfg.cache_dir else None
            stats = cached_stats(train, where, max_samples=STATS_SAMPLES, seed=seed)
            stats.pop("cached", None)
            stats["samples"] = min(len(train), STATS_SAMPLES)
        (Path(out) / "norm_stats.json").write_text(json.dumps(stats, indent=1))
        return stats

    def checkpoint_meta(self) -> dict[str, Any]:
        meta = {
            **super().checkpoint_meta(),
            "in_chans": self.cfg.in_chans,
            "normalize": self.cfg.normalize,
            "norm_stats": self.stats,
        }
        if getattr(self, "pruned", None):
            meta["pruned"] = self.pruned
        if self.classic is not None:  # the fitted arrays' layout, to rebuild before loading
            meta["classic"] = unwrap_model(self.trainer.model).layout()
        return meta

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        """The architecture a checkpoint describes, at its pruned widths when ``cvcraft
        prune`` removed channels."""
        if "classic" in state:
            return classic_from_checkpoint(state)
        model = build_classifier(
            state["model_name"],
            state["num_classes"],
            state["in_chans"],
            int(state.get("imgsz", 224)),
            state.get("model_kwargs") or {},
        )
        widths = (state.get("pruned") or {}).get("widths")
        return shrink_to_widths(model, widths) if widths else model

    # -- train / eval
    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.pre(batch["images"].to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Batch-level randomness is keyed by (epoch, step); the train top-1 restarts."""
        self.epoch, self.step = int(epoch), 0
        self.train_correct, self.train_seen = 0, 0
        if self.cfg.semi:
            self.semi_stats.reset()
        if trainer is not None:  # (tests drive the hook without a trainer)
            set_whitening_epoch(trainer.module, self.epoch)  # a whitening stem freezes at k

    def train_loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        if getattr(self, "device_aug", None) is not None:
            batch = dict(batch, images=self._device_augment(batch))
        y = batch["labels"].to(self.device, non_blocking=True)
        if self.cfg.semi:
            return self._fixmatch_loss(model, batch, y)
        x = self._inputs(batch)
        if self.soft_targets:
            # [seed, epoch, step, 1]: the batch's mix is the same after a resume (design.md)
            rng = np.random.default_rng([self.cfg.seed, self.epoch, self.step, 1])
            x, y = self.mix(x, y, rng)
        if self.cfg.adv:
            return self._adversarial_loss(model, batch, y)
        self.step += 1
        out = model(x)
        logits_main = out[0] if isinstance(out, tuple) else out
        with torch.no_grad():  # train top-1 against the hard label, or a soft target's argmax
            hard = y.argmax(1) if y.is_floating_point() else y
            # kept as a device tensor: int() here would sync the GPU every step
            self.train_correct = self.train_correct + (logits_main.argmax(1) == hard).sum()
            self.train_seen += int(hard.shape[0])
        # auxiliary heads (GoogLeNet's, only in train mode) count with the model's own weight
        weight = getattr(unwrap_model(model), "aux_loss_weight", AUX_LOSS_WEIGHT)
        loss = deep_supervision_loss(out, y, self.criterion, weight)
        if self.cfg.teacher:
            loss = self._distill(loss, logits_main, batch)
        return loss, int(y.shape[0])

    def _fixmatch_loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], y: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """FixMatch (semi.py): labelled CE + lambda_u x the masked pseudo-label CE."""
        cfg = self.cfg
        self.step += 1
        inputs = lambda t: self._inputs({"images": t})  # noqa: E731
        if cfg.semi == "pseudolabel":
            loss, logits = pseudo_label_step(
                model, batch, inputs, self.criterion, cfg.tau, cfg.lambda_u, self.semi_stats
            )
        elif cfg.semi == "meanteacher":  # the teacher is the trainer's EMA of the weights
            loss, logits = mean_teacher_step(
                model, self.trainer.ema.module, batch, inputs, self.criterion, cfg.lambda_u,
                self.semi_stats,
            )  # fmt: skip
        else:
            loss, logits = fixmatch_loss(
                model, batch, inputs, self.criterion, cfg.tau, cfg.lambda_u, self.semi_stats
            )
        with torch.no_grad():
            self.train_correct = self.train_correct + (logits.argmax(1) == y).sum()
            self.train_seen += int(y.shape[0])
        return loss, int(y.shape[0])

    def _device_augment(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Alternating flip (keyed by dataset index and epoch) and translation (keyed by
        seed, epoch, step, like the batch mixing) of the uint8 batch on the device."""
        g = torch.Generator().manual_seed(
            (self.cfg.seed * 1_000_003 + self.epoch * 10_007 + self.step * 7 + 2) % (2**63)
        )
        images = batch["images"].to(self.device, non_blocking=True)
        return self.device_aug(images, batch["index"], self.epoch, g)

    def _distill(
        self, hard_loss: torch.Tensor, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``(1 - alpha) * hard + alpha * soft``: Hinton's T^2-scaled KL to the teacher's
        softened logits, or (kd=hint) FitNets' regressed-map MSE."""
        cfg = self.cfg
        with torch.no_grad():
            t_logits = self.teacher(batch["images"].to(self.device, non_blocking=True)).float()
        if cfg.kd == "hint":
            regressor = self.trainer.part("hint").model
            soft = hint_loss(self.maps["s"], self.maps["t"], regressor)
        else:
            soft = kd_loss(logits, t_logits, cfg.kd_t)
        return (1 - cfg.kd_alpha) * hard_loss + cfg.kd_alpha * soft

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> tuple[float, int]:
        """The default step; with a FitNets hint the regressor steps with the student."""
        if self.classic is not None:
            return self.classic.step(batch, ctx)
        value, n = super().train_step(batch, ctx)
        if ctx.step_now and "hint" in ctx.extra_parts:
            ctx.step("hint")
        return value, n

    def _adversarial_loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], y: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """Madry et al.: the loss on adversarial examples of the batch (FGSM or PGD in
        [0, 1] pixels, the model's normalisation inside the attacked function), or TRADES.
        The attack runs with the model in eval mode (BatchNorm statistics untouched by the
        attack's forwards) and its random start from a generator keyed by (seed, epoch,
        step), so a resumed run attacks the same way."""
        cfg = self.cfg
        x01 = batch["images"].to(self.device, non_blocking=True).float() / 255.0
        g = torch.Generator(device="cpu").manual_seed(
            (cfg.seed * 1_000_003 + self.epoch * 10_007 + self.step) % (2**63)
        )
        self.step += 1
        net = PixelModel(model, self.pre, self.channels_last)
        if cfg.adv == "trades":
            loss, _ = trades_loss(net, x01, y, cfg.adv_eps, cfg.adv_alpha, cfg.adv_steps,
                                  cfg.trades_beta, generator=g)  # fmt: skip
            return loss, int(y.shape[0])
        was = model.training
        model.eval()
        if cfg.adv == "fgsm":
            x_adv = fgsm(net, x01, y, cfg.adv_eps)
        else:
            x_adv = pgd(net, x01, y, cfg.adv_eps, cfg.adv_alpha, cfg.adv_steps, generator=g)
        model.train(was)
        logits = net(x_adv.detach())
        with torch.no_grad():
            self.train_correct = self.train_correct + (logits.argmax(1) == y).sum()
            self.train_seen += int(y.shape[0])
        return self.criterion(logits.float(), y), int(y.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return tta_logits(model, self._inputs(batch), self.cfg.tta)

    def build_evaluators(self) -> dict[str, Any]:
        return {"accuracy": ClassifyEvaluator(len(self.classes), self.cfg.topk, self.device)}

    def evaluate(self, model: nn.Module, loader: Any = None) -> dict[str, Any]:
        out = super().evaluate(model, loader)
        if loader is None:  # every rank gets here, so the sums are collective-safe
            seen = ddp.all_reduce_sum(int(self.train_seen))  # over all ranks' shards
            if seen:
                out["train_top1"] = ddp.all_reduce_sum(int(self.train_correct)) / seen
            if self.cfg.semi and self.train_seen:  # the unlabelled term, pseudo-labels kept
                out.update(self.semi_stats.compute())
        return out

    # -- plots at the end of a run
    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if not self.cfg.plots:
            return
        write_plots(
            Path(trainer.out),
            trainer.history,
            metrics,
            model,
            self.val_data,
            self.pre,
            self.classes,
            self.device,
            build_transforms(self.cfg, False),
        )


class PixelModel(nn.Module):
    """``model(pre(255 * x))``: a classifier on [0, 1] pixel batches (what attacks perturb),
    with the run's normalisation inside."""

    def __init__(self, model: nn.Module, pre: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.model, self.pre, self.channels_last = model, pre, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pre(x * 255.0)
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        out = self.model(z)
        return (out[0] if isinstance(out, tuple) else out).float()


class ClassifyEvaluator(MetricsWithLoss):
    """Top-1 and top-k accuracy, confusion matrix, per-class P/R/F1, ROC-AUC and the mean
    cross-entropy (``val_loss``) over the val set. Top-k is left out when k >= the number
    of classes: every label is then among the k best, so it would always read 1.0."""

    def __init__(self, num_classes: int, topk: int, device: torch.device) -> None:
        self.k = topk if topk < num_classes else 1
        self.device = device
        self.metrics = ClassificationMetrics(num_classes, topk=(1, self.k) if self.k > 1 else (1,))
        self.reset()

    def update(self, batch: dict[str, Any], logits: torch.Tensor) -> None:
        y = batch["labels"].to(self.device)
        self.loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        self.n += int(y.shape[0])
        self.metrics.update(logits, y)

    def metric_names(self) -> set[str]:
        """The numbers ``compute()`` reports, from made-up samples (the trainer checks
        ``monitor=`` against them before the first epoch)."""
        c = self.metrics.num_classes
        probe = ClassifyEvaluator(c, self.k, torch.device("cpu"))
        probe.update({"labels": torch.arange(c)}, torch.eye(c))  # one sample per class
        return {k for k, v in probe.compute().items() if isinstance(v, (int, float))}


def evaluate_classifier(
    model: nn.Module,
    loader: Any,
    pre: nn.Module,
    num_classes: int,
    device: torch.device,
    *,
    amp: bool = False,
    topk: int = 5,
    channels_last: bool = False,
) -> dict[str, Any]:
    """The classification metrics of ``model`` over ``loader`` (uint8 batches, ``pre``
    normalises them), reduced across DDP ranks (``engine.evaluation.run_evaluation``)."""

    def forward(m: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        x = pre(batch["images"].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return m(x).float()

    evaluator = ClassifyEvaluator(num_classes, topk, device)
    return run_evaluation(model, loader, forward, [evaluator], device=device, amp=amp)


def write_plots(
    out: Path,
    history: list[dict[str, Any]],
    metrics: dict[str, Any],
    model: nn.Module,
    val_data: Any,
    pre: nn.Module,
    classes: list[str],
    device: torch.device,
    val_transform: Any,
    n_grid: int = 32,
) -> None:
    """Curves, confusion matrix and a grid of predictions on the first val images."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, plots)
    if "confusion_matrix" in metrics:
        plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]), classes, plots / "confusion_matrix.png"
        )
    idx = np.linspace(0, len(val_data) - 1, num=min(n_grid, len(val_data))).astype(int)
    rng = np.random.default_rng(0)
    images = np.stack([val_transform(Sample(val_data.load_image(int(i))), rng).image for i in idx])
    labels = val_data.labels[idx]
    model.eval()
    with torch.no_grad():
        x = pre(torch.from_numpy(images).permute(0, 3, 1, 2).to(device))
        probs = model(x).float().softmax(1).cpu().numpy()
    plot_prediction_grid(
        images, labels, probs.argmax(1), probs.max(1), classes, plots / "predictions.png"
    )


def pruned_of(weights: str) -> dict[str, Any]:
    """The ``pruned`` entry (method, amount, channel widths) of a checkpoint written by
    ``cvcraft prune``; {} for any other weights or none."""
    if not weights or Path(weights).suffix not in (".pt", ".pth"):
        return {}
    state = load_checkpoint(weights)
    return dict(state.get("pruned") or {}) if isinstance(state, dict) else {}


def build_classifier(
    name: str, num_classes: int, in_chans: int, imgsz: int, model_kwargs: dict[str, Any]
) -> nn.Module:
    """``create_model`` plus the input size for models whose layers depend on it (MLP's
    first layer, ViT's position table, Swin's windows: ``img_size_arg`` in their registered
    defaults)."""
    if name in CLASSIC_MODELS:
        return build_classic(name, num_classes, in_chans, dict(model_kwargs))
    kw = dict(model_kwargs)
    if model_default_cfg(name).get("img_size_arg") and "img_size" not in kw:
        kw["img_size"] = imgsz
    return build_model_with(
        name,
        model_kwargs,
        lambda: create_model(name, num_classes=num_classes, in_chans=in_chans, **kw),
    )


@torch.no_grad()
def predict_classifier(cfg: ClassifyConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict classify``: top-k classes for every image in ``source``."""
    device = select_device(cfg.device)
    model, state = ClassifyTask.load_model(cfg.weights, device)
    classes = list(state["classes"])
    cfg.imgsz = int(state.get("imgsz", cfg.imgsz))
    pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"), state["in_chans"]).to(
        device
    )
    tf = build_transforms(cfg, False)
    rng = np.random.default_rng(0)
    k = min(cfg.topk, len(classes))
    results: list[dict[str, Any]] = []
    files = list_images(cfg.source)
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(files), cfg.batch):
        read = readable_images(files[start : start + cfg.batch], skipped)
        if not read:
            continue
        chunk = [f for f, _ in read]
        imgs = np.stack([tf(Sample(im, meta={"path": str(f)}), rng).image for f, im in read])
        x = pre(torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device))
        with autocast(device, cfg.amp):
            probs = tta_logits(model, x, cfg.tta).softmax(1)
        top_p, top_i = probs.topk(k, dim=1)
        for f, p_row, i_row in zip(chunk, top_p.tolist(), top_i.tolist()):
            results.append(
                {
                    "path": str(f),
                    "class": classes[i_row[0]],
                    "score": p_row[0],
                    "summary": f"{classes[i_row[0]]} {p_row[0]:.3f}",
                    "topk": [{"class": classes[i], "score": p} for i, p in zip(i_row, p_row)],
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    with open(out / "predictions.csv", "w") as fh:
        fh.write("path,class,score\n")
        for r in results:
            fh.write(f"{r['path']},{r['class']},{r['score']:.6f}\n")
    finish_skipped(out, skipped, len(files), cfg.skip_bad)
    return results


ClassifyTask.predict = staticmethod(predict_classifier)  # type: ignore[attr-defined]


def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read as classification data (for pack and augment)."""
    splits = load_classification(data, seed=seed, imgsz_hint=imgsz)
    return splits.train, splits.val


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train classify`` builds with default keys (for
    ``cvcraft augment pipeline=default``)."""
    cfg = ClassifyConfig(imgsz=imgsz, seed=seed)
    return ClassifyDataset(source, build_transforms(cfg, True), seed=seed)
