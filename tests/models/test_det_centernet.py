"""CenterNet: the Gaussian radius against a bisection on the three IoU cases, the heatmap
targets against a per-object loop, 3x3 max-pool peaks against a brute-force local-maximum
loop (ties included), the focal loss against an elementwise loop, decoding of perfect
outputs back to the boxes, and training steps."""

from __future__ import annotations

import math

import pytest
import torch

from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.heatmap_focal import heatmap_focal_loss
from cvcraft.models import create_model
from cvcraft.ops.centre_heatmap import centre_targets, gaussian_radius, heatmap_peaks

TINY = {"width": 0.25, "backbone_kw": {"widths": (16, 32, 64, 128)}}


def _iou_cases(w: float, h: float, r: float) -> tuple[float, float, float]:
    """IoU with the gt after moving both corners by r: translated, shrunk, grown."""
    inter = max(w - r, 0) * max(h - r, 0)
    translated = inter / (2 * w * h - inter)
    shrunk = max(w - 2 * r, 0) * max(h - 2 * r, 0) / (w * h)
    grown = w * h / ((w + 2 * r) * (h + 2 * r))
    return translated, shrunk, grown


def _radius_by_bisection(w: float, h: float, m: float) -> float:
    """Largest r with all three IoUs >= m (each falls monotonically in r)."""
    lo, hi = 0.0, max(w, h)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if min(_iou_cases(w, h, mid)) >= m else (lo, mid)
    return lo


@pytest.mark.parametrize("m", [0.3, 0.7, 0.9])
def test_gaussian_radius_equals_bisection(m):
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(40, 2, generator=g, dtype=torch.float64) * 60 + 0.5
    wh = torch.cat([wh, torch.tensor([[1.0, 1.0], [10.0, 10.0], [100.0, 3.0]]).double()])
    ours = gaussian_radius(wh, m)
    ref = torch.tensor(
        [_radius_by_bisection(float(w), float(h), m) for w, h in wh], dtype=torch.float64
    )
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    assert gaussian_radius(torch.zeros(1, 2), m).item() == 0.0
    with pytest.raises(ConfigError, match="min_overlap"):
        gaussian_radius(wh, 1.0)


def _reference_code_radius(w: float, h: float, m: float) -> float:
    """CornerNet's reference-code radius: (b + sqrt(b^2 - 4ac)) / 2 for each case's (a, b, c)."""
    cases = [(1, h + w, w * h * (1 - m) / (1 + m)), (4, 2 * (h + w), (1 - m) * w * h),
             (4 * m, -2 * m * (h + w), (m - 1) * w * h)]  # fmt: skip
    return min((b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / 2 for a, b, c in cases)


def test_reference_rule_equals_the_reference_code_formula():
    wh = torch.tensor([[3.0, 4.0], [10.0, 10.0], [25.5, 7.25], [1.0, 60.0]], dtype=torch.float64)
    ours = gaussian_radius(wh, 0.7, rule="reference")
    ref = torch.tensor([_reference_code_radius(w, h, 0.7) for w, h in wh.tolist()],
                       dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert (ours > gaussian_radius(wh, 0.7)).all()  # softer targets than the exact roots
    with pytest.raises(ConfigError, match="rule"):
        gaussian_radius(wh, 0.7, rule="x")


def test_centre_targets_equal_a_per_object_loop():
    boxes = torch.tensor([[8.0, 8.0, 40.0, 36.0], [10.0, 12.0, 30.0, 44.0], [0, 0, 6, 5.0],
                          [44.0, 30.0, 64.0, 64.0]])  # fmt: skip
    labels = torch.tensor([1, 1, 0, 2])
    heat, cell, wh, off = centre_targets(boxes, labels, 3, (16, 16), 4)
    ref = torch.zeros(3, 16, 16)
    for b, lab in zip(boxes / 4, labels):
        cx, cy = float(b[0] + b[2]) / 2, float(b[1] + b[3]) / 2
        px, py = int(math.floor(cx)), int(math.floor(cy))
        r = math.floor(_radius_by_bisection(float(b[2] - b[0]), float(b[3] - b[1]), 0.7))
        sigma = (2 * r + 1) / 6
        for y in range(16):
            for x in range(16):
                if abs(x - px) <= r and abs(y - py) <= r:
                    v = math.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))
                    ref[lab, y, x] = max(ref[lab, y, x], v)
        assert heat[lab, py, px] == 1.0
    torch.testing.assert_close(heat, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wh, (boxes[:, 2:] - boxes[:, :2]) / 4)
    assert ((off >= 0) & (off < 1)).all() and cell.dtype == torch.int64
    with pytest.raises(DataError, match="boxes"):
        centre_targets(boxes[:, :3], labels, 3, (16, 16), 4)


def _brute_peaks(heat: torch.Tensor) -> torch.Tensor:
    """Cells >= every cell of their 3x3 window (outside the map does not count)."""
    b, c, h, w = heat.shape
    keep = torch.zeros_like(heat, dtype=torch.bool)
    for i in range(b):
        for k in range(c):
            for y in range(h):
                for x in range(w):
                    win = heat[i, k, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                    keep[i, k, y, x] = bool(heat[i, k, y, x] >= win.max())
    return keep


def test_peaks_equal_brute_force_local_maxima_with_ties():
    g = torch.Generator().manual_seed(0)
    heat = (torch.rand(2, 3, 7, 9, generator=g) * 4).round() / 4  # many exact ties
    heat[0, 0, 2:4, 2:4] = 2.0  # a 2x2 plateau: all four are local maxima
    keep = _brute_peaks(heat)
    k = int(keep.reshape(2, -1).sum(1).min())
    scores, classes, ys, xs = heatmap_peaks(heat, k)
    assert scores.shape == (2, k)
    for i in range(2):
        got = heat[i, classes[i], ys[i], xs[i]]
        torch.testing.assert_close(scores[i], got)
        assert keep[i, classes[i], ys[i], xs[i]].all()  # every returned cell is a peak
        expected = heat[i][keep[i]].sort(descending=True).values[:k]  # the k best peak values
        torch.testing.assert_close(scores[i], expected)
    s, c, y, x = heatmap_peaks(heat[:1, :1], 4)
    assert set(zip(y.tolist()[0], x.tolist()[0])) == {(2, 2), (2, 3), (3, 2), (3, 3)}
    with pytest.raises(ConfigError, match="odd"):
        heatmap_peaks(heat, 5, kernel=2)
    with pytest.raises(DataError, match="B, C, h, w"):
        heatmap_peaks(heat[0], 5)


def test_focal_loss_equals_elementwise_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64)
    target = torch.rand(2, 2, 4, 5, generator=g, dtype=torch.float64) * 0.9
    target[0, 1, 2, 3] = target[1, 0, 0, 0] = target[1, 1, 3, 4] = 1.0
    total, npos = 0.0, 0
    for lg, t in zip(logits.flatten().tolist(), target.flatten().tolist()):
        p = 1 / (1 + math.exp(-lg))
        if t == 1.0:
            total += (1 - p) ** 2 * math.log(p)
            npos += 1
        else:
            total += (1 - t) ** 4 * p**2 * math.log(1 - p)
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(-total / npos, rel=1e-10)
    with pytest.raises(DataError, match="differ"):
        heatmap_focal_loss(logits, target[..., :3])


def _batch():
    x = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2, 2, 14, 18]]),
         "labels": torch.tensor([0, 2])},
    ]  # fmt: skip
    return x, targets


def test_perfect_outputs_decode_to_the_boxes():
    model = create_model("centernet_resnet18", num_classes=3, **TINY).eval()
    _, targets = _batch()
    heat = torch.full((2, 3, 16, 16), -20.0)
    wh, off = torch.zeros(2, 2, 16, 16), torch.zeros(2, 2, 16, 16)
    for i, t in enumerate(targets):
        hm, cell, size, o = centre_targets(t["boxes"], t["labels"], 3, (16, 16), 4)
        heat[i] = torch.where(hm == 1, 20.0, -20.0)
        wh[i, :, cell[:, 1], cell[:, 0]] = size.T
        off[i, :, cell[:, 1], cell[:, 0]] = o.T
    dets = model.postprocess({"heat": heat, "wh": wh, "offset": off}, conf=0.5)
    for d, t in zip(dets, targets):
        order = torch.argsort(d["labels"])
        torch.testing.assert_close(d["boxes"][order], t["boxes"][torch.argsort(t["labels"])])
    perfect = {"heat": heat, "wh": wh, "offset": off}
    total, items = model.loss(perfect, targets)
    assert items["wh"] == pytest.approx(0, abs=1e-6) and items["offset"] == pytest.approx(
        0, abs=1e-6
    )


def test_training_steps_reduce_the_loss_and_errors():
    torch.manual_seed(0)
    model = create_model("centernet_resnet18", num_classes=3, **TINY).train()
    x, targets = _batch()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    losses = []
    for _ in range(8):
        total, items = model.loss(model(x), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert set(items) == {"heat", "wh", "offset"} and losses[-1] < losses[0]
    with pytest.raises(ConfigError, match="multiples of 32"):
        model(torch.rand(1, 3, 64, 48))
    with pytest.raises(ConfigError, match="num_classes"):
        model.loss(model(x), [{**t, "labels": t["labels"] + 5} for t in targets])
    with pytest.raises(ConfigError, match="depth"):
        from cvcraft.models.detection.centernet import CenterNet

        CenterNet(depth=20)
