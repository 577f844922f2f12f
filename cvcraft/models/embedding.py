"""An embedding network for metric learning: any backbone's pooled features, projected to
``dim`` and batch-normalized (the "BNNeck" of Luo et al. 2019, which keeps the embedding
centred so cosine and Euclidean rankings agree), plus optional class centres for the
ArcFace / CosFace heads.

``EmbeddingNet(x)`` -> (B, dim) embedding; ``cosines(emb)`` -> (B, num_classes) cosines
between the L2-normalized embedding and the L2-normalized centres.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError


class EmbeddingNet(nn.Module):
    """backbone (B, C, H, W) -> pooled features (B, F) -> Linear (B, dim) -> BatchNorm."""

    def __init__(
        self, backbone: nn.Module, feat_dim: int, dim: int = 128, num_classes: int = 0
    ) -> None:
        super().__init__()
        if feat_dim <= 0 or dim <= 0:
            raise ConfigError(f"embedding: feature size {feat_dim} and dim {dim} must be > 0")
        self.backbone = backbone
        self.proj = nn.Linear(feat_dim, dim, bias=False)
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)  # BNNeck: no shift, the embedding stays centred
        self.centres = nn.Parameter(torch.randn(num_classes, dim) * 0.01) if num_classes else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)  # (B, F)
        if f.ndim != 2:
            raise ConfigError(
                f"embedding: the backbone returned {tuple(f.shape)}, not pooled (B, F) features"
            )
        return self.neck(self.proj(f))  # (B, dim)

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, num_classes) cosine similarities to the class centres."""
        if self.centres is None:
            raise ConfigError("embedding: no class centres (built with num_classes=0)")
        return F.normalize(emb, dim=1) @ F.normalize(self.centres, dim=1).T


def pooled_feature_size(backbone: nn.Module, in_chans: int, imgsz: int) -> int:
    """The width of a backbone's pooled output, by one dummy forward in eval mode."""
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, in_chans, imgsz, imgsz))
    backbone.train(was)
    if out.ndim != 2 or out.shape[1] == 0:
        raise ConfigError(
            f"this backbone gives {tuple(out.shape)} without its classifier, not pooled "
            "(B, F) features; pick a model whose num_classes=0 returns features (resnet*, "
            "mobilenet*, mlp, ...)"
        )
    return int(out.shape[1])
