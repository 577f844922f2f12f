"""Every registered model exports to ONNX and onnxruntime reproduces its eval outputs.

The model list is read at collection time, so architectures added later are covered
without editing this file. We use the TorchScript-based exporter (``dynamo=False``): it
handles every model here in about a second, where the dynamo exporter takes several times
longer per model. Models over ``SLOW_PARAMS`` parameters (vgg*, vit_base, swin_small, swin_tiny,
resnet101/152, wide_resnet50_2, ...) are marked ``slow``: their protobufs run to hundreds
of MB and dominate the time, while their layers are the same as their smaller siblings'.
"""

import io
import warnings

import numpy as np
import pytest
import torch

from cvcraft.models import create_model, list_models, model_info

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
        marks = [pytest.mark.slow] if _params(name) > SLOW_PARAMS else []
        yield pytest.param(name, marks=marks, id=name)


def _input_for(model: torch.nn.Module) -> torch.Tensor:
    c, h, w = getattr(model, "default_input_size", (3, 224, 224))
    if min(h, w) > SMALL_SIDE:
        x = torch.randn(1, c, SMALL_SIDE, SMALL_SIDE)
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
    model = create_model(name, num_classes=10).eval()
    x = _input_for(model)
    with torch.no_grad():
        expected = model(x).numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation / tracer notes
        torch.onnx.export(
            model, (x,), buf, dynamo=False, opset_version=17,
            input_names=["images"], output_names=["logits"],
        )  # fmt: skip
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    assert got.shape == expected.shape == (1, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
