"""``cvcraft export``: the file runs like the checkpoint; clear errors."""

import pytest
import torch

from cvcraft.engine.export import OnnxModel
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.tasks.export_tool import run_export
from cvcraft.tasks.model_tools import load_classifier_any


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


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_detector_and_segmenter(tmp_path, save_task_ckpt, fmt):
    torch.manual_seed(0)
    det = create_model("yolo_p", num_classes=4).eval()
    path = save_task_ckpt(tmp_path / "det.pt", "detect", "yolo_p", det, list("abcd"), 64)
    report = run_export({"weights": str(path), "format": fmt, "dynamic": "true"})
    assert report["ok"], report
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        boxes, scores = det.decode(det(x))
    if fmt == "onnx":
        got_boxes, got_scores = OnnxModel(report["path"])(x)
        assert OnnxModel(report["path"]).metadata["task"] == "detect"
        torch.testing.assert_close(got_boxes, boxes, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(got_scores, scores, atol=1e-5, rtol=1e-4)
    seg = create_model("deeplabv3_resnet18", num_classes=3).eval()
    path = save_task_ckpt(tmp_path / "seg.pt", "segment", "deeplabv3_resnet18", seg, "xyz", 64)
    report = run_export({"weights": str(path), "format": fmt})
    assert report["ok"], report


def test_export_detector_with_nms_in_the_graph(tmp_path, save_task_ckpt):
    torch.manual_seed(0)
    det = create_model("yolo_p", num_classes=4).eval()
    path = save_task_ckpt(tmp_path / "det.pt", "detect", "yolo_p", det, list("abcd"), 64)
    # an untrained YOLO scores ~0.001-0.003: a threshold inside that range keeps some boxes
    report = run_export({"weights": str(path), "nms": "true", "conf": "0.001", "iou": "0.5"})
    assert report["ok"] and report["same_as_postprocess"]
    runner = OnnxModel(report["path"])
    for seed in (1, 2):  # other images than the traced one: the graph is not frozen to it
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        boxes, scores, labels = runner(x)
        with torch.no_grad():
            ref = det.postprocess(det(x), conf=0.001, iou=0.5, max_det=300)[0]
        assert 0 < len(boxes) == len(ref["boxes"])
        torch.testing.assert_close(boxes, ref["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(scores, ref["scores"], atol=1e-5, rtol=1e-4)
        assert torch.equal(labels, ref["labels"])
    with pytest.raises(ConfigError, match="nms=true exports one image per call"):
        run_export({"weights": str(path), "nms": "true", "dynamic": "true"})
