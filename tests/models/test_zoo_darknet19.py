"""Darknet-19 (no torchvision/timm twin): parameter count and multiply-adds computed by hand
from the paper's Table 6, its quoted 5.58 BFLOPs at 224, a hand-composed forward, taps."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.profile import count_macs

# YOLO9000 Table 6, top to bottom: ("C", filters, size) conv, "M" 2x2/2 max-pool.
TABLE6 = [("C", 32, 3), "M", ("C", 64, 3), "M", ("C", 128, 3), ("C", 64, 1), ("C", 128, 3), "M",
          ("C", 256, 3), ("C", 128, 1), ("C", 256, 3), "M", ("C", 512, 3), ("C", 256, 1),
          ("C", 512, 3), ("C", 256, 1), ("C", 512, 3), "M", ("C", 1024, 3), ("C", 512, 1),
          ("C", 1024, 3), ("C", 512, 1), ("C", 1024, 3)]  # fmt: skip


def _table_counts(side: int, classes: int = 1000) -> tuple[int, int]:
    params = macs = 0
    c = 3
    for row in TABLE6:
        if row == "M":
            side //= 2
            continue
        _, f, k = row
        params += k * k * c * f + 2 * f  # conv (no bias) + BN gamma/beta
        macs += k * k * c * f * side * side
        c = f
    return params + c * classes + classes, macs + c * classes  # classifier on pooled features


def test_params_and_macs_equal_table6():
    with torch.device("meta"):
        m = create_model("darknet19")
    params, macs = _table_counts(224)
    assert sum(1 for r in TABLE6 if r != "M") + 1 == 19  # 18 convs + the classifier
    assert model_info(m)["params"] == params == 20_842_376
    counted = count_macs(m, (3, 224, 224))
    assert counted["conv"] + counted["linear"] == macs
    # the paper: 5.58 billion operations (2 per multiply-add; its classifier ran at 7x7)
    assert 2 * (macs + 1024 * 1000 * 48) / 1e9 == pytest.approx(5.58, rel=0.01)


def test_forward_equals_hand_composed_table(randomize_bn):
    torch.manual_seed(0)
    m = randomize_bn(create_model("darknet19", num_classes=7, width_mult=0.25)).eval()
    x = torch.randn(2, 3, 64, 64)
    convs = [c for c in m.modules() if type(c).__name__ == "ConvBNAct"]
    with torch.no_grad():
        y, i = x, 0
        for row in TABLE6:
            if row == "M":
                y = F.max_pool2d(y, 2, 2)
                continue
            blk = convs[i]
            assert blk.conv.kernel_size == (row[2], row[2])
            assert blk.conv.out_channels == max(8, round(row[1] * 0.25))
            y = F.leaky_relu(blk.bn(blk.conv(y)), 0.1)
            i += 1
        torch.testing.assert_close(m(x), m.fc(y.mean((2, 3))))
    assert i == len(convs) == 18


def test_feature_taps_shapes_and_errors():
    torch.manual_seed(0)
    feats = create_model("darknet19", width_mult=0.25, features_only=True, out_indices=(4, 5))
    a, b = feats(torch.randn(1, 3, 64, 64))
    assert a.shape == (1, 128, 4, 4) and b.shape == (1, 256, 2, 2)
    assert feats.reductions() == [16, 32]
    with pytest.raises(ConfigError, match="width_mult"):
        create_model("darknet19", width_mult=-1)
