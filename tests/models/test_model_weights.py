"""``create_model(name, weights=PATH)``: torchvision files, cvcraft checkpoints, bare state_dicts.

Oracle: the torchvision twin itself. Its randomly initialised weights (BN statistics and
affine parameters randomised) are saved to a file; our model built from that file must give
torchvision's outputs to 1e-5.
"""

import warnings

import pytest
import torch
import torchvision

from cvcraft.errors import CheckpointError
from cvcraft.models import MODELS, create_model, list_models, model_default_cfg
from cvcraft.models.classification import densenet, swin, vit
from cvcraft.models.detection import faster_rcnn
from cvcraft.models.registry import tv_converter
from cvcraft.tasks import model_task

TWINS = sorted(n for n in list_models() if "tv_twin" in model_default_cfg(n))
# Large twins (>= 40M parameters or a 224-only input) run with -m slow; the default run keeps
# one model per converter and layout.
FAST = {"resnet18", "mobilenet_v2", "efficientnet_b0", "densenet121", "googlenet",
        "swin_tiny_patch4_window7_224", "fcn_resnet50", "deeplabv3_resnet50",
        "fasterrcnn_resnet50_fpn"}  # fmt: skip


def _tv_twin(name: str) -> torch.nn.Module:
    twin = model_default_cfg(name)["tv_twin"]
    kw = {} if model_task(name) == "classify" else {"weights_backbone": None}
    if twin in ("googlenet", "inception_v3"):
        kw["init_weights"] = True  # silences torchvision's init-default warning
    return torchvision.models.get_model(twin, weights=None, **kw)


def _outputs(model: torch.nn.Module, x: torch.Tensor, task: str) -> list[torch.Tensor]:
    if task in ("detect", "instance"):  # the FPN levels / SSD feature maps: every trunk, FPN
        # and converter key is on the path
        out = model.backbone(x)
        return list(out.values()) if isinstance(out, dict) else out
    out = model(x)
    return [out["out"] if isinstance(out, dict) else out]


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in TWINS]
)
def test_torchvision_file_loads_by_name_and_gives_torchvision_outputs(name, tmp_path, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(_tv_twin(name)).eval()
    with torch.no_grad():  # zero-initialised layers (ViT's head) would hide a wrong mapping
        for p in tv.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(std=0.02)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    ours = create_model(name, num_classes=_num_classes(tv, name), weights=path).eval()
    task = model_task(name)
    minimum = {"vit_base_patch16_224": 224, "inception_v3": 75, "ssd300_vgg16": 300,
               "ssdlite320_mobilenet_v3_large": 320}  # fmt: skip
    side = minimum.get(name, 64)
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        got, ref = _outputs(ours, x, task), _outputs(tv, x, task)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape and r.abs().max() > 0
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * max(1.0, float(r.abs().max())))


def _num_classes(tv: torch.nn.Module, name: str) -> int:
    """The twin's class count in our convention (Faster R-CNN: without the background)."""
    if model_task(name) in ("detect", "instance"):
        if hasattr(tv, "roi_heads"):  # two-stage: torchvision counts the background class
            return tv.roi_heads.box_predictor.cls_score.out_features - 1
        if name.startswith("ssd"):  # SSD: logit 0 is the background
            return tv.head.classification_head.num_columns - 1
        return tv.head.classification_head.num_classes  # RetinaNet/FCOS: no background logit
    if model_task(name) == "segment":
        return tv.classifier[-1].out_channels
    return 1000


def test_every_converter_is_the_modules_own_function():
    assert tv_converter("vit_b_16") is vit.from_torchvision_state_dict
    assert tv_converter("swin_t") is tv_converter("swin_s") is swin.from_torchvision_state_dict
    assert tv_converter("densenet121") is densenet.from_torchvision_state_dict
    assert tv_converter("fasterrcnn_resnet50_fpn") is faster_rcnn.from_torchvision_state_dict
    assert tv_converter("resnet50") is None  # identical keys: nothing to rename
    assert {"resnet50", "vit_base_patch16_224", "deeplabv3_resnet50"} <= set(TWINS)


def test_ema_of_a_cvcraft_checkpoint_wins_and_ddp_prefix_is_dropped(tmp_path):
    torch.manual_seed(0)
    raw, ema = create_model("resnet20"), create_model("resnet20")
    ckpt = {
        "model": {f"module.{k}": v for k, v in raw.state_dict().items()},
        "ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
        "epoch": 3,
    }
    torch.save(ckpt, tmp_path / "last.pt")
    got = create_model("resnet20", num_classes=10, weights=tmp_path / "last.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(got.state_dict().values(), ema.state_dict().values())
    )
    del ckpt["ema"]
    torch.save(ckpt, tmp_path / "noema.pt")
    got = create_model("resnet20", num_classes=10, weights=tmp_path / "noema.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(got.state_dict().values(), raw.state_dict().values())
    )


def test_other_num_classes_keeps_the_trunk_and_reinitialises_the_head(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    with pytest.warns(UserWarning, match=r"fc\.bias', 'fc\.weight'.*keep their initialisation"):
        ours = create_model("resnet18", num_classes=10, weights=tmp_path / "r18.pth")
    assert torch.equal(ours.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    assert ours.fc.weight.shape == (10, 512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the matching head loads silently
        create_model("resnet18", weights=tmp_path / "r18.pth")


def test_segmenter_and_detector_fine_tune_from_torchvision_with_new_classes(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)
    with pytest.warns(UserWarning, match=r"classifier\.2\.bias', 'classifier\.2\.weight'"):
        ours = create_model("fcn_resnet50", num_classes=3, weights=tv.state_dict())
    assert torch.equal(ours.backbone.layer3[2].conv2.weight, tv.backbone.layer3[2].conv2.weight)
    assert torch.equal(ours.classifier[0].bn.running_var, tv.classifier[1].running_var)
    assert ours.classifier[2].weight.shape == (3, 512, 1, 1)
    with torch.device("meta"):
        det = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None
        )
    sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in det.state_dict().items()}
    with pytest.warns(UserWarning, match="bbox_pred.bias', 'bbox_pred.weight', 'cls_score"):
        ours = create_model("fasterrcnn_resnet50_fpn", num_classes=2, weights=sd)
    assert not ours.backbone.fpn.output[0].weight.any() and ours.cls_score.weight.any()


@pytest.mark.parametrize("in_chans", [1, 2, 5])
def test_rgb_weights_adapt_to_other_input_channels(in_chans, randomize_bn):
    torch.manual_seed(0)
    tv = randomize_bn(torchvision.models.resnet18(weights=None)).eval()
    ours = create_model("resnet18", in_chans=in_chans, weights=tv.state_dict()).eval()
    w = tv.conv1.weight
    if in_chans == 1:  # oracle: a gray image through the adapted model = its RGB copy via tv
        x = torch.randn(2, 1, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), tv(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)
    else:  # filters cycle R, G, B, R, ... scaled by 3 / in_chans
        want = torch.stack([w[:, i % 3] for i in range(in_chans)], 1) * 3 / in_chans
        torch.testing.assert_close(ours.conv1.weight, want)
    assert torch.equal(ours.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


def test_weights_that_do_not_fit_raise_checkpoint_errors(tmp_path):
    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pt")
    with pytest.raises(
        CheckpointError, match=r"(?s)do not fit model resnet32.*missing in the file \(72\)"
    ):
        create_model("resnet32", weights=tmp_path / "r20.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet20", weights=tmp_path / "nope.pt")
    torch.save(create_model("lenet5"), tmp_path / "whole_model.pt")  # a pickled module
    with pytest.raises(CheckpointError, match="not a loadable state_dict"):
        create_model("lenet5", weights=tmp_path / "whole_model.pt")
    for bad in (b"", b"not a checkpoint at all"):
        (tmp_path / "bad.pt").write_bytes(bad)
        with pytest.raises(CheckpointError, match="bad.pt is not a loadable state_dict"):
            create_model("lenet5", weights=tmp_path / "bad.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        create_model("lenet5", weights=tmp_path / "list.pt")
    tv = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=3, aux_loss=True
    )
    with pytest.raises(CheckpointError, match=r"(?s)aux_classifier.*aux=True"):
        create_model("fcn_resnet50", num_classes=3, weights=tv.state_dict())
    create_model("fcn_resnet50", num_classes=3, aux=True, weights=tv.state_dict())


def test_aliases_build_the_canonical_model_and_are_not_listed():
    assert "vit_b_16" not in list_models() and "swin_t" not in list_models()
    assert list_models("vit_base*") == ["vit_base_patch16_224"]
    with torch.device("meta"):
        a, b = create_model("swin_t"), create_model("swin_tiny_patch4_window7_224")
    assert type(a) is type(b)
    assert [v.shape for v in a.state_dict().values()] == [v.shape for v in b.state_dict().values()]
    assert model_task("vit_b_16") == "classify" and "vit_b_16" in MODELS
    assert MODELS.get("mobilenetv2_100") is MODELS.get("mobilenet_v2")


def test_alias_cannot_shadow_a_model_or_another_alias():
    from cvcraft.errors import RegistryError

    with pytest.raises(RegistryError, match="already a model or another alias"):
        MODELS.add_alias("resnet18", "resnet34")
    with pytest.raises(RegistryError, match="already a model or another alias"):
        MODELS.add_alias("vit_b_16", "resnet34")
    with pytest.raises(RegistryError, match='Did you mean "vit_b_16"'):
        create_model("vit_b_61")


def test_every_model_reloads_its_own_state_dict_by_name():
    """Keys and shapes round-trip for every architecture (built on the meta device: nothing
    is allocated, the key/shape checks and head detection still run)."""
    for name in list_models():
        device = "cpu" if name.startswith("yolov3") else "meta"  # yolov3 checks anchors by value
        with torch.device(device), warnings.catch_warnings():
            warnings.simplefilter("error")  # a fitting file loads without any skipped head
            sd = create_model(name).state_dict()
            create_model(name, weights=sd)
