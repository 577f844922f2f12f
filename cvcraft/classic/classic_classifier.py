"""A classic pipeline (image features -> StandardScaler -> scikit-learn classifier) as a
classification model: fitted once in closed form, saved as tensors, run as a module.

``ClassicClassifier("hog_svm", num_classes).fit(images, labels)`` fits the Pipeline of
``classic.ml`` and keeps its fitted state as buffers (``sklearn_arrays``: no pickle, so a
checkpoint loads with ``weights_only=True``); ``forward`` takes the classify task's float
batch (N, C, H, W) in [0, 1] and returns log-probabilities (N, num_classes), so the task's
cross-entropy, top-k and confusion matrix read it like CNN logits (softmax(log p) = p).
``layout()`` is the JSON a checkpoint stores to rebuild the empty buffers before loading.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.classic.image_features import BagOfVisualWords
from cvcraft.classic.ml import FEATURES, create_classic_model, split_name
from cvcraft.classic.sklearn_arrays import SAVEABLE, export_estimator, predict_proba_arrays
from cvcraft.errors import ConfigError

LOG_FLOOR = 1e-12  # probability of a class the model gives 0: log stays finite


def is_classic_model(name: str) -> bool:
    """Whether ``name`` is a <feature>_<classifier> classic model name."""
    try:
        split_name(name)
    except ConfigError:
        return False
    return True


class ClassicClassifier(nn.Module):
    """A fitted classic pipeline behind the ``nn.Module`` interface (see the module doc).

    model_kwargs of the classify task: ``features`` (the extractor's parameters, e.g.
    ``{cell: 4}``), ``classifier`` (e.g. ``{C: 5}``), ``scale`` (StandardScaler, default on).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        in_chans: int = 3,
        features: dict[str, Any] | None = None,
        classifier: dict[str, Any] | None = None,
        scale: bool = True,
    ) -> None:
        super().__init__()
        feat, clf = split_name(name)
        if clf not in SAVEABLE:
            raise ConfigError(
                f"model={name}: a fitted {clf!r} cannot be stored without pickle, so it cannot "
                f"be a classify model; use one of {', '.join(SAVEABLE)}, or "
                "cvcraft.classic.ml.fit_classic to score it without saving"
            )
        self.name, self.num_classes, self.in_chans = name, int(num_classes), int(in_chans)
        self.feature_params, self.classifier_params = dict(features or {}), dict(classifier or {})
        self.scale = bool(scale)
        factory = FEATURES.get(feat)
        try:
            if not isinstance(factory, type) and factory.__name__ != "<lambda>":
                inspect.signature(factory).bind(**self.feature_params)
            self.extractor = factory(**self.feature_params)
        except TypeError as e:
            raise ConfigError(f"model_kwargs features of {name}: {e}") from None
        self.spec: dict[str, Any] | None = None
        # The Trainer gives every primary model an optimizer; this model is fitted in closed
        # form and has no gradient-trained weight, so it holds one empty tensor for it.
        self.no_gradient_weights = nn.Parameter(torch.zeros(0))

    # ------------------------------------------------------------------ fitting and storing
    def fit(self, images: np.ndarray, labels: np.ndarray) -> ClassicClassifier:
        """Fit the pipeline on uint8 (N, H, W, C) images and int labels; keep its arrays."""
        pipe = create_classic_model(self.name, self.feature_params, self.classifier_params,
                                    self.scale)  # fmt: skip
        pipe.fit(images, np.asarray(labels, np.int64))
        self.set_fitted(pipe)
        return self

    def set_fitted(self, pipe: Any) -> None:
        """Take a fitted ``create_classic_model`` Pipeline's state as buffers."""
        spec, arrays = export_estimator(pipe["classifier"])
        if self.scale:
            arrays["scale_mean"] = np.asarray(pipe["scale"].mean_, np.float64)
            arrays["scale_scale"] = np.asarray(pipe["scale"].scale_, np.float64)
        self.extractor = pipe["features"]
        if isinstance(self.extractor, BagOfVisualWords):
            arrays["bovw_centers"] = self.extractor.centers_
        self.spec = spec
        for k, a in arrays.items():
            self.register_buffer(k, torch.from_numpy(np.ascontiguousarray(a)))

    def layout(self) -> dict[str, Any]:
        """JSON for a checkpoint: the classifier spec and each buffer's shape and dtype."""
        if self.spec is None:
            raise ConfigError(f"{self.name} is not fitted yet")
        bufs = {k: [list(b.shape), str(b.dtype).removeprefix("torch.")]
                for k, b in self.named_buffers()}  # fmt: skip
        return {"spec": self.spec, "buffers": bufs}

    @classmethod
    def from_layout(
        cls, name: str, num_classes: int, in_chans: int, kwargs: dict[str, Any], layout: dict
    ) -> ClassicClassifier:
        """An unfitted model with empty buffers of a checkpoint's shapes; loading the
        checkpoint's weights (strict) then fills them."""
        model = cls(name, num_classes, in_chans, **kwargs)
        for k, (shape, dtype) in layout["buffers"].items():
            model.register_buffer(k, torch.zeros(shape, dtype=getattr(torch, dtype)))
        model.spec = layout["spec"]
        return model

    # ------------------------------------------------------------------ inference
    def _arrays(self) -> dict[str, np.ndarray]:
        return {k: b.detach().cpu().numpy() for k, b in self.named_buffers()}

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) images -> (N, num_classes) probabilities (0 for classes the
        training data lacked)."""
        if self.spec is None:
            raise ConfigError(f"{self.name} is not fitted; train it with cvcraft train classify")
        arrays = self._arrays()
        if isinstance(self.extractor, BagOfVisualWords):
            self.extractor.centers_ = arrays["bovw_centers"]
        x = self.extractor.transform(images)
        if self.scale:  # StandardScaler's arithmetic, in the features' dtype as it does
            x = (x - arrays["scale_mean"]).astype(x.dtype)
            x = (x / arrays["scale_scale"]).astype(x.dtype)
        proba = predict_proba_arrays(self.spec, arrays, x)
        out = np.zeros((len(x), self.num_classes))
        out[:, arrays["clf_classes"]] = proba
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float in [0, 1] -> (N, num_classes) log-probabilities."""
        images = (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8)
        images = images.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, C) as the features take
        p = torch.from_numpy(self.predict_proba(images)).to(x.device)
        return p.clamp_min(LOG_FLOOR).log().float()
