"""Per-class CAM for segmenters (Seg-Grad-CAM) against pytorch-grad-cam's
SemanticSegmentationTarget on the same model, layer and pixel mask."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.explain import class_activation_map, segmentation_score
from cvcraft.models import create_model

gc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402


@pytest.mark.parametrize(
    "method,oracle", [("gradcam", gc.GradCAM), ("gradcam++", gc.GradCAMPlusPlus)]
)
def test_segmentation_class_cam_matches_pytorch_grad_cam(method, oracle):
    torch.manual_seed(0)
    model = create_model("deeplabv3_resnet18", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(x).argmax(1)  # (2, 64, 64)
    c = int(torch.mode(pred.flatten()).values)  # the class with the most pixels
    ours = class_activation_map(model, x, "backbone.layer4", method, score_fn=segmentation_score(c))
    masks = [(pred[i] == c).float().numpy() for i in range(2)]
    with oracle(model=model, target_layers=[model.backbone.layer4]) as cam:
        expected = cam(x, [SemanticSegmentationTarget(c, m) for m in masks])
    assert ours.maps.shape == (2, 64, 64) and ours.targets.tolist() == [-1, -1]
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)
    # an explicit mask gives the same as the predicted-pixels default
    explicit = segmentation_score(c, torch.from_numpy(np.stack(masks)))
    again = class_activation_map(model, x, "backbone.layer4", method, score_fn=explicit)
    np.testing.assert_allclose(again.maps.numpy(), ours.maps.numpy(), atol=1e-6)


def test_score_fn_bad_uses():
    model = create_model("deeplabv3_resnet18", num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ConfigError, match="pass score_fn"):
        class_activation_map(model, x, "backbone.layer4", "gradcam")
    with pytest.raises(ConfigError, match="score_fn needs gradcam"):
        class_activation_map(
            model, x, "backbone.layer4", "scorecam", score_fn=segmentation_score(0)
        )
    with pytest.raises(ConfigError, match=r"segmentation_score\(5\) needs"):
        class_activation_map(model, x, "backbone.layer4", "gradcam", score_fn=segmentation_score(5))
