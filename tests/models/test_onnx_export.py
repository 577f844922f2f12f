"""Every registered classification and segmentation model exports to ONNX and onnxruntime
reproduces its eval outputs.

Detectors are covered by their decoded head (``decode(model(x))`` for the one-stage YOLOs);
two-stage Faster R-CNN's proposal sampling is data-dependent Python and is not exported.

The model list is read at collection time, so architectures added later are covered
without editing this file. Export, the onnxruntime runner and the parity tolerance are the
production ones (``cvcraft.engine.export``: the TorchScript-based exporter, about a second
per model). Models over ``SLOW_PARAMS`` parameters (vgg*, vit_base, swin_small, swin_tiny,
resnet101/152, wide_resnet50_2, ...) are marked ``slow``: their protobufs run to hundreds
of MB and dominate the time, while their layers are the same as their smaller siblings'.
"""

import io

import numpy as np
import pytest
import torch

from cvcraft.engine.export import OnnxModel, export_onnx, parity
from cvcraft.models import create_model, list_models, model_info
from cvcraft.tasks import model_task

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SLOW_PARAMS = 25_000_000
SMALL_SIDE = 64  # 224-px models are exported at 64 px where the architecture allows it


def _params(name: str) -> int:
    try:
        with torch.device("meta"):
            return model_info(create_model(name, num_classes=10))["params"]
    except Exception:
        return 0  # cannot build on meta: count it as small, the test itself will tell


def _cases():
    for name in list_models():
        # generators take noise, not images; detectors and instance models return structures
        if model_task(name) in ("detect", "instance", "generate"):
            continue
        marks = [pytest.mark.slow] if _params(name) > SLOW_PARAMS else []
        yield pytest.param(name, marks=marks, id=name)


def _input_for(model: torch.nn.Module, name: str) -> torch.Tensor:
    c, h, w = getattr(model, "default_input_size", (3, 224, 224))
    # Segmentation: 96 px puts stride-8 features at 12x12, which PSPNet's 1/2/3/6 bins
    # divide (ONNX's adaptive pooling needs that); every other segmenter accepts it too.
    side = 96 if model_task(name) == "segment" else SMALL_SIDE
    # A classifier pooling to a fixed grid (AlexNet's 6x6, VGG's 7x7) needs its native size:
    # ONNX's adaptive pooling only exports when the grid divides the feature map.
    pools_to_grid = model_task(name) == "classify" and any(
        isinstance(m, torch.nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))
        for m in model.modules()
    )
    if min(h, w) > side and not pools_to_grid:
        x = torch.randn(1, c, side, side)
        try:
            with torch.no_grad():
                model(x)
            return x
        except Exception:  # architecture needs its native size (fixed flatten, big stride)
            pass
    return torch.randn(1, c, h, w)


@pytest.mark.parametrize("name", list(_cases()))
def test_onnx_export_matches_torch(name):
    torch.manual_seed(0)
    task = model_task(name)
    # a fusion network outputs one image whatever the data; every other head takes 10 outputs
    model = create_model(name, **({} if task == "fuse" else {"num_classes": 10})).eval()
    x = _input_for(model, name)
    with torch.no_grad():
        expected = model(x)
    buf = io.BytesIO()
    export_onnx(model, x, buf, opset=17)
    got = OnnxModel(buf.getvalue())(x)
    if task == "classify":
        assert got.shape == expected.shape == (1, 10)
    elif task == "fuse":  # one fused image at the input resolution
        assert got.shape == expected.shape == (1, 1, *x.shape[-2:])
    elif task == "recognize":  # CTC log-probabilities: W/4 frames, 10 labels + blank
        assert got.shape == expected.shape == (x.shape[-1] // 4, 1, 11)
    elif task == "pose" and isinstance(expected, tuple):  # bottom-up: heatmaps and fields
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert expected[0].shape == (1, 10, *(v // 4 for v in x.shape[-2:]))
    elif task == "pose":  # one heatmap per keypoint at stride 4
        assert got.shape == expected.shape == (1, 10, *(v // 4 for v in x.shape[-2:]))
    else:  # segmentation: logits at the input resolution
        assert got.shape == expected.shape == (1, 10, *x.shape[-2:])
    # Randomly initialised deep segmenters output logits in the hundreds; float32 reordering
    # differences grow with that scale, so parity's absolute tolerance follows it.
    report = parity(expected, got)
    assert report["ok"], report


class _Decoded(torch.nn.Module):
    """A one-stage YOLO with its decoding, as deployed: boxes (B, N, 4) and scores (B, N, C)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(self.model(x))


@pytest.mark.parametrize("name", ["yolo_p", "yolo_n"])
def test_onnx_export_yolo_decoded(name):
    torch.manual_seed(0)
    model = _Decoded(create_model(name, num_classes=10).eval()).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        boxes, scores = (t.numpy() for t in model(x))
    buf = io.BytesIO()
    export_onnx(model, x, buf, opset=17)
    got_boxes, got_scores = (t.numpy() for t in OnnxModel(buf.getvalue())(x))
    np.testing.assert_allclose(got_boxes, boxes, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(got_scores, scores, atol=1e-5, rtol=1e-4)
