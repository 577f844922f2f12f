"""The fusion evaluator: per-image metrics against scikit-image / scikit-learn oracles, and
merging split states equals evaluating everything in one process."""

import math

import numpy as np
import pytest
import skimage.measure as skme
import skimage.metrics as skm
import torch
from sklearn.metrics import mutual_info_score
from test_image_metrics import _qabf_loop  # the same folder: the paper's pixel loop

from cvcraft.errors import DataError
from cvcraft.metrics.fusion import FUSION_METRICS, FusionEvaluator, fusion_metrics, to_uint8


def _images(seed, n=5, h=24, w=29):
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.random((n, 1, h, w))).float() for _ in range(3)]


def _outputs(f, a, b, sizes=None):
    out = {"fused": f, "infrared": a, "visible": b}
    if sizes is not None:
        out["sizes"] = sizes
    return out


def test_per_image_metrics_match_oracles():
    f, a, b = (to_uint8(x[0, 0]) for x in _images(0))
    m = fusion_metrics(a, b, f)
    assert m["en"] == pytest.approx(skme.shannon_entropy(f, base=2), 1e-12)
    assert m["sd"] == pytest.approx(np.std(f.astype(float)), 1e-12)
    mi = mutual_info_score(a.ravel(), f.ravel()) + mutual_info_score(b.ravel(), f.ravel())
    assert m["mi"] == pytest.approx(mi / math.log(2), 1e-9)
    kw = {"data_range": 255, "gaussian_weights": True, "sigma": 1.5,
          "use_sample_covariance": False}  # fmt: skip
    ref = (skm.structural_similarity(a, f, **kw) + skm.structural_similarity(b, f, **kw)) / 2
    assert m["ssim"] == pytest.approx(ref, abs=1e-10)
    err = (skm.mean_squared_error(a, f) + skm.mean_squared_error(b, f)) / 2
    assert m["mse"] == pytest.approx(err, 1e-12)
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / err), 1e-12)
    assert set(m) == set(FUSION_METRICS)
    # Q^AB/F against the pixel loop of the paper (not only 0 <= q <= 1): checks the evaluator
    # passes the fused image as the third argument (Q is symmetric in the sources only)
    assert m["qabf"] == pytest.approx(_qabf_loop(a, b, f), rel=1e-10)
    assert m["qabf"] != pytest.approx(_qabf_loop(a, f, b), rel=1e-3)


def test_merge_of_split_states_equals_one_pass():
    f, a, b = _images(1)
    whole = FusionEvaluator()
    whole.update(None, _outputs(f, a, b))
    parts = [FusionEvaluator(), FusionEvaluator()]
    parts[0].update(None, _outputs(f[:2], a[:2], b[:2]))
    parts[1].update(None, _outputs(f[2:], a[2:], b[2:]))
    merged = FusionEvaluator()
    for p in parts:
        merged.merge(p.state_dict())
    got, want = merged.compute(), whole.compute()
    assert got["val_images"] == want["val_images"] == 5
    for k in FUSION_METRICS:
        assert got[k] == pytest.approx(want[k], 1e-12)
        per_image = [fusion_metrics(*(to_uint8(x[i, 0]) for x in (a, b, f)))[k] for i in range(5)]
        assert want[k] == pytest.approx(np.mean(per_image), 1e-12)
    whole.reset()
    assert whole.compute()["val_images"] == 0


def test_sizes_crop_padding_and_bad_input():
    f, a, b = _images(2, n=1)
    cropped = FusionEvaluator()
    cropped.update(None, _outputs(f, a, b, torch.tensor([[20, 25]])))
    direct = fusion_metrics(*(to_uint8(x[0, 0, :20, :25]) for x in (a, b, f)))
    assert cropped.compute()["qabf"] == pytest.approx(direct["qabf"], 1e-12)
    g = np.zeros((8, 8), np.uint8)
    with pytest.raises(DataError, match="uint8 HxW"):
        fusion_metrics(g, g, g.astype(np.float32))
    with pytest.raises(DataError, match="differ in size"):
        fusion_metrics(g, g, np.zeros((8, 9), np.uint8))
