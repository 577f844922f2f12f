"""Per-box Grad-CAM for a detector: the detection's own candidate is found, and the map
equals pytorch-grad-cam's on the decoded class scores with that candidate as the target."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.explain import class_activation_map, detection_score, score_cam_layer
from cvcraft.models import create_model

gc = pytest.importorskip("pytorch_grad_cam")


class _Scores(torch.nn.Module):
    """The detector as pytorch-grad-cam sees it: image -> decoded class scores (B, N, C)."""

    def __init__(self, det):
        super().__init__()
        self.det = det

    def forward(self, x):
        return self.det.decode(self.det(x))[1]


def test_per_box_gradcam_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    det = create_model("yolo_p", num_classes=4).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = det(x)
        found = det.postprocess(out, conf=0.0, iou=0.7, max_det=5)
        cand, scores = det.decode(out)
    boxes = torch.stack([f["boxes"][0] for f in found])  # each image's top detection
    labels = torch.stack([f["labels"][0] for f in found])
    fn = detection_score(det.decode, boxes, labels)
    with torch.no_grad():
        s = fn(out)
    # the matched candidate is the detection: same box, and its score is the reported one
    torch.testing.assert_close(s, torch.stack([f["scores"][0] for f in found]))
    layer = "neck.td3"  # the stride-8 feature map the small boxes are read from
    ours = class_activation_map(det, x, layer, "gradcam", score_fn=fn)
    idx = [int((cand[b] - boxes[b]).abs().sum(1).argmin()) for b in range(2)]
    targets = [lambda o, i=i, c=int(c): o[i, c] for i, c in zip(idx, labels)]
    wrapped = _Scores(det).eval()
    with gc.GradCAM(model=wrapped, target_layers=[det.get_submodule(layer)]) as cam:
        expected = cam(x, targets)
    assert ours.maps.shape == (2, 64, 64)
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)


def test_detection_score_bad_inputs():
    det = create_model("yolo_p", num_classes=4).eval()
    with pytest.raises(ConfigError, match="2 boxes but 1 labels"):
        detection_score(det.decode, torch.zeros(2, 4), torch.zeros(1))
    fn = detection_score(det.decode, torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([0]))
    with pytest.raises(ConfigError, match="1 boxes for a batch of 2"):
        with torch.no_grad():
            fn(det(torch.rand(2, 3, 32, 32)))


class _TwoLevels(torch.nn.Module):
    """stem -> (p3 -> head3), (p4 -> head4): a box of level 3 does not depend on p4."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, 2, 1)
        self.p3 = torch.nn.Conv2d(4, 4, 3, 1, 1)
        self.p4 = torch.nn.Conv2d(4, 4, 3, 2, 1)
        self.head = torch.nn.ModuleDict(
            {"3": torch.nn.Conv2d(4, 2, 1), "4": torch.nn.Conv2d(4, 2, 1)}
        )

    def forward(self, x):
        s = self.stem(x)
        return self.head["3"](self.p3(s)), self.head["4"](self.p4(s))


def test_score_cam_layer_is_the_last_layer_the_score_depends_on():
    torch.manual_seed(0)
    model = _TwoLevels()
    x = torch.randn(1, 3, 16, 16)
    assert score_cam_layer(model, x, lambda out: out[0][:, 1, 2, 3]) == "p3"
    assert score_cam_layer(model, x, lambda out: out[1][:, 0, 1, 1]) == "p4"
    # without excluding the head, its own conv is the last dependency
    assert score_cam_layer(model, x, lambda out: out[0][:, 1, 2, 3], exclude=()) == "head.3"
    with pytest.raises(ConfigError, match="influences this score"):
        score_cam_layer(model, x, lambda out: out[0].sum() * 0)
