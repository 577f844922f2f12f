"""Export: ONNX (onnxruntime) and TorchScript outputs against eager PyTorch, dynamic and
fixed batch, multi-output models, and clear errors. Every registered model's ONNX parity
is in tests/models/test_onnx_export.py (it uses the same export_onnx / OnnxModel / parity)."""

import io

import pytest
import torch
from torch import nn

from cvcraft.engine.export import (
    OnnxModel,
    export_model,
    export_onnx,
    load_torchscript,
    parity,
    torchscript_metadata,
)
from cvcraft.errors import ConfigError
from cvcraft.models import create_model

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10).eval()


def test_onnx_dynamic_batch_parity(resnet, tmp_path):
    meta = {"classes": ["a", "b"], "norm_stats": {"mean": [1.5, 2.0, 3.0]}}
    report = export_model(
        resnet, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", "onnx", dynamic=True,
        check=torch.randn(5, 3, 32, 32), metadata=meta,
    )  # fmt: skip
    assert report["ok"] and report["max_abs_diff"] < 1e-4 and report["bytes"] > 100_000
    runner = OnnxModel(tmp_path / "m.onnx")
    assert runner.fixed_batch is None and runner.output_names == ["logits"]
    assert runner.metadata == meta
    x = torch.randn(7, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(runner(x), resnet(x), atol=1e-4, rtol=1e-4)


def test_onnx_fixed_batch_runs_any_batch_in_chunks(resnet):
    buf = io.BytesIO()
    export_onnx(resnet, torch.randn(2, 3, 32, 32), buf, metadata={"imgsz": 32})
    runner = OnnxModel(buf.getvalue())
    assert runner.metadata == {"imgsz": 32}
    assert runner.fixed_batch == 2
    runner.eval()  # behaves like a module for evaluation code
    x = torch.randn(5, 3, 32, 32)  # 2 + 2 + (1 padded to 2)
    with torch.no_grad():
        torch.testing.assert_close(runner(x), resnet(x), atol=1e-4, rtol=1e-4)


def test_torchscript_parity(resnet, tmp_path):
    report = export_model(
        resnet, torch.randn(2, 3, 32, 32), tmp_path / "m.ts", "torchscript", metadata={"k": [1]}
    )
    assert torchscript_metadata(tmp_path / "m.ts") == {"k": [1]}
    assert report["ok"] and report["max_abs_diff"] < 1e-5
    loaded = load_torchscript(tmp_path / "m.ts")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), resnet(x), atol=1e-5, rtol=1e-5)


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y.mean((2, 3)), y.amax((2, 3))


def test_several_outputs(tmp_path):
    model = _TwoHeads().eval()
    names = export_onnx(model, torch.randn(1, 3, 8, 8), tmp_path / "two.onnx", dynamic=True)
    assert names == ["output0", "output1"]
    x = torch.randn(3, 3, 8, 8)
    got = OnnxModel(tmp_path / "two.onnx")(x)
    with torch.no_grad():
        assert isinstance(got, tuple) and parity(model(x), got)["ok"]


def test_parity_detects_a_difference():
    ref = torch.randn(4, 10)
    assert parity(ref, ref + 1e-6)["ok"]
    bad = ref.clone()
    bad[2, 3] += 1e-2
    report = parity(ref, bad)
    assert not report["ok"] and report["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)
    assert not parity(ref, ref[:2])["ok"]


class _Svd(nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x.flatten(2))[1]


def test_bad_inputs(resnet, tmp_path):
    with pytest.raises(ConfigError, match="cannot be exported to ONNX.*linalg_svd.*torchscript"):
        export_onnx(_Svd(), torch.randn(1, 3, 4, 4), io.BytesIO())
    with pytest.raises(ConfigError, match="format='tflite'"):
        export_model(resnet, torch.randn(1, 3, 32, 32), tmp_path / "m", "tflite")
    with pytest.raises(ConfigError, match=r"opset=3 must be in \[9, "):
        export_onnx(resnet, torch.randn(1, 3, 32, 32), io.BytesIO(), opset=3)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="junk.onnx: not a loadable ONNX model"):
        OnnxModel(junk)
