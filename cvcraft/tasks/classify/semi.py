"""Semi-supervised classification with FixMatch (Sohn et al. 2020), on the classify task.

A few labelled images plus many unlabelled ones: each training item is one labelled image
(weakly augmented, with its label) and ``mu`` unlabelled images, each seen twice — a weak view
(the train pipeline: flip and pad-crop) and a strong view (the same pipeline, then
RandAugment at random magnitudes and a Cutout hole). One forward over the three groups, then

    loss = CE(z_x, y) + lambda_u * mean_u[ max(q_weak) >= tau ] * CE(z_strong, argmax(q_weak))

(``losses/fixmatch.py``). The unlabelled stream reads images only (``ImagesOnly``): no label
of an unlabelled item ever reaches the batch. ``labeled=N`` keeps N labels of the training
split (balanced over classes, FixMatch's protocol), ``labeled=0.1`` a fraction of each class;
the rest of the split is the unlabelled pool, plus the images under ``unlabeled=PATH``.
An epoch has ``max(L, ceil(U / mu))`` items, so it visits every labelled and every
unlabelled image at least once. Per-item randomness is keyed by (seed, epoch, item) like
every dataset here, so a resume replays the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.data.classification import ClassificationData, FileListData
from cvcraft.data.collate import collate_classify
from cvcraft.data.io import list_images
from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.fixmatch import (
    fixmatch_unlabeled_loss,
    mean_teacher_loss,
    pseudo_label_loss,
)
from cvcraft.structures import Sample
from cvcraft.transforms import Compose, Cutout, Transform
from cvcraft.transforms.policies import RandAugment


def select_labeled(labels: np.ndarray, labeled: float, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of the items that keep their label: ``labeled`` >= 1 is a total count
    dealt evenly over the classes (the first ``N mod C`` classes of a seeded order get one
    more), a value in (0, 1] the fraction of every class (at least one each)."""
    y = np.asarray(labels)
    counts = np.bincount(y, minlength=num_classes)
    rng = np.random.default_rng([seed, 41])
    if labeled > 1:
        n = int(labeled)
        if n < num_classes:
            raise ConfigError(f"labeled={n} is fewer than the {num_classes} classes")
        want = np.full(num_classes, n // num_classes)
        want[rng.permutation(num_classes)[: n % num_classes]] += 1
    else:
        want = np.maximum(1, np.round(counts * labeled).astype(np.int64))
    short = np.flatnonzero((want > counts) & (counts > 0))
    if short.size:
        c = int(short[0])
        raise DataError(
            f"labeled={labeled}: class {c} has {counts[c]} training images, {want[c]} wanted; "
            "lower labeled="
        )
    order = rng.permutation(len(y))
    order = order[np.argsort(y[order], kind="stable")]  # class blocks, random inside
    rank = np.empty(len(y), np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(y)) - starts[y[order]]  # position inside its class block
    return np.flatnonzero(rank < want[y])


class ImagesOnly:
    """The unlabelled stream's view of a dataset: length and images, no labels at all."""

    def __init__(self, data: Any) -> None:
        self._load, self._describe, self._n = data.load_image, data.describe, len(data)

    def __len__(self) -> int:
        return self._n

    def load_image(self, i: int) -> np.ndarray:
        return self._load(int(i))

    def describe(self, i: int) -> str:
        return self._describe(int(i))


class JoinedImages:
    """Several ``ImagesOnly`` views one after another (the rest of the split + ``unlabeled=``)."""

    def __init__(self, parts: Sequence[ImagesOnly]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _locate(self, i: int) -> tuple[ImagesOnly, int]:
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[k], int(i - (self.ends[k - 1] if k else 0))

    def load_image(self, i: int) -> np.ndarray:
        part, j = self._locate(i)
        return part.load_image(j)

    def describe(self, i: int) -> str:
        part, j = self._locate(i)
        return part.describe(j)


def split_labeled(cfg: Any, train: ClassificationData) -> tuple[ClassificationData, Any]:
    """(labelled training data, the unlabelled images) of ``semi=fixmatch``; ``(train, None)``
    when it is off."""
    if not cfg.semi:
        return train, None
    parts = []
    labeled = cfg.labeled
    if getattr(cfg, "labels_per_class", 0):  # N per class = N x classes, spread evenly
        labeled = cfg.labels_per_class * len(train.classes)
    if labeled:
        keep = select_labeled(train.labels, labeled, len(train.classes), cfg.seed)
        rest = np.setdiff1d(np.arange(len(train)), keep)
        parts.append(ImagesOnly(train.subset(rest)))
        train = train.subset(keep)
    if cfg.unlabeled:
        files = list_images(cfg.unlabeled)
        parts.append(ImagesOnly(FileListData(files, np.zeros(len(files), np.int64), ["?"])))
    pool = JoinedImages(parts)
    if len(pool) == 0:
        raise DataError(f"semi={cfg.semi}: no unlabelled images (labeled= kept every image)")
    print(f"data: {cfg.semi} with {len(train)} labelled and {len(pool)} unlabelled images")
    return train, pool


def strong_transforms(weak: Transform) -> Compose:
    """The strong view: the weak pipeline, RandAugment (2 ops, each at a random magnitude bin
    of the full range) and one Cutout hole of half the image side."""
    return Compose([weak, RandAugment(2, magnitude=30, num_bins=31, random_magnitude=True),
                    Cutout(1, 0.5, p=1.0)])  # fmt: skip


@dataclass
class SemiItem:
    """One FixMatch item: a labelled sample and ``mu`` unlabelled images in two views."""

    labeled: Sample
    weak: np.ndarray  # uint8 (mu, H, W, C)
    strong: np.ndarray  # uint8 (mu, H, W, C)
    u_index: np.ndarray  # int64 (mu,): which unlabelled images


class FixMatchDataset(torch.utils.data.Dataset):
    """Item ``(epoch, k)`` -> ``SemiItem``: labelled item ``k mod L`` through ``weak``, and
    unlabelled items ``perm_e[(k mu + j) mod U]`` (j < mu; ``perm_e`` a seeded permutation
    per epoch) each through ``weak`` and through ``strong`` with independent draws."""

    def __init__(
        self,
        labeled: ClassificationData,
        unlabeled: Any,
        weak: Transform,
        strong: Transform,
        mu: int,
        seed: int = 0,
    ) -> None:
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise DataError(
                f"FixMatch needs labelled and unlabelled images, got {len(labeled)} and "
                f"{len(unlabeled)}"
            )
        self.labeled, self.unlabeled = labeled, unlabeled
        self.weak, self.strong, self.mu, self.seed = weak, strong, int(mu), int(seed)

    def __len__(self) -> int:
        return max(len(self.labeled), math.ceil(len(self.unlabeled) / self.mu))

    def unlabeled_indices(self, epoch: int, k: int) -> np.ndarray:
        """The ``mu`` unlabelled items of item ``k`` in ``epoch``."""
        perm = np.random.default_rng([self.seed, epoch, 43]).permutation(len(self.unlabeled))
        return perm[(k * self.mu + np.arange(self.mu)) % len(self.unlabeled)]

    def __getitem__(self, key: int | tuple[int, ...]) -> SemiItem:
        epoch, k = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} items")
        li = k % len(self.labeled)
        sample = self.weak(self.labeled.sample(li), np.random.default_rng([self.seed, epoch, k, 0]))
        sample.meta["index"] = li
        u_idx = self.unlabeled_indices(epoch, k)
        weak, strong = [], []
        for j, u in enumerate(u_idx):
            img = Sample(self.unlabeled.load_image(int(u)))
            weak.append(self.weak(img, np.random.default_rng([self.seed, epoch, k, 1, j])).image)
            strong.append(
                self.strong(img, np.random.default_rng([self.seed, epoch, k, 2, j])).image
            )
        return SemiItem(sample, np.stack(weak), np.stack(strong), u_idx.astype(np.int64))


def collate_fixmatch(items: Sequence[SemiItem]) -> dict[str, Any]:
    """``images``/``labels``/``index`` of the labelled samples (as ``collate_classify``) plus
    ``u_weak``/``u_strong`` uint8 (B mu, C, H, W) and ``u_index`` (B mu,)."""
    out = collate_classify([it.labeled for it in items])
    for name in ("weak", "strong"):
        x = np.concatenate([getattr(it, name) for it in items])
        out[f"u_{name}"] = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    out["u_index"] = torch.from_numpy(np.concatenate([it.u_index for it in items]))
    return out


def fixmatch_dataset(
    cfg: Any, labeled: ClassificationData, unlabeled: Any, weak: Transform
) -> tuple[FixMatchDataset, dict[str, Any]]:
    """The training dataset and the ``build_loader`` keywords (its collate)."""
    ds = FixMatchDataset(labeled, unlabeled, weak, strong_transforms(weak), cfg.mu, cfg.seed)
    return ds, {"collate_fn": collate_fixmatch}


class FixMatchStats:
    """Per-epoch running means of the unlabelled term and of the confident fraction (the
    mask rate), kept as device tensors so logging does not sync every step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_u: Any = 0.0
        self.mask: Any = 0.0
        self.steps = 0

    def update(self, loss_u: torch.Tensor, mask: torch.Tensor) -> None:
        self.loss_u = self.loss_u + loss_u.detach()
        self.mask = self.mask + mask.mean()
        self.steps += 1

    def compute(self) -> dict[str, float]:
        if not self.steps:
            return {}
        return {
            "loss_u": float(self.loss_u) / self.steps,
            "mask_rate": float(self.mask) / self.steps,
        }


def fixmatch_loss(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    inputs: Any,
    criterion: nn.Module,
    tau: float,
    lambda_u: float,
    stats: FixMatchStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, labelled logits)`` of one FixMatch batch: one forward over [labelled, weak,
    strong] (BatchNorm sees all three groups together, as in the paper), labelled CE by
    ``criterion`` plus ``lambda_u`` times the masked pseudo-label term. ``inputs`` turns a
    uint8 batch into the model's normalised input."""
    b, m = batch["images"].shape[0], batch["u_weak"].shape[0]
    x = inputs(torch.cat([batch["images"], batch["u_weak"], batch["u_strong"]]))
    out = model(x)
    logits = (out[0] if isinstance(out, tuple) else out).float()
    logits_x, logits_w, logits_s = logits.split([b, m, m])
    y = batch["labels"].to(logits.device, non_blocking=True)
    loss_u, mask = fixmatch_unlabeled_loss(logits_w, logits_s, tau)
    if stats is not None:
        stats.update(loss_u, mask)
    return criterion(logits_x, y) + lambda_u * loss_u, logits_x


def pseudo_label_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    inputs: Any,
    criterion: nn.Module,
    tau: float,
    lambda_u: float,
    stats: FixMatchStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, labelled logits)`` of Pseudo-Label: one forward over [labelled, weak]; the weak
    view's own confident predictions are its targets (the strong view is not used)."""
    b = batch["images"].shape[0]
    out = model(inputs(torch.cat([batch["images"], batch["u_weak"]])))
    logits = (out[0] if isinstance(out, tuple) else out).float()
    logits_x, logits_u = logits[:b], logits[b:]
    y = batch["labels"].to(logits.device, non_blocking=True)
    loss_u, mask = pseudo_label_loss(logits_u, tau)
    if stats is not None:
        stats.update(loss_u, mask)
    return criterion(logits_x, y) + lambda_u * loss_u, logits_x


def mean_teacher_step(
    model: nn.Module,
    teacher: nn.Module,
    batch: dict[str, torch.Tensor],
    inputs: Any,
    criterion: nn.Module,
    lambda_u: float,
    stats: FixMatchStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, labelled logits)`` of Mean Teacher: the student sees [labelled, strong], the
    EMA teacher (no gradient, eval mode) the weak view of the same images; the consistency
    is ``mean_teacher_loss``. The mask statistic reports 1 (every item counts)."""
    b = batch["images"].shape[0]
    out = model(inputs(torch.cat([batch["images"], batch["u_strong"]])))
    logits = (out[0] if isinstance(out, tuple) else out).float()
    logits_x, logits_s = logits[:b], logits[b:]
    with torch.no_grad():
        was = teacher.training
        teacher.eval()
        t_out = teacher(inputs(batch["u_weak"]))
        teacher.train(was)
    t_logits = (t_out[0] if isinstance(t_out, tuple) else t_out).float()
    loss_u = mean_teacher_loss(logits_s, t_logits)
    if stats is not None:
        stats.update(loss_u, torch.ones(1, device=logits.device))
    y = batch["labels"].to(logits.device, non_blocking=True)
    return criterion(logits_x, y) + lambda_u * loss_u, logits_x
