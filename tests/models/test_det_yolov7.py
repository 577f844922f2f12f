"""YOLOv7: backbone + neck parameter counts against the official training builds and the
paper's table (ultralytics has no YOLOv7), exact RepConv re-parameterisation of the whole
model, the auxiliary head with lead-guided coarse/fine assignment, and training steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.nn.fuse import fuse_model
from cvcraft.nn.repvgg import reparameterize_model
from cvcraft.ops.assigners import simota_assign

# Official yolov7 (cfg/training/yolov7.yaml) "Model Summary: 415 layers, N parameters" lines
# of public training logs, by class count; the anchor head (IDetect) is 3 anchors x (5 + nc)
# per level from 256/512/1024 channels, plus ImplicitA (1792) and ImplicitM (9 (5 + nc)).
OFFICIAL_TRAIN_PARAMS = {1: 37_196_556, 4: 37_212_738, 8: 37_234_314}
LEAD_CHANNELS = (256, 512, 1024)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _idetect(nc: int, implicit: bool = True) -> int:
    out = 3 * (5 + nc)
    convs = sum((c + 1) * out for c in LEAD_CHANNELS)
    return convs + (sum(LEAD_CHANNELS) + 3 * out if implicit else 0)


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return create_model("yolov7", num_classes=80)


def test_trunk_equals_official_training_builds(full):
    trunk = _count(full.backbone) + _count(full.neck)
    assert trunk == 37_162_400
    for nc, official in OFFICIAL_TRAIN_PARAMS.items():
        assert trunk + _idetect(nc) == official


def test_fused_size_is_the_papers_36_9m(full):
    import copy

    m = copy.deepcopy(full)
    reparameterize_model(m.neck)
    trunk = _count(fuse_model(m.backbone)) + _count(fuse_model(m.neck))
    total = trunk + _idetect(80, implicit=False)  # deploy: implicit layers folded away
    assert round(total / 1e6, 1) == 36.9  # Wang et al. 2022, Table 1: YOLOv7 36.9M


def test_reparameterised_model_equals_training_form_and_drops_aux():
    torch.manual_seed(0)
    model = create_model("yolov7_n", num_classes=3, width=0.125).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        reparameterize_model(model)
        after = model(x)
    assert set(after) == {"box", "cls", "anchors", "strides"}  # no aux at inference
    assert all(r.fused is not None for r in model.neck.rep)
    torch.testing.assert_close(after["cls"], before["cls"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after["box"], before["box"], rtol=1e-4, atol=1e-4)


def _batch():
    x = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2, 2, 14, 18]]),
         "labels": torch.tensor([0, 1])},
    ]  # fmt: skip
    return x, targets


def test_aux_loss_is_lead_guided():
    torch.manual_seed(0)
    model = create_model("yolov7_n", num_classes=2, width=0.125).train()
    x, targets = _batch()
    with torch.no_grad():
        _check_lead_guided(model, model(x), targets)


def _check_lead_guided(model, out, targets):
    assert out["aux_box"].shape == out["box"].shape and out["aux_cls"].shape == out["cls"].shape
    total, items = model.loss(out, targets)
    lead, _ = model.criterion(out, targets)
    aux = {"box": out["aux_box"], "cls": out["aux_cls"], "anchors": out["anchors"],
           "strides": out["strides"]}  # fmt: skip
    aux_loss, _ = model.aux_criterion(aux, targets, guide=out)
    assert float(total) == pytest.approx(float(lead + 0.25 * aux_loss), rel=1e-6)
    assert items["aux"] == pytest.approx(0.25 * float(aux_loss), rel=1e-6)
    # guided by itself == unguided; guided by a different lead changes the aux targets
    self_guided, _ = model.aux_criterion(aux, targets, guide=aux)
    unguided, _ = model.aux_criterion(aux, targets)
    assert float(self_guided) == pytest.approx(float(unguided), rel=1e-7)
    other = dict(out, cls=-out["cls"], box=out["box"].flip(-1))
    moved, _ = model.aux_criterion(aux, targets, guide=other)
    assert float(moved) != pytest.approx(float(aux_loss), rel=1e-4)


def test_coarse_labels_have_at_least_the_fine_positives():
    torch.manual_seed(0)
    model = create_model("yolov7_n", num_classes=2, width=0.125).train()
    x, targets = _batch()
    out = model(x)
    boxes, scores = model.decode({k: v.detach() for k, v in out.items()})
    fine_kw, coarse_kw = model.criterion.simota_kw, model.aux_criterion.simota_kw
    assert coarse_kw == {"center_radius": 5.0, "candidate_topk": 20}
    assert fine_kw == {"center_radius": 2.5, "candidate_topk": 10}
    for i, t in enumerate(targets):
        args = (scores[i], boxes[i], out["anchors"], t["boxes"], t["labels"])
        kw = {"strides": out["strides"][:, 0]}
        fine = simota_assign(*args, **kw, **fine_kw).gt_index >= 0
        coarse = simota_assign(*args, **kw, **coarse_kw).gt_index >= 0
        assert coarse.sum() >= fine.sum() > 0


@pytest.mark.parametrize("assigner", ["simota", "tal"])
def test_training_steps_run(assigner):
    torch.manual_seed(0)
    model = create_model("yolov7_n", num_classes=2, width=0.125, assigner=assigner).train()
    assert model.aux_criterion.assigner == assigner
    assert model.aux_criterion.assign_kw["topk"] == 20  # TAL's coarse labels: 2x top-k
    x, targets = _batch()
    opt = torch.optim.AdamW(model.parameters(), 2e-3)
    for _ in range(3):
        total, items = model.loss(model(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert set(items) == {"box", "cls", "dfl", "aux"}
    assert all(math.isfinite(v) for v in items.values()) and items["box"] > 0
    assert model.aux_head.cls[0][0].conv.weight.grad.abs().sum() > 0  # aux head trains


def test_e_elan_and_options():
    plain = create_model("yolov7_n", num_classes=2, width=0.125, aux=False)
    wide = create_model("yolov7_n", num_classes=2, width=0.125, aux=False, cardinality=2)
    assert plain.aux_head is None
    elan = plain.backbone.stage2
    assert _count(wide.backbone.stage2) == 2 * _count(elan)  # two stacks per E-ELAN
    out = wide.eval()(torch.rand(1, 3, 64, 64))
    assert out["cls"].shape == (1, 64 + 16 + 4, 2)
    with pytest.raises(ConfigError, match="width"):
        create_model("yolov7_n", width=0)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("yolov7_n", num_classes=0)
    with pytest.raises(ConfigError, match="multiples of 32"):
        plain.eval()(torch.rand(1, 3, 64, 48))
