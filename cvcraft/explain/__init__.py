"""Why did the model say that: class activation maps and attention rollout (floor 2).

Everything here works on any ``nn.Module`` plus the name of one of its layers
(``model.get_submodule(name)``); nothing knows a model family. Heat maps are float
tensors (B, H, W) in [0, 1] at the input resolution; drawing them over images is
``cvcraft.viz.heatmap``.
"""

from cvcraft.explain.cam import (
    CAM_METHODS,
    CamResult,
    class_activation_map,
    segmentation_score,
)
from cvcraft.explain.detection import detection_score
from cvcraft.explain.layers import default_cam_layer, find_layer, score_cam_layer
from cvcraft.explain.rollout import attention_maps, attention_rollout

__all__ = [
    "CAM_METHODS",
    "CamResult",
    "attention_maps",
    "attention_rollout",
    "class_activation_map",
    "default_cam_layer",
    "detection_score",
    "find_layer",
    "score_cam_layer",
    "segmentation_score",
]
