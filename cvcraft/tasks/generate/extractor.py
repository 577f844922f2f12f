"""The feature extractor of domain-FID/KID: a cvcraft classifier trained on the same domain.

No Inception weights can be downloaded here, so the scores use a classifier the user
trained (``cvcraft train classify``) on the same kind of images: its penultimate features
(the input of its last Linear layer) give FID/KID, its logits the conditional accuracy and
the class histogram. Images in [-1, 1] (N, 1|3, H, W) become what the classifier was
trained on: uint8 RGB at its input size, then its own normalisation.

With a torchvision ``inception_v3`` weights file as ``fid_model=`` (``InceptionExtractor``)
the scores are the classic Inception FID/KID: images resized to 299 px (bilinear) and fed
in [-1, 1], which is what torchvision's ImageNet Inception sees after its
``transform_input``; features are the 2048-d average pool. Its classes are ImageNet's, so the
conditional accuracy is left out. (FID papers use the TF-Inception port; numbers from
torchvision's weights are comparable with each other, not with published ones.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import CheckpointError
from cvcraft.tasks.generate.data import to_uint8
from cvcraft.transforms.normalize import Preprocess


class DomainExtractor(nn.Module):
    """``forward(images in [-1, 1]) -> (features (N, D), logits (N, K))``."""

    def __init__(self, classifier: nn.Module, state: dict[str, Any]) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.classes = list(state["classes"])
        self.imgsz = int(state.get("imgsz", 32))
        self.pre = Preprocess(state.get("norm_stats"), state.get("normalize", "none"),
                              int(state.get("in_chans", 3)))  # fmt: skip
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise CheckpointError("the FID classifier has no Linear layer to take features from")
        self._feats: list[torch.Tensor] = []
        linears[-1].register_forward_pre_hook(lambda m, inp: self._feats.append(inp[0]))

    @classmethod
    def load(cls, weights: str | Path, device: torch.device) -> DomainExtractor:
        from cvcraft.tasks.classify.task import ClassifyTask

        try:
            model, state = ClassifyTask.load_model(weights, device)
        except CheckpointError as e:
            raise CheckpointError(
                f"fid_model={weights}: {e} (FID/KID need a classifier of the same domain)"
            ) from None
        return cls(model, state).to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_uint8(images)  # (N, C, H, W) uint8, the classifier's input type
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.imgsz or x.shape[-2] != self.imgsz:
            size = (self.imgsz, self.imgsz)
            x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True)
            x = x.round().clamp(0, 255)
        self._feats.clear()
        logits = self.classifier(self.pre(x))
        return self._feats[-1].flatten(1).float(), logits.float()


INCEPTION_KEY = "Mixed_7c.branch_pool.conv.weight"  # a torchvision inception_v3 state_dict


def is_inception_file(weights: str | Path) -> bool:
    """Whether ``weights`` holds a torchvision ``inception_v3`` state_dict (tensors only)."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or not loadable without unpickling objects
        return False
    return isinstance(state, dict) and INCEPTION_KEY in state


class InceptionExtractor(nn.Module):
    """``forward(images in [-1, 1]) -> (pool features (N, 2048), ImageNet logits (N, 1000))``."""

    classes: list[str] = []  # ImageNet's: not the data's, so no conditional accuracy

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    @classmethod
    def load(cls, weights: str | Path, device: torch.device) -> InceptionExtractor:
        from cvcraft.models import create_model

        model = create_model("inception_v3", weights=str(weights))
        return cls(model).to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return feats, self.model.fc(feats)
