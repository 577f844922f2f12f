"""Anchors: torchvision AnchorGenerator equality, wh-IoU vs box_iou, k-means recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.anchors import (
    anchor_fitness,
    generate_anchors,
    grid_anchors,
    kmeans_anchors,
    ratio_recall,
    wh_iou,
)
from cvcraft.ops.boxes import box_iou


def test_generate_anchors_matches_torchvision_cell_anchors():
    sizes, ratios = (32, 45.3, 64), (0.5, 1.0, 2.0)
    ours = generate_anchors(sizes, ratios)
    ref = AnchorGenerator((sizes,), (ratios,)).cell_anchors[0]
    assert torch.equal(ours, ref)
    # ratio = h / w: the ratio-2 anchors are taller than wide
    h = ours[:, 3] - ours[:, 1]
    w = ours[:, 2] - ours[:, 0]
    assert (h[6:] > w[6:]).all() and (h[:3] < w[:3]).all()


def test_generate_anchors_scales_equal_expanded_sizes():
    scales = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    ours = generate_anchors((32,), (0.5, 1.0, 2.0), scales)
    ref = generate_anchors(tuple(32 * s for s in scales), (0.5, 1.0, 2.0))
    assert torch.equal(ours, ref)


def test_grid_anchors_match_torchvision_two_levels():
    sizes = ((32, 64), (128,))
    ratios = ((0.5, 1.0, 2.0), (1.0, 2.0))
    gen = AnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(2, 3, 64, 96), [(64, 96), (60, 90)])
    feats = [torch.zeros(2, 8, 8, 12), torch.zeros(2, 8, 4, 6)]
    ref = gen(images, feats)
    base = [generate_anchors(s, r) for s, r in zip(sizes, ratios)]
    ours = grid_anchors([(8, 12), (4, 6)], [8, (16, 16)], base)
    assert [len(a) for a in ours] == [8 * 12 * 6, 4 * 6 * 2]
    assert torch.equal(torch.cat(ours), ref[0])
    assert torch.equal(torch.cat(ours), ref[1])


def test_grid_anchors_offset_and_errors():
    base = generate_anchors((16,), (1.0,))
    (a,) = grid_anchors([(2, 3)], [10], [base], offset=0.5)
    centres = (a[:, :2] + a[:, 2:]) / 2
    # row-major: cell (i=1, j=2) is index 5, centred at ((2+.5)*10, (1+.5)*10)
    assert torch.allclose(centres[5], torch.tensor([25.0, 15.0]))
    with pytest.raises(
        ConfigError, match="1 feature sizes, 2 strides and 1 base-anchor sets; give one of each"
    ):
        grid_anchors([(2, 3)], [10, 20], [base])


def test_wh_iou_equals_box_iou_of_corner_aligned_boxes():
    g = torch.Generator().manual_seed(0)
    wh1 = torch.rand(7, 2, generator=g) * 50 + 1
    wh2 = torch.rand(5, 2, generator=g) * 50 + 1
    z1, z2 = torch.zeros(7, 2), torch.zeros(5, 2)
    ref = box_iou(torch.cat([z1, wh1], 1), torch.cat([z2, wh2], 1))
    assert torch.allclose(wh_iou(wh1, wh2).float(), ref, atol=1e-6)


def _clusters(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[12.0, 20.0], [60.0, 40.0], [150.0, 220.0]])
    wh = np.concatenate([c * np.exp(rng.normal(0, 0.03, size=(300, 2))) for c in centres])
    return centres, wh


def test_kmeans_recovers_cluster_centres():
    centres, wh = _clusters()
    fit = kmeans_anchors(wh, 3, seed=1)
    assert fit.anchors.shape == (3, 2)
    assert np.all(np.diff(fit.anchors.prod(1)) > 0)  # sorted by area
    assert np.allclose(fit.anchors, centres, rtol=0.03)
    assert fit.mean_best_iou > 0.9 and fit.bpr == 1.0
    assert fit.mean_best_iou == pytest.approx(anchor_fitness(wh, fit.anchors), abs=1e-5)


def test_kmeans_deterministic_and_genetic_never_worse():
    _, wh = _clusters(3)
    wh = wh * np.random.default_rng(5).uniform(0.5, 2.0, size=wh.shape)  # blur the clusters
    a = kmeans_anchors(wh, 4, seed=7, genetic_generations=60)
    b = kmeans_anchors(wh, 4, seed=7, genetic_generations=60)
    assert np.array_equal(a.anchors, b.anchors) and a.history == b.history
    plain = kmeans_anchors(wh, 4, seed=7)
    tail = a.history[-61:]
    assert all(y >= x for x, y in zip(tail, tail[1:]))
    assert a.mean_best_iou >= plain.mean_best_iou
    assert a.mean_best_iou == pytest.approx(a.history[-1])


def test_ratio_recall_hand_computed():
    anchors = np.array([[10.0, 10.0]])
    wh = np.array([[10.0, 10.0], [39.0, 10.0], [41.0, 10.0], [10.0, 2.0]])
    # ratios vs 10x10: ok, 3.9 ok, 4.1 fails, 1/5 fails
    assert ratio_recall(wh, anchors, thr=4.0) == 0.5


def test_kmeans_rejects_bad_input():
    with pytest.raises(
        DataError, match=r"kmeans_anchors: wh must have shape \(N, 2\), got \(5, 3\)"
    ):
        kmeans_anchors(np.ones((5, 3)), 2)
    with pytest.raises(DataError, match="img_size"):
        kmeans_anchors(np.full((20, 2), 0.1), 3)  # normalized labels without img_size


def test_kmeans_on_coco128_labels(shared_data, require_shared):
    from PIL import Image

    root = shared_data / "coco128"
    label_dir = root / "object_detection" / "labels" / "train2017"
    image_dir = root / "images" / "train2017"
    require_shared(label_dir)
    whs = []
    for txt in sorted(label_dir.glob("*.txt")):
        rows = np.loadtxt(txt, ndmin=2)
        if rows.size == 0:
            continue
        img = image_dir / (txt.stem + ".jpg")
        if not img.exists():  # a couple of label files have no image in this copy
            continue
        w, h = Image.open(img).size
        # letterbox to 640 on the long side, as a YOLO loader would
        whs.append(rows[:, 3:5] * np.array([w, h]) / max(w, h))
    wh = np.concatenate(whs)
    fit = kmeans_anchors(wh, 9, img_size=640, seed=0, genetic_generations=100)
    assert 0.5 < fit.mean_best_iou < 0.9
    assert fit.bpr > 0.9
    assert np.all(fit.anchors > 2) and np.all(fit.anchors < 640)
