"""``cvcraft prune`` and ``quantize``: smaller / int8 models that load back and agree."""

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.tasks.compress_tool import run_prune, run_quantize
from cvcraft.tasks.model_tools import load_classifier_any

DATA = "shapes:60"  # the conftest checkpoint's data: 60 train / 12 val, 6 classes


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


@pytest.mark.parametrize("method", ["l1_channel", "magnitude"])
def test_prune_finetunes_through_the_trainer(ckpt, tmp_path, method):
    out = tmp_path / f"{method}.pt"
    res = run_prune({"weights": str(ckpt), "method": method, "amount": "0.5", "data": DATA,
                     "out": str(out), "finetune_epochs": "1", "batch": "16"})  # fmt: skip
    run = tmp_path / f"{method}_finetune"
    assert res["finetuned"] == str(run / "best.pt")
    # the Trainer's run folder: resolved config, one metrics row, checkpoints
    assert "epochs: 1" in (run / "config.yaml").read_text()
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 2
    pruned, _ = load_classifier_any(out, torch.device("cpu"))
    tuned, state = load_classifier_any(run / "best.pt", torch.device("cpu"))
    assert state["pruned"]["method"] == method  # val/predict rebuild it at the pruned widths
    sd0, sd1 = pruned.state_dict(), tuned.state_dict()
    assert {k: v.shape for k, v in sd0.items()} == {k: v.shape for k, v in sd1.items()}
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0 if sd0[k].is_floating_point())
    assert len(res["rows"]) == 3 and res["rows"][2]["params"] == res["rows"][1]["params"]
    if method == "magnitude":  # fine-tuning kept every pruned weight at exactly zero
        w0 = {k: v for k, v in sd0.items() if v.dim() > 1}
        assert all(bool((sd1[k][w0[k] == 0] == 0).all()) for k in w0)
        assert res["finetuned_sparsity"] >= res["sparsity"]


def test_prune_finetune_needs_data(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="finetune_epochs needs data="):
        run_prune({"weights": str(ckpt), "out": str(tmp_path / "p.pt"), "finetune_epochs": "1"})


def test_quantize_qat_finetunes_through_fake_quant(ckpt, tmp_path, monkeypatch):
    import cvcraft.engine.quantize as q
    import cvcraft.tasks.compress_tool as tool

    seen = {}
    prepare = q.prepare_qat

    def spy(model, example, backend="x86"):
        qat = prepare(model, example, backend)
        seen["before"] = {k: v.clone() for k, v in qat.state_dict().items() if "weight" in k}
        seen["qat"] = qat
        return qat

    monkeypatch.setattr(tool, "prepare_qat", spy)
    out = tmp_path / "qat.ts"
    res = run_quantize({"weights": str(ckpt), "data": DATA, "mode": "qat", "qat_epochs": "1",
                        "qat_lr": "1e-3", "out": str(out)})  # fmt: skip
    fp32, int8 = res["rows"]
    assert int8["model"] == "int8 qat" and int8["size_mb"] < 0.5 * fp32["size_mb"]
    after = seen["qat"].state_dict()
    assert any(not torch.equal(after[k], v) for k, v in seen["before"].items())  # trained
    n_fq = sum(isinstance(m, torch.ao.quantization.FakeQuantizeBase)
               for m in seen["qat"].modules())  # fmt: skip
    assert n_fq > 0
    model, _ = load_classifier_any(out, torch.device("cpu"))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 6)
    with pytest.raises(ConfigError, match="choose static, dynamic or qat"):
        run_quantize({"weights": str(ckpt), "data": DATA, "mode": "int4"})
