"""Models by name: ``create_model("resnet50", num_classes=10)``, ``list_models("resnet*")``.

Importing this package imports every model module so that each registers itself.
"""

from cvcraft.models import (  # noqa: F401  (registers)
    classification,
    detection,
    fusion,
    generative,
    pose,
    recognition,
    segmentation,
)
from cvcraft.models.features import FeatureListNet
from cvcraft.models.registry import (
    MODELS,
    create_model,
    list_aliases,
    list_models,
    model_default_cfg,
    model_info,
    model_package,
    register_model,
)

__all__ = [
    "MODELS",
    "FeatureListNet",
    "create_model",
    "list_aliases",
    "list_models",
    "model_default_cfg",
    "model_info",
    "model_package",
    "register_model",
]
