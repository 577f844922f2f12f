"""Classifier checkpoints initialise detector backbones; the prefix drives freeze / lr_mults."""

import pytest
import torch

from cvcraft.engine.optim import param_groups
from cvcraft.errors import CheckpointError
from cvcraft.models import create_model
from cvcraft.models.detection.backbone_init import load_backbone_state

TINY_RESNET = {"widths": (8, 16, 16, 32)}


def _frcnn():
    return create_model(
        "fasterrcnn_resnet18_fpn", num_classes=2, fpn_channels=16, representation=32,
        backbone_kw=TINY_RESNET,
    )  # fmt: skip


def test_resnet18_classifier_into_faster_rcnn():
    torch.manual_seed(0)
    clf = create_model("resnet18", num_classes=10, **TINY_RESNET)
    det = _frcnn()
    before_fpn = {k: v.clone() for k, v in det.backbone.fpn.state_dict().items()}
    report = load_backbone_state(det, {"model": clf.state_dict(), "ema": None, "epoch": 3})
    assert report.prefix == "backbone.body"
    assert report.dropped == ["fc.weight", "fc.bias"] and report.missing == []
    assert len(report.loaded) == len(clf.state_dict()) - 2
    x = torch.rand(1, 3, 64, 64)
    clf.eval()
    det.eval()
    with torch.no_grad():  # the trunk now computes exactly the classifier's features
        torch.testing.assert_close(det.backbone.body.forward_features(x), clf.forward_features(x))
    for k, v in det.backbone.fpn.state_dict().items():  # the new FPN is untouched
        assert torch.equal(v, before_fpn[k])
    assert "loaded" in report.summary()


def test_ema_weights_and_ddp_prefix_are_used():
    torch.manual_seed(0)
    raw = create_model("resnet18", num_classes=10, **TINY_RESNET)
    ema = create_model("resnet18", num_classes=10, **TINY_RESNET)
    det = _frcnn()
    ema_sd = {f"module.{k}": v for k, v in ema.state_dict().items()}
    load_backbone_state(det, {"model": raw.state_dict(), "ema": ema_sd})
    assert torch.equal(det.backbone.body.conv1.weight, ema.conv1.weight)


@pytest.mark.parametrize(
    "name, backbone", [("darknet53", "darknet53"), ("cspdarknet53", "cspdarknet53")]
)
def test_darknet_classifier_into_yolov3(name, backbone):
    torch.manual_seed(0)
    kw = {"width_mult": 0.125, "depth_mult": 0.2}
    clf = create_model(name, num_classes=5, **kw).eval()
    det = create_model("yolov3", num_classes=2, backbone=backbone, **kw).eval()
    report = load_backbone_state(det, clf.state_dict())
    assert report.prefix == "backbone" and report.missing == []
    assert report.dropped == ["fc.weight", "fc.bias"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(det.backbone.forward_stages(x), clf.forward_stages(x)):
            torch.testing.assert_close(a, b)


def test_resnet_classifier_into_yolov1():
    clf = create_model("resnet18", num_classes=4, **TINY_RESNET)
    det = create_model("yolov1", num_classes=2, backbone_kw=TINY_RESNET)
    report = load_backbone_state(det, clf.state_dict())
    assert report.prefix == "backbone" and report.missing == [] and len(report.dropped) == 2
    assert torch.equal(det.backbone.layer4[1].conv2.weight, clf.layer4[1].conv2.weight)


def test_wrong_checkpoints_raise():
    det = _frcnn()
    wide = create_model("resnet18", num_classes=10)  # default widths: shapes differ
    with pytest.raises(CheckpointError, match="conv1.weight"):
        load_backbone_state(det, wide.state_dict())
    other = create_model("darknet53", num_classes=3, width_mult=0.125, depth_mult=0.2)
    with pytest.raises(CheckpointError, match="none of the"):
        load_backbone_state(det, other.state_dict())
    partial = {k: v for k, v in create_model("resnet18", **TINY_RESNET).state_dict().items()
               if not k.startswith("layer4")}  # fmt: skip
    report = load_backbone_state(det, partial)
    assert report.missing and all(k.startswith("layer4") for k in report.missing)
    with pytest.raises(CheckpointError, match="lacks"):
        load_backbone_state(det, partial, strict=True)


def test_prefix_drives_freeze_and_lr_mults():
    det = _frcnn()
    prefix = det.backbone_parameters_prefix()
    body = {id(p) for p in det.backbone.body.parameters()}
    named = {n for n, _ in det.named_parameters() if n.startswith(prefix + ".")}
    assert {id(p) for n, p in det.named_parameters() if n in named} == body
    groups = param_groups(det, 1e-4, lr_mults={prefix: 0.1}, base_lr=0.01)
    slow = {id(p) for g in groups if g["lr_mult"] == 0.1 for p in g["params"]}
    assert slow == body
    assert create_model("yolov3_tiny", num_classes=2).backbone_parameters_prefix() == "backbone"


def test_norm_eval_keeps_trunk_statistics():
    det = create_model(
        "fasterrcnn_resnet18_fpn", num_classes=2, fpn_channels=16, representation=32,
        backbone_kw=TINY_RESNET, norm_eval=True,
    ).train()  # fmt: skip
    before = det.backbone.body.bn1.running_mean.clone()
    det(torch.rand(1, 3, 64, 64) * 5)
    assert not det.backbone.body.bn1.training and det.backbone.fpn.training
    assert torch.equal(det.backbone.body.bn1.running_mean, before)
