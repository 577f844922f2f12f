"""Metric learning as a Trainer task, plus its val and predict entry points.

Data: any classification data (shapes, a class-per-identity ImageFolder, MNIST IDX, ...),
its classes read as identities, or a re-ID folder (``data/reid.py``: query/gallery with
cameras). Training batches come from ``PKSampler`` (P identities x K images); the model is
``EmbeddingNet`` (backbone -> projection -> BNNeck). Triplet and contrastive losses act on
the L2-normalized embedding; ArcFace/CosFace on its cosines to learned class centres.
Evaluation: leave-one-out retrieval over the val split (``RetrievalMetrics``), or query vs
gallery for re-ID data; ``metrics.json`` has ``map`` and ``rank1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.data import build_loader, read_image
from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.collate import Collate, collate_classify
from cvcraft.data.datasets import DataSplits
from cvcraft.data.io import list_images
from cvcraft.data.pk_sampler import PKSampler
from cvcraft.data.reid import REID, is_reid_folder, load_reid
from cvcraft.engine import distributed as ddp
from cvcraft.engine.device import select_device
from cvcraft.losses.metric import (
    batch_hard_triplet_loss,
    center_loss,
    contrastive_loss,
    margin_logits,
    semi_hard_triplet_loss,
)
from cvcraft.metrics.retrieval import QueryGalleryMetrics, RetrievalMetrics
from cvcraft.models.embedding import EmbeddingNet, pooled_feature_size
from cvcraft.structures import Sample
from cvcraft.tasks.base import BaseTask, take_fraction
from cvcraft.tasks.classify.task import build_classifier, build_transforms, load_splits
from cvcraft.tasks.embed.config import EmbedConfig
from cvcraft.tasks.image_input import train_stats
from cvcraft.transforms.normalize import Preprocess
from cvcraft.viz.neighbours import write_neighbour_grid
from cvcraft.viz.plots import plot_curves

GRID_QUERIES, GRID_NEIGHBOURS = 12, 5  # rows and neighbours of predict's neighbour grid

MARGIN_LOSSES = ("arcface", "cosface")
REID_COLLATE = Collate(("image",), extras=(REID,))


def build_embedder(
    name: str, dim: int, num_ids: int, in_chans: int, imgsz: int, model_kwargs: dict[str, Any],
    centres: bool,
) -> EmbeddingNet:  # fmt: skip
    """``EmbeddingNet`` on model ``name`` without its classifier (``num_classes=0``)."""
    backbone = build_classifier(name, 0, in_chans, imgsz, model_kwargs)
    feat = pooled_feature_size(backbone, in_chans, imgsz)
    return EmbeddingNet(backbone, feat, dim, num_ids if centres else 0)


def uses_centres(cfg: EmbedConfig) -> bool:
    """ArcFace/CosFace, the centre loss and the ID loss need learned class centres (the ID
    loss's classifier weights) in the model."""
    return cfg.loss in MARGIN_LOSSES or cfg.center_weight > 0 or cfg.id_weight > 0


def embedding_loss(
    cfg: EmbedConfig, model: nn.Module, emb: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """The ``loss`` key on a batch of embeddings (B, D) with identities (B,), plus
    ``center_weight`` x the centre loss to the model's class centres when it is on."""
    m = cfg.loss_margin()
    net = model.module if hasattr(model, "module") else model
    if cfg.loss in MARGIN_LOSSES:
        loss = F.cross_entropy(margin_logits(net.cosines(emb), ids, cfg.loss, cfg.scale, m), ids)
    else:
        unit = F.normalize(emb, dim=1)
        if cfg.loss == "contrastive":
            loss = contrastive_loss(unit, ids, m)
        elif cfg.mining == "semihard":
            loss = semi_hard_triplet_loss(unit, ids, m)
        else:
            loss = batch_hard_triplet_loss(unit, ids, m, cfg.soft)
    if cfg.center_weight > 0:
        loss = loss + cfg.center_weight * center_loss(emb, ids, net.centres)
    if cfg.id_weight > 0:  # BNNeck's ID loss: a bias-free classifier on the normalised-by-BN emb
        loss = loss + cfg.id_weight * F.cross_entropy(emb @ net.centres.T, ids)
    return loss


class RetrievalEvaluator:
    """Leave-one-out retrieval over the val embeddings (``RetrievalMetrics``), or query vs
    gallery with cameras for re-ID data (``QueryGalleryMetrics``)."""

    def __init__(self, distance: str, reid: bool = False, **options: Any) -> None:
        kind = QueryGalleryMetrics if reid else RetrievalMetrics
        self.metrics = kind((1, 5, 10), distance, **options)
        self.key = REID if reid else "labels"

    def reset(self) -> None:
        self.metrics.reset()

    def update(self, batch: dict[str, Any], emb: torch.Tensor) -> None:
        self.metrics.update(emb.float().cpu().numpy(), batch[self.key].numpy())

    def state_dict(self) -> dict[str, Any]:
        return self.metrics.state_dict()

    def merge(self, state: dict[str, Any]) -> None:
        self.metrics.merge(state)

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()


class EmbedTask(BaseTask):
    """Everything metric-learning-specific the Trainer delegates."""

    name = "embed"

    def __init__(self, cfg: EmbedConfig) -> None:
        super().__init__(cfg)
        self.cfg: EmbedConfig = cfg
        self.stats: dict[str, Any] | None = None
        self.reid = False

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        train = take_fraction(splits.train, cfg.fraction, cfg.seed, len(splits.classes))
        self.classes = list(splits.classes)
        resume = self.check_resume(trainer)
        self.stats = train_stats(cfg, train, trainer.out, resume)
        self.val_data = splits.val
        world, rank = ddp.world_size(), ddp.rank()
        shard = {"num_replicas": world, "rank": rank} if world > 1 else {}
        sampler = PKSampler(train.labels, cfg.p, cfg.k, cfg.seed, **shard)
        ds = AugmentedDataset(train, build_transforms(cfg, True), seed=cfg.seed)
        trainer.train_loader = build_loader(ds, cfg.p * cfg.k, shuffle=True, workers=cfg.workers,
                                            seed=cfg.seed, sampler=sampler)  # fmt: skip
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_embedder(cfg.model, cfg.dim, len(self.classes), cfg.in_chans, cfg.imgsz,
                               cfg.model_kwargs, uses_centres(cfg))  # fmt: skip
        trainer.model = model.to(trainer.device)
        self.pre = Preprocess(self.stats, cfg.normalize, cfg.in_chans).to(trainer.device)
        self.write_classes(trainer.out)

    def load_splits(self) -> Any:
        """A re-ID folder (Market-1501 layout: query/gallery evaluation with cameras), else
        classify's reader with the classes as identities (leave-one-out evaluation)."""
        self.reid = is_reid_folder(self.cfg.data)
        if self.reid:
            train, evaluation = load_reid(self.cfg.data)
            return DataSplits(train, evaluation, train.classes, "reid")  # type: ignore[arg-type]
        return load_splits(self.cfg)

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        ds = AugmentedDataset(splits.val, build_transforms(cfg, False), seed=cfg.seed)
        collate = REID_COLLATE if self.reid else collate_classify
        return build_loader(ds, cfg.batch, shuffle=False, workers=cfg.workers, seed=cfg.seed,
                            collate_fn=collate)  # fmt: skip

    def checkpoint_meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            **super().checkpoint_meta(),
            "in_chans": cfg.in_chans,
            "normalize": cfg.normalize,
            "norm_stats": self.stats,
            "dim": cfg.dim,
            "loss": cfg.loss,
            "distance": cfg.distance,
            "centres": uses_centres(cfg),
        }

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        super().apply_checkpoint(state)
        self.stats = state.get("norm_stats")
        self.pre = Preprocess(self.stats, state.get("normalize", "none"), state["in_chans"])
        self.pre = self.pre.to(self.device)

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_embedder(
            state["model_name"], state["dim"], state["num_classes"], state["in_chans"],
            int(state.get("imgsz", 32)), state.get("model_kwargs") or {},
            bool(state.get("centres")),
        )  # fmt: skip

    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pre(batch["images"].to(self.device, non_blocking=True))

    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        ids = batch["labels"].to(self.device)
        emb = model(self._inputs(batch)).float()
        return embedding_loss(self.cfg, model, emb, ids), int(ids.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(self._inputs(batch)).float()

    def build_evaluators(self) -> dict[str, Any]:
        cfg = self.cfg
        options: dict[str, Any] = {}
        if cfg.rerank:
            options["rerank"] = {"k1": cfg.k1, "k2": cfg.k2, "lambda_value": cfg.rerank_lambda}
        if cfg.open_set and not self.reid:  # re-ID data has its own gallery and distractors
            options.update(open_set=cfg.open_set, seed=cfg.seed)
        return {"retrieval": RetrievalEvaluator(cfg.distance, self.reid, **options)}

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.cfg.plots and trainer.history:
            plot_curves(trainer.history, Path(trainer.out) / "plots")


@torch.no_grad()
def predict_embed(cfg: EmbedConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict embed``: ``embeddings.npy`` (N, dim) for every image of ``source``
    (rows in ``predictions.json`` order), each image's nearest other images, and
    ``plots/neighbours.png`` (the first ``GRID_QUERIES`` images with their nearest ones)."""
    device = select_device(cfg.device)
    model, state = EmbedTask.load_model(cfg.weights, device)
    cfg.imgsz = int(state.get("imgsz", cfg.imgsz))
    pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"), state["in_chans"])
    pre = pre.to(device)
    tf = build_transforms(cfg, False)
    rng = np.random.default_rng(0)
    files = list_images(cfg.source)
    chunks = []
    for start in range(0, len(files), cfg.batch):
        imgs = np.stack(
            [tf(Sample(read_image(f)), rng).image for f in files[start : start + cfg.batch]]
        )
        x = pre(torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device))
        chunks.append(model(x).float().cpu().numpy())
    emb = np.concatenate(chunks)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    k = min(GRID_NEIGHBOURS, len(files) - 1)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (N, k) most similar first
    nearest = order[:, 0] if k else np.zeros(len(files), np.int64)
    results = [
        {"path": str(f), "nearest": str(files[j]), "summary": f"nearest {Path(files[j]).name}",
         "neighbours": [str(files[m]) for m in row]}
        for f, j, row in zip(files, nearest, order)
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if k and cfg.plots:
        load = lambda i: tf(Sample(read_image(files[i])), rng).image  # noqa: E731
        rows = range(min(GRID_QUERIES, len(files)))
        write_neighbour_grid(out / "plots" / "neighbours.png", np.stack([load(i) for i in rows]),
                             np.stack([[load(j) for j in order[i]] for i in rows]))  # fmt: skip
    np.save(out / "embeddings.npy", emb)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    return results


EmbedTask.predict = staticmethod(predict_embed)  # type: ignore[attr-defined]
