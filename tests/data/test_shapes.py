"""Synthetic shapes: determinism, tight boxes, occlusion-aware masks, semantic mask."""

import numpy as np
import torch
import torchvision

from cvcraft.data.shapes import SHAPE_CLASSES, make_shapes, masks_to_boxes, render_scene


def test_make_shapes_deterministic_per_index():
    a = make_shapes(12, imgsz=32, seed=0)
    b = make_shapes(12, imgsz=32, seed=0)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    prefix = make_shapes(5, imgsz=32, seed=0)  # image i depends only on (seed, split, i)
    np.testing.assert_array_equal(prefix.images, a.images[:5])
    assert not np.array_equal(a.images[0], a.images[1])
    val = make_shapes(12, imgsz=32, seed=0, split="val")
    other = make_shapes(12, imgsz=32, seed=1)
    assert not any(np.array_equal(val.images[i], a.images[i]) for i in range(12))
    assert not np.array_equal(other.images, a.images)
    assert a.classes == list(SHAPE_CLASSES) and a.images.shape == (12, 32, 32, 3)
    assert set(make_shapes(120, imgsz=32).labels.tolist()) == set(range(len(SHAPE_CLASSES)))


def test_masks_to_boxes_matches_torchvision():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 20, 30)) > 0.97
    masks[:, 3, 4] = True
    ours = masks_to_boxes(masks)
    tv = torchvision.ops.masks_to_boxes(torch.from_numpy(masks)).numpy()
    # torchvision gives the max pixel index; ours the pixel edge (max index + 1)
    np.testing.assert_array_equal(ours, tv + np.array([0, 0, 1, 1], np.float32))


def test_scene_targets_consistent():
    for seed in range(20):
        s = render_scene(np.random.default_rng(seed), 64, n_objects=(2, 6))
        n = len(s.boxes)
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (n, 64, 64) and s.masks.dtype == bool and n >= 1
        # occlusion-aware: visible masks never overlap, and cover exactly the labelled pixels
        assert s.masks.sum(0).max() <= 1
        np.testing.assert_array_equal(s.masks.any(0), s.semantic_mask > 0)
        for k in range(n):
            ys, xs = np.nonzero(s.masks[k])
            assert xs.size > 0
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # tight, pixel edges
            np.testing.assert_array_equal(s.boxes[k], np.array(box, np.float32))
            assert np.all(s.semantic_mask[s.masks[k]] == s.box_labels[k] + 1)
        assert s.boxes.dtype == np.float32 and s.box_labels.dtype == np.int64


def test_single_object_label_and_contrast():
    diffs = []
    for seed in range(40):
        s = render_scene(np.random.default_rng(seed), 32, size_range=(0.28, 0.46), min_visible=0)
        assert s.label == int(s.box_labels[0]) and len(s.boxes) == 1
        inside = s.image[s.masks[0]].astype(float).mean(0)
        x1, y1, x2, y2 = s.boxes[0].astype(int)
        ring = np.zeros((32, 32), bool)
        ring[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True
        ring &= ~s.masks[0]
        if ring.any():
            diffs.append(np.linalg.norm(inside - s.image[ring].astype(float).mean(0)))
        # objects are big enough to recognize at 32x32
        assert max(x2 - x1, y2 - y1) >= 12
    assert np.median(diffs) > 50
