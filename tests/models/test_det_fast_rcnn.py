"""Fast R-CNN on external proposals: equal to Faster R-CNN's RoI head fed the same boxes
(outputs, detections, sampled training losses), with proposals from a callable, a JSON file
or selective search (cvcraft.classic.selective_search)."""

import json

import numpy as np
import pytest
import torch

from cvcraft.classic import selective_search as ss_mod
from cvcraft.errors import ConfigError, DataError
from cvcraft.models import create_model
from cvcraft.models.detection.fast_rcnn import ProposalFile, SelectiveSearchProposals

C = 3
TINY = {"fpn_channels": 16, "representation": 32, "backbone_kw": {"widths": (8, 16, 16, 32)}}
SIZE = (64, 96)
BOXES = [
    torch.tensor([[8.0, 10, 42, 52], [0, 0, 30, 30], [48, 18, 92, 62], [20, 8, 46, 41]]),
    torch.tensor([[18.0, 9, 45, 41], [60, 30, 95, 63], [5, 5, 20, 60]]),
]


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [50, 20, 90, 60]]),
         "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[20.0, 10, 44, 40]]), "labels": torch.tensor([1])},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    faster = create_model("fasterrcnn_resnet18_fpn", num_classes=C, roi_batch=8, **TINY)
    with torch.no_grad():
        for p in faster.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    fast = create_model(
        "fastrcnn_resnet18_fpn", num_classes=C, roi_batch=8, proposals=lambda x: BOXES, **TINY
    )
    sd = {k: v for k, v in faster.state_dict().items() if not k.startswith("rpn.")}
    fast.load_state_dict(sd)  # strict: everything but the RPN is shared
    assert not any(k.startswith("rpn.") for k in fast.state_dict())
    return faster, fast


def test_eval_equals_faster_rcnn_box_head_on_the_same_boxes(pair):
    faster, fast = pair
    faster.eval()
    fast.eval()
    x = torch.rand(2, 3, *SIZE)
    with torch.no_grad():
        out = fast(x)
        logits, deltas = faster.box_head(faster.backbone(faster.normalize(x)), BOXES)
        ref = {"proposals": BOXES, "cls_logits": logits, "box_deltas": deltas, "image_size": SIZE}
        dets, dets_ref = fast.postprocess(out, conf=0.0), faster.postprocess(ref, conf=0.0)
    assert torch.equal(out["cls_logits"], logits) and torch.equal(out["box_deltas"], deltas)
    for a, b in zip(dets, dets_ref):
        assert len(a["boxes"]) > 0
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(a[k], b[k])
    # the explicit argument wins over the model's source
    with torch.no_grad():
        other = fast(x, proposals=[BOXES[1], BOXES[0]])
    assert torch.equal(other["proposals"][0], BOXES[1])


def test_training_loss_equals_faster_rcnn_roi_loss(pair):
    faster, fast = pair
    faster.train()
    fast.train()
    x = torch.rand(2, 3, *SIZE)
    targets = _targets()
    torch.manual_seed(3)
    out = fast(x, targets)
    total, items = fast.loss(out, targets)
    torch.manual_seed(3)
    rois, labels, reg = faster.sample_rois(BOXES, targets)
    cls, box = faster.roi_loss(
        *faster.box_head(faster.backbone(faster.normalize(x)), rois), labels, reg
    )
    assert set(items) == {"cls", "box"}  # no RPN terms
    torch.testing.assert_close(total, cls + box, rtol=0, atol=0)
    total.backward()
    assert fast.backbone.body.conv1.weight.grad.abs().sum() > 0
    faster.eval()
    fast.eval()


def test_proposals_are_clipped_and_empty_ones_dropped():
    torch.manual_seed(0)
    boxes = [torch.tensor([[-5.0, -5, 30, 30], [10, 10, 10, 20], [90, 60, 120, 90]])]
    m = create_model("fastrcnn_resnet18_fpn", num_classes=C, proposals=lambda x: boxes, **TINY)
    with torch.no_grad():
        out = m.eval()(torch.rand(1, 3, *SIZE))
    assert out["proposals"][0].tolist() == [[0.0, 0, 30, 30], [90, 60, 96, 64]]


def test_proposal_file(tmp_path):
    path = tmp_path / "props.json"
    path.write_text(json.dumps({"a.jpg": [[1, 2, 30, 40], [5, 5, 9, 9]], "b.jpg": []}))
    pf = ProposalFile(path)
    got = pf.for_images(["imgs/a.jpg", "b.jpg"])
    assert got[0].tolist() == [[1.0, 2, 30, 40], [5, 5, 9, 9]] and got[1].shape == (0, 4)
    with pytest.raises(DataError, match="no boxes for"):
        pf.for_images(["c.jpg"])
    m = create_model("fastrcnn_resnet18_fpn", num_classes=C, proposals=str(path), **TINY).eval()
    with pytest.raises(ConfigError, match="come from a file"):
        m(torch.rand(1, 3, *SIZE))
    with torch.no_grad():
        out = m(torch.rand(2, 3, *SIZE), proposals=m.proposal_file.for_images(["a.jpg", "b.jpg"]))
    assert out["proposals"][0].tolist() == [[1.0, 2, 30, 40], [5, 5, 9, 9]]
    assert len(out["proposals"][1]) == 0 and len(m.postprocess(out)[1]["boxes"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"a.jpg": [[1, 2, 3]]}')
    with pytest.raises(DataError, match="needs finite"):
        ProposalFile(bad)
    bad.write_text("[not json")
    with pytest.raises(DataError, match="cannot read it as JSON"):
        ProposalFile(bad)


def test_bad_proposals_argument_is_refused():
    with pytest.raises(ConfigError, match="proposals='edge_boxes'"):
        create_model("fastrcnn_resnet18_fpn", num_classes=C, proposals="edge_boxes", **TINY)
    m = create_model("fastrcnn_resnet18_fpn", num_classes=C, proposals=lambda x: BOXES[:1], **TINY)
    with pytest.raises(ConfigError, match="1 proposal sets for 2 images"):
        m.eval()(torch.rand(2, 3, *SIZE))


def test_selective_search_source_is_the_searchs_boxes_cached(monkeypatch):
    g = np.random.default_rng(0)
    img = np.zeros((48, 64, 3), np.uint8)
    img[8:30, 10:40] = (200, 30, 30)
    img[20:44, 36:60] = (20, 180, 40)
    img = np.clip(img.astype(int) + g.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    src = SelectiveSearchProposals("fast", 5000)
    ref = ss_mod.selective_search(img, "fast", 5000)
    got = src(x)[0]
    # the ranking's random factor is seeded (seed 0): the same boxes in the same order
    np.testing.assert_array_equal(got.numpy(), ref)
    calls = []
    monkeypatch.setattr(ss_mod, "selective_search", lambda *a: calls.append(1) or ref)
    again = src(torch.cat([x, x]))  # cached: the search is not run again
    assert calls == [] and all(torch.equal(a, got) for a in again)
    src(x.flip(-1))
    assert calls == [1]  # a new image is searched
