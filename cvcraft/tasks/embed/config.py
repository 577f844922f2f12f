"""Metric learning (embedding) keys."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import _opt
from cvcraft.errors import ConfigError
from cvcraft.tasks.image_input import ImageInputConfig

# each loss's usual margin (triplet/contrastive on L2-normalized embeddings)
DEFAULT_MARGINS = {"triplet": 0.3, "contrastive": 1.0, "arcface": 0.5, "cosface": 0.35}


@dataclass
class EmbedConfig(ImageInputConfig):
    """An embedding per image such that one identity's images lie close together; trained
    on P x K batches, evaluated as leave-one-out retrieval on the val split (each val image
    queries all the others): rank-1/5/10, mAP, MRR. Classes of the data are the identities."""

    loss: str = _opt(
        "triplet",
        "triplet (batch-hard) | contrastive | arcface | cosface",
        ("triplet", "contrastive", "arcface", "cosface"),
    )
    margin: float = _opt(-1.0, "loss margin (-1 = the loss's usual one: 0.3/1.0/0.5/0.35)")
    scale: float = _opt(30.0, "ArcFace/CosFace logit scale s")
    soft: bool = _opt(False, "triplet: soft margin log(1 + exp(d_ap - d_an))")
    mining: str = _opt(
        "hard", "triplet mining: hard (batch-hard) | semihard (FaceNet)", ("hard", "semihard")
    )
    center_weight: float = _opt(0.0, "weight of the centre loss added to the main loss (0 = off)")
    id_weight: float = _opt(
        0.0, "weight of an identity cross-entropy on the BNNeck embedding (Luo et al.; 0 = off)"
    )
    dim: int = _opt(128, "embedding size")
    p: int = _opt(8, "identities per training batch (P of P x K; the batch is P * K)")
    k: int = _opt(4, "images per identity in a training batch (K)")
    distance: str = _opt("cosine", "retrieval distance", ("cosine", "euclidean"))
    rerank: bool = _opt(False, "also score k-reciprocal re-ranked retrieval (rr_rank1, rr_map)")
    k1: int = _opt(20, "re-ranking: k-reciprocal neighbourhood size")
    k2: int = _opt(6, "re-ranking: query-expansion neighbours")
    rerank_lambda: float = _opt(0.3, "re-ranking: weight of the original distance")
    open_set: float = _opt(
        0.0, "open-set AUROC: hold this fraction of val identities out of the gallery (0 = off)"
    )

    def check(self) -> None:
        super().check()
        if self.p < 2 or self.k < 2:
            raise ConfigError(f"p={self.p}, k={self.k}: P x K batches need p >= 2 and k >= 2")
        if self.center_weight < 0 or self.id_weight < 0:
            raise ConfigError("center_weight and id_weight must be >= 0")
        if self.id_weight > 0 and (self.center_weight > 0 or self.loss in ("arcface", "cosface")):
            raise ConfigError(
                "id_weight uses the class-centre matrix as its classifier; it cannot be combined "
                "with center_weight or an arcface/cosface loss"
            )
        if self.k1 < 1 or self.k2 < 1 or not 0.0 <= self.rerank_lambda <= 1.0:
            raise ConfigError("re-ranking needs k1 >= 1, k2 >= 1 and 0 <= rerank_lambda <= 1")
        if not 0.0 <= self.open_set < 1.0:
            raise ConfigError(f"open_set={self.open_set} must be in [0, 1)")
        if self.dim <= 0 or self.scale <= 0:
            raise ConfigError(f"dim={self.dim} and scale={self.scale} must be > 0")

    def loss_margin(self) -> float:
        return DEFAULT_MARGINS[self.loss] if self.margin < 0 else self.margin
