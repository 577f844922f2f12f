"""RetinaNet: torchvision is the oracle for keys, anchors, features, detections and both
losses (same weights, BN statistics randomised); create_model(weights=FILE) loads a
torchvision state_dict file, and the model trains through the detect task."""

import json

import pytest
import torch
import torchvision
from torchvision.models.detection import RetinaNet as TVRetinaNet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from tv_detection import tv_whole

from cvcraft.cli import main
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.detection.retinanet import from_torchvision_state_dict
from cvcraft.ops.nms import postprocess_nms

FPN_CH, K = 32, 4
SIZE = (128, 160)


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 60, 70], [50, 30, 140, 100]]),
         "labels": torch.tensor([0, 3])},
        {"boxes": torch.tensor([[20.0, 20, 44, 40]]), "labels": torch.tensor([1])},
    ]  # fmt: skip


def _randomize(model):
    """Move every weight off its init and give BN layers random statistics."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def pair():
    """torchvision's RetinaNet (ResNet-18 trunk, 32-channel FPN/head) and ours with its weights."""
    torch.manual_seed(0)
    body = torchvision.models.resnet18()
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                               [128, 256, 512], FPN_CH,
                               extra_blocks=LastLevelP6P7(FPN_CH, FPN_CH))  # fmt: skip
    tv = _randomize(TVRetinaNet(backbone, num_classes=K)).eval()
    with torch.no_grad():  # scores spread over (0, 1) rather than all at the 0.01 prior
        tv.head.classification_head.cls_logits.bias.normal_(-1.0, 1.0)
    ours = create_model(  # fed what tv.backbone is fed: inputs already normalized
        "retinanet_resnet18_fpn", num_classes=K, fpn_channels=FPN_CH, normalize_input=False
    ).eval()
    ours.load_state_dict(from_torchvision_state_dict(tv.state_dict()))
    return tv, ours


def test_resnet50_keys_and_param_count_match_torchvision():
    with torch.device("meta"):
        tv = torchvision.models.detection.retinanet_resnet50_fpn(weights=None,
                                                                 weights_backbone=None)  # fmt: skip
        ours = create_model("retinanet_resnet50_fpn", num_classes=91)
    sd = from_torchvision_state_dict(tv.state_dict())
    own = ours.state_dict()
    assert set(own) == set(sd)
    assert all(own[k].shape == v.shape for k, v in sd.items())
    n_tv = sum(p.numel() for p in tv.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_tv == 34_068_119
    # torchvision's published 34,014,999 counts its pretrained model, whose frozen BN keeps
    # the trunk's 53,120 affine values as buffers
    bn = sum(m.weight.numel() * 2 for m in ours.backbone.body.modules()
             if isinstance(m, torch.nn.BatchNorm2d))  # fmt: skip
    assert n_tv - bn == 34_014_999


def test_anchors_and_features_match_torchvision(pair):
    tv, ours = pair
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        feats_tv = list(tv.backbone(x).values())
        feats = ours.backbone(x)
        out = ours(x)
    assert len(feats) == 5
    for a, b in zip(feats_tv, feats):
        torch.testing.assert_close(b, a)
    ref = tv.anchor_generator(ImageList(x, [SIZE] * 2), feats_tv)[0]
    torch.testing.assert_close(out["anchors"], ref, rtol=0, atol=0)
    head = tv.head(feats_tv)
    torch.testing.assert_close(out["cls_logits"], head["cls_logits"])
    torch.testing.assert_close(out["bbox_regression"], head["bbox_regression"])


def _tv_detections(tv, x, score_thresh=0.05):
    with torch.no_grad():
        feats = list(tv.backbone(x).values())
        head = tv.head(feats)
        anchors = tv.anchor_generator(ImageList(x, [SIZE] * len(x)), feats)
        per_level = [f.shape[-2] * f.shape[-1] for f in feats]
        a = head["cls_logits"].shape[1] // sum(per_level)
        split = [n * a for n in per_level]
        head_split = {k: list(v.split(split, 1)) for k, v in head.items()}
        anchors_split = [list(av.split(split)) for av in anchors]
        tv.score_thresh = score_thresh
        return tv.postprocess_detections(head_split, anchors_split, [SIZE] * len(x))


def test_detections_match_torchvision(pair):
    tv, ours = pair
    torch.manual_seed(1)
    x = torch.randn(2, 3, *SIZE)
    ref = _tv_detections(tv, x, 0.3)
    with torch.no_grad():
        dets = ours.postprocess(ours(x), conf=0.3, iou=0.5, max_det=300)
    for r, d in zip(ref, dets):
        assert len(d["boxes"]) > 20
        torch.testing.assert_close(d["boxes"], r["boxes"])
        torch.testing.assert_close(d["scores"], r["scores"])
        assert torch.equal(d["labels"], r["labels"])
        assert d["boxes"][:, [0, 2]].max() <= SIZE[1] and d["boxes"][:, [1, 3]].max() <= SIZE[0]
    with torch.no_grad(), postprocess_nms("soft"):  # the task's nms= reaches RetinaNet too
        soft = ours.postprocess(ours(x), conf=0.3, iou=0.5, max_det=300)
    assert len(soft[0]["boxes"]) != len(dets[0]["boxes"])  # decayed below conf: dropped
    assert (soft[0]["scores"] > 0.3).all()


def test_losses_match_torchvision(pair):
    tv, ours = pair
    targets = _targets()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        feats = list(tv.backbone(x).values())
        head = tv.head(feats)
        anchors = tv.anchor_generator(ImageList(x, [SIZE] * 2), feats)
        ref = tv.compute_loss(targets, head, anchors)
        total, items = ours.loss(ours(x), targets)
    assert items["cls"] == pytest.approx(float(ref["classification"]), rel=1e-5)
    assert items["box"] == pytest.approx(float(ref["bbox_regression"]), rel=1e-5)
    assert float(total) == pytest.approx(float(sum(ref.values())), rel=1e-5)
    # an image without objects: only negatives, as torchvision
    empty = [targets[0], {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    with torch.no_grad():
        ref = tv.compute_loss(empty, head, anchors)
        _, items = ours.loss(ours(x), empty)
    assert items["cls"] == pytest.approx(float(ref["classification"]), rel=1e-5)
    assert items["box"] == pytest.approx(float(ref["bbox_regression"]), rel=1e-5)
    with pytest.raises(ConfigError, match="target label is 7"):
        ours.loss(ours(x), [{"boxes": targets[1]["boxes"], "labels": torch.tensor([7])}] * 2)


def test_create_model_loads_a_torchvision_file(tmp_path):
    torch.manual_seed(3)
    tv = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    tv = tv.eval()
    with torch.no_grad():  # BN statistics and head moved off init; the deep trunk's conv
        for m in tv.modules():  # weights stay at init so its activations stay O(1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(1, 4)
                m.weight.uniform_(0.3, 0.7)
                m.bias.uniform_(-0.1, 0.1)
        for p in tv.head.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        tv.head.classification_head.cls_logits.bias.normal_(-1.0, 1.0)
        tv.head.classification_head.cls_logits.weight.normal_(0, 0.3)  # scores spread out
    # torchvision's COCO file layout: head towers as conv.0/2/4/6, frozen-BN trunk statistics
    old = {}
    for k, v in tv.state_dict().items():
        for h in ("classification_head", "regression_head"):
            pre = f"head.{h}.conv."
            if k.startswith(pre):
                i, rest = k[len(pre) :].split(".0.")
                k = f"{pre}{2 * int(i)}.{rest}"
        if not k.endswith("num_batches_tracked"):
            old[k] = v
    path = tmp_path / "tv_retinanet.pth"
    torch.save(old, path)
    ours = create_model("retinanet_resnet50_fpn", weights=str(path)).eval()
    x = torch.rand(1, 3, *SIZE)  # images as the detect task feeds them; ours normalizes
    ref = tv_whole(tv, x, 0.3)[0]
    with torch.no_grad():
        got = ours.postprocess(ours(x), conf=0.3)[0]
    assert len(got["boxes"]) > 20
    torch.testing.assert_close(got["boxes"], ref["boxes"])
    torch.testing.assert_close(got["scores"], ref["scores"])
    # another class count: the class logits are re-initialised, the rest loaded
    with pytest.warns(UserWarning, match="head.cls_logits"):
        other = create_model("retinanet_resnet50_fpn", num_classes=2, weights=str(path))
    assert torch.equal(other.head.bbox_reg.weight, tv.head.regression_head.bbox_reg.weight)


def test_trains_through_the_detect_task(tmp_path):
    tiny = "model_kwargs={fpn_channels: 32, backbone_kw: {widths: [16, 32, 64, 128]}}"
    keys = ["data=shapes:16", "model=retinanet_resnet18_fpn", "imgsz=128", "batch=4",
            "workers=0", "epochs=1", "progress=false", "plots=false", "mosaic=0", tiny]  # fmt: skip
    assert main(["train", "detect", *keys, f"out={tmp_path / 'run'}"]) == 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val_loss"] == saved["val_loss"] and 0 <= saved["map50"] <= 1
