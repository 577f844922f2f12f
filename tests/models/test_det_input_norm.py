"""The ResNet detectors take 0-1 images and normalize them with the ImageNet statistics
themselves, as torchvision's transform does before its backbone (its weights were trained
on normalized images; the detect task feeds 0-1). Oracle: torchvision's own
``GeneralizedRCNNTransform.normalize`` of each family's torchvision model."""

import pytest
import torch
import torchvision
from tv_detection import tv_normalize

from cvcraft.errors import ConfigError
from cvcraft.models import create_model

TINY = {"fpn_channels": 32, "backbone_kw": {"widths": (8, 16, 32, 64)}}
BOXES = [torch.tensor([[8.0, 10, 42, 52], [48, 18, 92, 62]]), torch.tensor([[5.0, 5, 60, 40]])]
# ours -> torchvision's model of the same family, whose transform is the oracle
FAMILIES = {
    "retinanet_resnet18_fpn": ("retinanet_resnet50_fpn", {}),
    "fcos_resnet18_fpn": ("fcos_resnet50_fpn", {}),
    "fasterrcnn_resnet18_fpn": ("fasterrcnn_resnet50_fpn", {"representation": 64}),
    "maskrcnn_resnet18_fpn": ("maskrcnn_resnet50_fpn", {"representation": 64}),
    "cascade_rcnn_resnet18_fpn": ("fasterrcnn_resnet50_fpn", {"representation": 64}),
    "fastrcnn_resnet18_fpn": (
        "fasterrcnn_resnet50_fpn",
        {"representation": 64, "proposals": lambda x: BOXES},
    ),
}


def _pair(name, randomize_bn, **kw):
    """Ours as users build it (normalizing) and a twin with the same weights that takes
    already-normalized inputs."""
    extra = {**TINY, **FAMILIES[name][1], **kw}
    torch.manual_seed(0)
    ours = randomize_bn(create_model(name, num_classes=3, **extra)).eval()
    with torch.no_grad():  # heads off their init so every output matters
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    raw = create_model(name, num_classes=3, normalize_input=False, **extra).eval()
    raw.load_state_dict(ours.state_dict())  # strict: the statistics add no state-dict keys
    return ours, raw


def _flat(out):
    """A detector's outputs (dict of tensors / tensor lists, or detections) as tensors."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


@pytest.mark.parametrize("name", list(FAMILIES))
def test_zero_one_input_is_normalized_like_torchvision(name, randomize_bn):
    ours, raw = _pair(name, randomize_bn)
    with torch.device("meta"):
        tv = torchvision.models.get_model(FAMILIES[name][0], weights=None, weights_backbone=None)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        got = ours.postprocess(ours(x), conf=0.0)
        ref = raw.postprocess(raw(tv_normalize(tv, x)), conf=0.0)
        unnormalized = raw.postprocess(raw(x), conf=0.0)
    assert sum(len(d["boxes"]) for d in got) > 0
    for a, b in zip(_flat(got), _flat(ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the normalization matters: the raw 0-1 input gives other scores
    assert not all(
        a.shape == b.shape and torch.allclose(a, b) for a, b in zip(_flat(got), _flat(unnormalized))
    )


def test_grey_detector_uses_the_mean_statistics_and_bad_ones_are_refused(randomize_bn):
    grey = create_model("retinanet_resnet18_fpn", num_classes=3, in_chans=1, **TINY)
    mean = torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None
    ).transform.image_mean
    torch.testing.assert_close(grey.normalize.mean.flatten(), torch.tensor([sum(mean) / 3]))
    assert "normalize.mean" not in grey.state_dict()
    with pytest.raises(ConfigError, match="input_norm: need 3 means"):
        create_model("ssd300_vgg16", width=0.125, input_norm=((0.5, 0.5), (1.0, 1.0)))
