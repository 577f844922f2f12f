"""YOLOv2: the passthrough (reorg) path, the 5 k-means anchors, the v2 box coding against
``ops.YoloGridCoder``, softmax classes, autoanchor refitting its anchors."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.yolo_grid_coder import cell_grid, grid_boxes
from cvcraft.models.detection.yolov2 import V2_ANCHORS
from cvcraft.ops.anchors import kmeans_anchors
from cvcraft.ops.coders import YoloGridCoder


def test_structure_and_passthrough():
    m = create_model("yolov2", num_classes=80)
    assert m.anchors.shape == (5, 2) and m.strides == (32,)
    assert m.fuse.conv.in_channels == 1024 + 256  # 64-channel passthrough, reorged x4
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out = m(x)
    assert out[0].shape == (1, 5, 2, 3, 85)
    # the passthrough changes the output: zeroing its conv changes the prediction
    with torch.no_grad():
        before = out[0].clone()
        m.eval()
        a = m(x)[0]
        m.passthrough.conv.weight.zero_()
        b = m(x)[0]
    assert not torch.allclose(a, b) and before.shape == a.shape


def test_v2_box_coding_equals_yolo_grid_coder():
    torch.manual_seed(0)
    raw = torch.randn(2, 5, 4, 6, 4)
    anchors = torch.tensor(V2_ANCHORS)
    ref = YoloGridCoder(anchors, 32).decode(raw)
    got = grid_boxes(raw, cell_grid(4, 6, raw), anchors.view(5, 1, 1, 2), 32, "v2")
    assert torch.allclose(got, ref, atol=1e-4)


def test_softmax_scores_and_label_smoothing_refused():
    m = create_model("yolov2_small", num_classes=3).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 64))
        _, scores = m.decode(out)
    assert scores.shape == (1, 5 * 2 * 2, 3)
    # p(obj) * softmax: the class scores of a prediction sum to its objectness
    assert torch.allclose(scores.sum(-1), out[0][..., 4].sigmoid().reshape(1, -1), atol=1e-6)
    with pytest.raises(ConfigError, match="softmax"):
        create_model("yolov2", label_smoothing=0.1)


def test_autoanchor_refits_v2_anchors_with_kmeans():
    from cvcraft.tasks.detect.task import fit_model_anchors

    class Rec:
        def __init__(self, boxes):
            self.boxes, self.width, self.height = boxes, 320, 320

    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal(20, 2, (200, 2)), rng.normal(150, 10, (200, 2))])
    recs = [Rec(np.concatenate([np.zeros((len(c), 2)), c], 1)) for c in np.split(wh, 40)]

    class Data:
        images = recs

    m = create_model("yolov2_small", num_classes=2, anchors=[[400, 5]] * 5)
    fit_model_anchors(m, Data(), 320, seed=0)
    ref = kmeans_anchors(wh, 5, seed=0, genetic_generations=1000)
    assert np.allclose(m.anchors.numpy(), ref.anchors, rtol=1e-4)


def test_v2_loss_trains():
    torch.manual_seed(0)
    m = create_model("yolov2_small", num_classes=2, input_size=128)
    x = torch.rand(2, 3, 128, 128)
    t = [{"boxes": torch.tensor([[20.0, 30, 90, 100]]), "labels": torch.tensor([1])},
         {"boxes": torch.tensor([[5.0, 5, 60, 50]]), "labels": torch.tensor([0])}]  # fmt: skip
    opt = torch.optim.AdamW(m.parameters(), 2e-3)
    losses = []
    for _ in range(15):
        loss, parts = m.loss(m(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0] and set(parts) == {"box", "obj", "cls"}
