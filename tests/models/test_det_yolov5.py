"""YOLOv5: parameter counts against ultralytics' yolov5{n,s}.yaml builds and YOLOv5's own model
summaries, outputs against ultralytics with weights copied through ``convert_ultralytics_v5``,
C3 / SPPF against ultralytics' modules, the Focus stem."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.nn.blocks import CSPBlock
from cvcraft.nn.fuse import fuse_model
from cvcraft.nn.pool import SPPF

ul_tasks = pytest.importorskip("ultralytics.nn.tasks")


def count(m, trainable=False):
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


def _calibrate_bn(model, x):
    """Running statistics = one batch's, so activations stay O(1) through the whole network
    in eval (default-initialised statistics shrink them to ~1e-9 and any comparison passes)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.fixture(scope="module", params=["n", "s"])
def pair(request):
    s = request.param
    return s, ul_tasks.DetectionModel(f"yolov5{s}.yaml", nc=80, verbose=False)


def test_parameter_counts_equal_ultralytics_and_yolov5(pair):
    s, ul = pair
    ours = create_model(f"yolov5{s}", num_classes=80)
    ours_u = create_model(f"yolov5{s}u", num_classes=80)
    trunk = sum(count(ul.model[i]) for i in range(24))  # everything but the Detect head
    assert count(ours.backbone) + count(ours.neck) == trunk
    # anchor-based head: 1x1 conv per level to 3 x 85 outputs
    c = (64, 128, 256) if s == "n" else (128, 256, 512)
    assert count(ours.head) == sum((ci + 1) * 255 for ci in c)
    # YOLOv5's model summaries: 1,872,157 / 7,235,389 params, 1,867,405 / 7,225,885 fused
    assert count(ours) == {"n": 1_872_157, "s": 7_235_389}[s]
    assert count(fuse_model(ours.eval())) == {"n": 1_867_405, "s": 7_225_885}[s]
    # v5u = ultralytics' current yolov5 build; its only extra is the fixed DFL conv (16)
    assert count(ours_u) == count(ul, trainable=True) == count(ul) - 16


def test_v5u_outputs_equal_ultralytics_with_converted_weights(pair):
    from cvcraft.models.detection.yolov5 import convert_ultralytics_v5

    s, ul = pair
    if s != "n":
        pytest.skip("one scale is enough for the value check")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 160)
    _calibrate_bn(ul, x)
    with torch.no_grad():  # class priors near 0 would hide differences in the scores
        for branch in ul.model[-1].cv3:
            branch[-1].bias.zero_()
    ours = create_model("yolov5nu", num_classes=80).eval()
    missing = ours.load_state_dict(convert_ultralytics_v5(ul.state_dict()), strict=False)
    assert not missing.unexpected_keys and not missing.missing_keys
    with torch.no_grad():
        ref = ul(x)
        ref = ref[0] if isinstance(ref, (tuple, list)) else ref  # (B, 4 + C, N) xywh, scores
        boxes, scores = ours.decode(ours(x))
    assert ref[:, 4:].std() > 0.01  # the scores vary: the comparison means something
    xywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
    assert torch.allclose(xywh, ref[:, :4].transpose(1, 2), atol=1e-3)
    assert torch.allclose(scores, ref[:, 4:].transpose(1, 2), atol=1e-5)


def test_c3_and_sppf_equal_ultralytics_modules():
    from ultralytics.nn.modules import C3
    from ultralytics.nn.modules import SPPF as ULSPPF

    torch.manual_seed(1)
    for ours, ref in [
        (CSPBlock(32, 48, n=2, shortcut=True), C3(32, 48, n=2, shortcut=True)),
        (CSPBlock(32, 32, n=1, shortcut=False), C3(32, 32, n=1, shortcut=False)),
        (SPPF(32, 40, 5, act="silu"), ULSPPF(32, 40, 5)),
    ]:
        if isinstance(ref, ULSPPF):  # yaml builds (and YOLOv5) activate cv1; the bare default not
            ref.cv1.act = torch.nn.SiLU()
        x = torch.randn(2, 32, 16, 12)
        _calibrate_bn(ref, x)
        ours.load_state_dict(ref.state_dict())
        with torch.no_grad():
            assert torch.allclose(ours.eval()(x), ref(x), atol=1e-5)


def test_focus_stem_option():
    conv6 = create_model("yolov5n", num_classes=3)
    focus = create_model("yolov5n", num_classes=3, stem="focus")
    assert count(conv6) == count(focus)  # 6x6x3 and 3x3x12 weights per filter: 108 each
    x = torch.rand(1, 3, 64, 64)
    assert [o.shape for o in focus(x)] == [o.shape for o in conv6(x)]
    with pytest.raises(ConfigError, match="stem"):
        create_model("yolov5n", stem="pool")


def test_anchor_yolov5_trains_a_few_steps():
    torch.manual_seed(0)
    m = create_model("yolov5n", num_classes=2, input_size=128)
    x = torch.rand(2, 3, 128, 128)
    t = [{"boxes": torch.tensor([[20.0, 30, 70, 90]]), "labels": torch.tensor([1])},
         {"boxes": torch.tensor([[5.0, 5, 40, 30], [60, 60, 120, 110]]),
          "labels": torch.tensor([0, 1])}]  # fmt: skip
    opt = torch.optim.AdamW(m.parameters(), 2e-3)
    first = None
    for _ in range(15):
        loss, parts = m.loss(m(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss) < 0.7 * first and set(parts) == {"box", "obj", "cls"}
    m.eval()
    det = m.postprocess(m(x), conf=0.001)
    assert det[0]["boxes"].shape[1] == 4 and (det[0]["labels"] < 2).all()
