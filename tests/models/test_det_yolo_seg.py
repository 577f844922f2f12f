"""YOLO-seg (prototype masks + per-cell coefficients on the anchor-free YOLO): yolov8-seg's
parameter count, the mask loss on a tiny example computed by hand, postprocess masks equal
to the assembly of the kept cells' coefficients, and bad targets refused."""

from __future__ import annotations

import math

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.yolo_seg import proto_mask_loss
from cvcraft.ops.nms import multiclass_nms
from cvcraft.ops.proto_masks import assemble_masks


def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


@pytest.mark.parametrize("scale", ["n", "s"])
def test_param_count_equals_ultralytics_yolov8_seg(scale):
    ultra = pytest.importorskip("ultralytics.nn.tasks")
    ref = ultra.SegmentationModel(f"yolov8{scale}-seg.yaml", nc=7, verbose=False)
    ours = create_model(f"yolo_seg_{scale}", num_classes=7)
    # ultralytics' fixed DFL conv holds the 16 bin values; ours computes the expectation
    n_ref = sum(p.numel() for p in ref.parameters()) - 16
    assert sum(p.numel() for p in ours.parameters()) == n_ref


def test_mask_loss_by_hand():
    # one image, 3 cells, the middle one assigned to object 0; one prototype (2x2 at stride 2)
    a, b, c, d, k = 0.3, -1.2, 2.0, 0.7, 1.5
    proto = torch.tensor([[[[a, b], [c, d]]]], dtype=torch.float64)  # (1, 1, 2, 2)
    coef = torch.tensor([[[9.0], [k], [-4.0]]], dtype=torch.float64)  # (1, 3, 1)
    gt_index = torch.tensor([[-1, 0, -1]])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True  # proto cell (0, 0) fully inside: target 1
    mask[0, 1, 3] = True  # proto cell (0, 1): 1 of 4 pixels: target 0.25
    target = {"boxes": torch.tensor([[0.0, 0.0, 4.0, 2.0]]), "labels": torch.tensor([0]),
              "masks": mask}  # fmt: skip
    # box / stride = [0, 0, 2, 1]: the top prototype row, area 2 prototype pixels
    expected = (_bce(k * a, 1.0) + _bce(k * b, 0.25)) / 2.0
    got = proto_mask_loss(coef, proto, gt_index, [target])
    assert math.isclose(float(got), expected, rel_tol=1e-12)
    # a second positive cell on the same object doubles the sum and the count: same mean
    got2 = proto_mask_loss(coef, proto, torch.tensor([[0, 0, -1]]), [target])
    expected2 = (expected + (_bce(9 * a, 1.0) + _bce(9 * b, 0.25)) / 2.0) / 2
    assert math.isclose(float(got2), expected2, rel_tol=1e-12)
    # no positives: zero, still differentiable
    z = proto_mask_loss(coef.requires_grad_(), proto, torch.full((1, 3), -1), [target])
    z.backward()
    assert float(z.detach()) == 0.0 and coef.grad is not None


def test_loss_has_mask_term_and_backpropagates():
    torch.manual_seed(0)
    model = create_model("yolo_seg_p", num_classes=3)
    x = torch.rand(2, 3, 64, 64)
    m = torch.zeros(2, 64, 64, dtype=torch.bool)
    m[0, 8:30, 10:40], m[1, 35:60, 30:50] = True, True
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64)}  # fmt: skip
    t = [{"boxes": torch.tensor([[10.0, 8, 40, 30], [30, 35, 50, 60]]),
          "labels": torch.tensor([0, 2]), "masks": m}, empty]  # fmt: skip
    total, items = model.loss(model(x), t)
    assert set(items) == {"box", "cls", "dfl", "mask"} and items["mask"] > 0
    total.backward()
    assert model.proto.cv3.conv.weight.grad.abs().sum() > 0
    bad = [{**t[0], "masks": m[:1]}, t[1]]  # 2 boxes, 1 mask
    with pytest.raises(ConfigError, match="masks .* must be .* 2 boxes"):
        model.loss(model(x), bad)


def test_postprocess_masks_are_the_kept_cells_assembly():
    torch.manual_seed(1)
    model = create_model("yolo_seg_p", num_classes=2).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 96, 64))
    (det,) = model.postprocess(out, conf=1e-5, iou=0.6, max_det=20)
    assert det["masks"].shape == (len(det["boxes"]), 96, 64) and len(det["boxes"])
    boxes, scores = model.decode(out)
    ref = multiclass_nms(boxes[0], scores[0], 1e-5, 0.6, 20, pre_nms_top_k=30000,
                         return_index=True)  # fmt: skip
    assert torch.equal(ref["boxes"], det["boxes"]) and torch.equal(ref["labels"], det["labels"])
    cells = ref["index"]
    assert torch.equal(ref["scores"], scores[0, cells, ref["labels"]])  # the index is the cell
    for j, cell in enumerate(cells.tolist()):
        want = assemble_masks(out["coef"][0, cell : cell + 1], out["proto"][0],
                              det["boxes"][j : j + 1], (96, 64))  # fmt: skip
        torch.testing.assert_close(det["masks"][j : j + 1], want)
