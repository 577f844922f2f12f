"""``cvcraft export``: the file runs like the checkpoint; clear errors."""

import pytest
import torch

from cvcraft.engine.export import OnnxModel
from cvcraft.errors import ConfigError
from cvcraft.tasks.export_tool import run_export
from cvcraft.tasks.model_tools import load_classifier_any

DATA = "shapes:60"  # the conftest checkpoint's data: 60 train / 12 val, 6 classes


def test_export_onnx_runs_like_the_checkpoint(ckpt, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    report = run_export({"weights": str(ckpt), "format": "onnx", "dynamic": "true",
                         "out": str(out)})  # fmt: skip
    assert report["ok"] and "parity vs PyTorch" in capsys.readouterr().out
    onnx_model, meta = load_classifier_any(out, torch.device("cpu"))
    assert isinstance(onnx_model, OnnxModel) and meta["norm_stats"]["mean"][0] == 123.675
    ref, _ = load_classifier_any(ckpt, torch.device("cpu"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(onnx_model(x), ref(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="half=true .* CUDA"):
        run_export({"weights": str(ckpt), "half": "true"})
    with pytest.raises(ConfigError, match="format='tflite'"):
        run_export({"weights": str(ckpt), "format": "tflite"})
