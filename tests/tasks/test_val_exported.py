"""`cvcraft val` with weights= an exported ONNX / TorchScript file gives the checkpoint's
numbers (the file carries the checkpoint's classes and normalisation)."""

import json

import pytest

from cvcraft.cli import main
from cvcraft.engine.trainer import Trainer
from cvcraft.tasks import task_config
from cvcraft.tasks.classify.task import ClassifyTask
from cvcraft.tasks.export_tool import run_export

KEYS = {"data": "shapes:64", "model": "mlp", "imgsz": "16", "batch": "16", "workers": "0",
        "epochs": "1", "progress": "false", "plots": "false"}  # fmt: skip


def test_val_of_exported_files_equals_the_checkpoint(tmp_path):
    cfg = task_config("classify", {**KEYS, "out": str(tmp_path / "run")})
    Trainer(ClassifyTask(cfg), cfg).fit()
    pt = tmp_path / "run" / "best.pt"
    results = {}
    for fmt, suffix in (("pt", ".pt"), ("onnx", ".onnx"), ("torchscript", ".ts")):
        weights = pt
        if fmt != "pt":
            weights = tmp_path / f"m{suffix}"
            run_export({"weights": str(pt), "format": fmt, "out": str(weights), "dynamic": "true"})
        out = tmp_path / f"val_{fmt}"
        args = ["val", "classify", f"weights={weights}", "data=shapes:64", "workers=0",
                "plots=false", "progress=false", f"out={out}"]  # fmt: skip
        assert main(args) == 0
        results[fmt] = json.loads((out / "metrics.json").read_text())
    for fmt in ("onnx", "torchscript"):
        assert results[fmt]["top1"] == results["pt"]["top1"]
        assert results[fmt]["val_loss"] == pytest.approx(results["pt"]["val_loss"], rel=1e-4)
