"""The explain / attack / prune / quantize / export runners on a checkpoint in the
trainer's format: files written, and their numbers equal to the library computed directly."""

import json

import numpy as np
import pytest
import torch

from cvcraft.data import load_classification
from cvcraft.data.io import read_image, write_image
from cvcraft.engine.checkpoint import save_checkpoint
from cvcraft.engine.export import OnnxModel
from cvcraft.errors import ConfigError
from cvcraft.explain import attention_rollout, class_activation_map
from cvcraft.models import create_model
from cvcraft.tasks.model_tools import (
    PixelModel,
    load_classifier_any,
    parse_number,
    preprocess_of,
    run_attack,
    run_explain,
    run_export,
    run_prune,
    run_quantize,
)
from cvcraft.transforms.normalize import IMAGENET_STATS
from cvcraft.viz.heatmap import overlay_heatmap

DATA = "shapes:60"  # 60 train / 12 val synthetic 32 px images, 6 classes


def _save_ckpt(path, name, model, classes):
    state = {
        "task": "classify", "epoch": 0, "model": model.state_dict(), "ema": None,
        "config": {"seed": 0, "val_fraction": 0.1}, "model_name": name,
        "num_classes": len(classes), "in_chans": 3, "classes": list(classes), "imgsz": 32,
        "model_kwargs": {}, "normalize": "zscore", "norm_stats": IMAGENET_STATS,
    }  # fmt: skip
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    classes = load_classification(DATA, imgsz_hint=32).classes
    model = create_model("resnet20", num_classes=len(classes))
    for m in model.modules():  # non-trivial BN so pruning/quantization see real statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return _save_ckpt(tmp_path_factory.mktemp("run") / "best.pt", "resnet20", model, classes)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    val = load_classification(DATA, imgsz_hint=32).val
    for i in range(3):
        write_image(folder / f"img{i}.png", val.load_image(i))
    return folder


def test_parse_number():
    assert parse_number("8/255", "eps") == 8 / 255 and parse_number("0.5", "x") == 0.5
    with pytest.raises(ConfigError, match="eps='abc' is not a number"):
        parse_number("abc", "eps")


def test_explain_writes_the_cam_overlays(ckpt, images, tmp_path):
    res = run_explain({"weights": str(ckpt), "source": str(images), "method": "gradcam",
                       "layer": "layer3", "out": str(tmp_path)})  # fmt: skip
    assert len(res) == 3 and (tmp_path / "explain_grid.png").exists()
    assert json.loads((tmp_path / "explain.json").read_text())[0]["layer"] == "layer3"
    # the right half of the written overlay is the CAM computed directly, drawn over the image
    model, meta = load_classifier_any(ckpt, torch.device("cpu"))
    img = read_image(images / "img0.png")
    x = preprocess_of(meta, torch.device("cpu"))(torch.from_numpy(img).permute(2, 0, 1)[None])
    heat = class_activation_map(model, x, "layer3", "gradcam").maps[0].numpy()
    big = np.repeat(np.repeat(img, 8, 0), 8, 1)
    expected = overlay_heatmap(big, np.kron(heat, np.ones((8, 8), np.float32)))
    written = read_image(tmp_path / "img0_gradcam.png")
    assert written.shape == (256, 512, 3)
    assert np.abs(written[:, 256:].astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(written[:, :256], big)


def test_explain_rollout_for_a_vit(images, tmp_path):
    torch.manual_seed(0)
    classes = load_classification(DATA, imgsz_hint=32).classes
    vit = create_model("vit_tiny_patch4_32", num_classes=len(classes))
    path = _save_ckpt(tmp_path / "vit.pt", "vit_tiny_patch4_32", vit, classes)
    res = run_explain({"weights": str(path), "source": str(images / "img1.png"),
                       "method": "rollout", "out": str(tmp_path / "out")})  # fmt: skip
    assert len(res) == 1 and res[0]["layer"] == "attention"
    model, meta = load_classifier_any(path, torch.device("cpu"))
    img = read_image(images / "img1.png")
    x = preprocess_of(meta, torch.device("cpu"))(torch.from_numpy(img).permute(2, 0, 1)[None])
    heat = attention_rollout(model, x)[0][0].numpy()
    big = np.repeat(np.repeat(img, 8, 0), 8, 1)
    expected = overlay_heatmap(big, np.kron(heat, np.ones((8, 8), np.float32)))
    written = read_image(tmp_path / "out" / "img1_rollout.png")
    assert np.abs(written[:, 256:].astype(int) - expected.astype(int)).max() <= 1


def test_explain_bad_inputs(ckpt, images, tmp_path):
    base = {"weights": str(ckpt), "source": str(images), "out": str(tmp_path)}
    with pytest.raises(ConfigError, match="did you mean.*layer3"):
        run_explain({**base, "layer": "layer4"})
    with pytest.raises(ConfigError, match="method='gradcam3'"):
        run_explain({**base, "method": "gradcam3"})
    with pytest.raises(ConfigError, match="class='dog' is neither"):
        run_explain({**base, "class": "dog"})


def test_attack_table_matches_direct_evaluation(ckpt, tmp_path):
    rows = run_attack({"weights": str(ckpt), "data": DATA, "method": "fgsm,pgd",
                       "eps": "0,2/255,8/255", "steps": "3", "n": "12", "grid": "4",
                       "out": str(tmp_path)})  # fmt: skip
    for f in ("robustness.csv", "robustness.json", "robustness_linf.png",
              "adversarial_examples.png"):  # fmt: skip
        assert (tmp_path / f).exists(), f
    acc = {(r["method"], r["eps"]): r["accuracy"] for r in rows}
    assert len(rows) == 6 and all(r["images"] == 12 for r in rows)
    # eps = 0 is clean accuracy, computed here without the runner
    model, meta = load_classifier_any(ckpt, torch.device("cpu"))
    pixel = PixelModel(model, preprocess_of(meta, torch.device("cpu")))
    val = load_classification(DATA, imgsz_hint=32).val
    x = torch.from_numpy(np.stack([val.load_image(i) for i in range(12)])).permute(0, 3, 1, 2)
    with torch.no_grad():
        clean = float(
            (pixel(x.float() / 255).argmax(1) == torch.from_numpy(val.labels)).float().mean()
        )
    assert acc[("fgsm", 0.0)] == acc[("pgd", 0.0)] == pytest.approx(clean)
    assert acc[("pgd", 8 / 255)] <= acc[("pgd", 0.0)]


def test_attack_rejects_negative_eps(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="eps=-0.1 must be >= 0"):
        run_attack({"weights": str(ckpt), "data": DATA, "eps": "-0.1", "out": str(tmp_path)})


def test_prune_writes_a_loadable_smaller_checkpoint(ckpt, tmp_path):
    out = tmp_path / "pruned.pt"
    res = run_prune({"weights": str(ckpt), "method": "l1_channel", "amount": "0.5",
                     "data": DATA, "out": str(out)})  # fmt: skip
    before, after = res["rows"]
    assert after["params"] < 0.8 * before["params"] and after["mmacs"] < 0.8 * before["mmacs"]
    model, state = load_classifier_any(out, torch.device("cpu"))
    assert state["pruned"]["widths"]["layer1.0.conv1"] == 8
    assert sum(p.numel() for p in model.parameters()) == after["params"]
    assert (tmp_path / "pruned_table.csv").exists()
    mag = run_prune({"weights": str(ckpt), "method": "magnitude", "amount": "0.7",
                     "out": str(tmp_path / "mag.pt")})  # fmt: skip
    assert mag["sparsity"] == pytest.approx(0.7, abs=1e-4)
    assert mag["rows"][1]["zip_mb"] < mag["rows"][0]["zip_mb"]


def test_quantize_writes_an_int8_model(ckpt, tmp_path):
    out = tmp_path / "int8.ts"
    res = run_quantize({"weights": str(ckpt), "data": DATA, "calib": "24", "out": str(out)})
    fp32, int8 = res["rows"]
    assert int8["size_mb"] < 0.5 * fp32["size_mb"]
    model, meta = load_classifier_any(out, torch.device("cpu"))
    ref, _ = load_classifier_any(ckpt, torch.device("cpu"))
    assert meta["classes"][0] == "circle"
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        y, y_ref = model(x), ref(x)
    assert float((y - y_ref).norm() / y_ref.norm()) < 0.15


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
