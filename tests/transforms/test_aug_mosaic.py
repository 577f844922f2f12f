"""Mosaic (4/9) and detection MixUp: boxes follow the known placement and equal the
bounding boxes of the output instance masks; pixels and semantic masks are the sources'."""

import numpy as np
import pytest

from cvcraft.data.shapes import render_scene
from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample
from cvcraft.transforms.mosaic import DetectionMixUp, Mosaic, fit_into
from cvcraft.transforms.multi_sample import build_multi_sample, run_multi_sample


def _scenes(n, size, seed=0, hw=None):
    return [
        render_scene(np.random.default_rng([seed, i]), hw or size, (3, 6), size_range=(0.06, 0.2))
        for i in range(n)
    ]


def _expected_boxes(samples, placements):
    """Hand mapping: box * scale + offset, clipped to its cell -> (boxes, labels, uncut)."""
    out, labels, inside = [], [], []
    for smp, pl in zip(samples, placements):
        sy, sx = pl["scale"]
        ox, oy = pl["offset"]
        x0, y0, x1, y1 = pl["cell"]
        b = smp.boxes * np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy])
        c = b.copy()
        c[:, [0, 2]] = c[:, [0, 2]].clip(x0, x1)
        c[:, [1, 3]] = c[:, [1, 3]].clip(y0, y1)
        keep = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
        if smp.masks is not None and (sy, sx) == (1.0, 1.0):
            # an object whose box reaches into the cell but whose pixels do not is dropped
            win = smp.masks[:, max(y0 - oy, 0) : y1 - oy, max(x0 - ox, 0) : x1 - ox]
            keep &= win.any((1, 2))
        out.append(c[keep])
        labels.append(smp.box_labels[keep])
        inside.append((b == c).all(1)[keep])
    return np.concatenate(out), np.concatenate(labels), np.concatenate(inside)


@pytest.mark.parametrize("n", [4, 9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_follow_placement_without_masks(n, seed):
    s = 96
    size = s if n == 4 else 64  # scale exactly 1: long side = image_scale * s
    samples = [x.replace(masks=None) for x in _scenes(n, size, seed)]
    out = Mosaic(s, n=n, min_area=0.0)(samples, np.random.default_rng(seed))
    assert out.image.shape == (s, s, 3)
    boxes, labels, _ = _expected_boxes(samples, out.meta["mosaic"])
    np.testing.assert_allclose(out.boxes, boxes, atol=1e-4)
    np.testing.assert_array_equal(out.box_labels, labels)


@pytest.mark.parametrize("n", [4, 9])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_boxes_equal_mask_boxes_and_source_boxes(n, seed):
    s = 96
    size = s if n == 4 else 64
    samples = _scenes(n, size, seed)
    out = Mosaic(s, n=n, min_area=0.0)(samples, np.random.default_rng(seed))
    assert out.masks.shape == (len(out.boxes), s, s)
    assert out.masks.any((1, 2)).all()
    # every output box is the tight box of its output instance mask
    np.testing.assert_array_equal(out.boxes, masks_to_boxes(out.masks))
    # objects not cut by their cell keep exactly the source box moved by the placement
    boxes, labels, inside = _expected_boxes(samples, out.meta["mosaic"])
    np.testing.assert_array_equal(out.box_labels, labels)
    assert inside.any()
    np.testing.assert_allclose(out.boxes[inside], boxes[inside], atol=1e-4)


def test_pixels_semantic_and_layout_2x2():
    s = 64
    samples = _scenes(4, 64, 5)
    out = Mosaic(s, n=4, fill=114)(samples, np.random.default_rng(5))
    pl = out.meta["mosaic"]
    cx, cy = pl[0]["cell"][2], pl[0]["cell"][3]  # the mosaic centre
    assert 16 <= cx <= 48 and 16 <= cy <= 48
    # YOLOv5 layout: the four images meet at the centre with their inner corners
    assert [p["offset"] for p in pl] == [(cx - 64, cy - 64), (cx, cy - 64), (cx - 64, cy), (cx, cy)]
    for smp, p in zip(samples, pl):
        x0, y0, x1, y1 = p["cell"]
        ox, oy = p["offset"]
        src = smp.image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        np.testing.assert_array_equal(out.image[y0:y1, x0:x1], src)
        sem = smp.semantic_mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        np.testing.assert_array_equal(out.semantic_mask[y0:y1, x0:x1], sem)


def test_padding_is_fill_and_semantic_ignore():
    s = 64
    samples = _scenes(4, 64, 0, hw=(32, 64))  # wide images leave grey bands
    out = Mosaic(s, n=4, fill=114)(samples, np.random.default_rng(0))
    pad = (out.image == 114).all(2) & (out.semantic_mask == 255)
    assert pad.sum() > 0
    # ignore exactly where no source pixel landed: count = canvas - covered area
    covered = 0
    for p in out.meta["mosaic"]:
        x0, y0, x1, y1 = p["cell"]
        ox, oy = p["offset"]
        w = min(x1, ox + 64) - max(x0, ox)
        h = min(y1, oy + 32) - max(y0, oy)
        covered += max(w, 0) * max(h, 0)
    assert int((out.semantic_mask == 255).sum()) == s * s - covered


def test_downscaled_inputs():
    s = 64
    samples = _scenes(4, 128, 3)  # scale 0.5
    out = Mosaic(s, n=4, min_area=0.0)(samples, np.random.default_rng(3))
    assert all(p["scale"] == (0.5, 0.5) for p in out.meta["mosaic"])
    np.testing.assert_array_equal(out.boxes, masks_to_boxes(out.masks))
    boxes, labels, inside = _expected_boxes(samples, out.meta["mosaic"])
    assert inside.sum() >= 3
    # each uncut object has an output box of its class within 1 px of the scaled source box
    # (nearest-resized masks can gain or lose one edge row)
    for b, lab in zip(boxes[inside], labels[inside]):
        diff = np.abs(out.boxes[out.box_labels == lab] - b).max(1)
        assert diff.min() <= 1.0


def test_keypoints_follow_and_leave_cell_invisible():
    s = 64
    samples = []
    for i in range(4):
        kp = np.array([[[10.0, 10.0, 2.0], [63.0, 63.0, 2.0]]], np.float32)
        samples.append(
            Sample(
                np.full((64, 64, 3), i, np.uint8),
                boxes=np.array([[5.0, 5.0, 60.0, 60.0]]),
                box_labels=[i],
                keypoints=kp,
            )
        )
    out = Mosaic(s)(samples, np.random.default_rng(0))
    for k, p in enumerate(out.meta["mosaic"]):
        ox, oy = p["offset"]
        x0, y0, x1, y1 = p["cell"]
        xy = samples[k].keypoints[0, :, :2] + [ox, oy]
        np.testing.assert_allclose(out.keypoints[k, :, :2], xy)
        vis = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        np.testing.assert_array_equal(out.keypoints[k, :, 2] > 0, vis)


def test_run_multi_sample_is_deterministic_and_draws_partners():
    scenes = _scenes(10, 64, 0)
    t = build_multi_sample({"name": "mosaic", "size": 64})
    a = run_multi_sample(t, lambda i: scenes[i], 3, 10, np.random.default_rng([0, 1, 3]))
    b = run_multi_sample(t, lambda i: scenes[i], 3, 10, np.random.default_rng([0, 1, 3]))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_detection_mixup():
    a, b = _scenes(2, 64, 7)
    t = DetectionMixUp(alpha=32.0)
    out = t([a, b], np.random.default_rng(0))
    lam = out.meta["mixup_lam"]
    assert 0.2 < lam < 0.8
    ref = np.rint(a.image * np.float32(lam) + b.image * np.float32(1 - lam)).astype(np.uint8)
    np.testing.assert_array_equal(out.image, ref)
    np.testing.assert_array_equal(out.boxes, np.concatenate([a.boxes, b.boxes]))
    np.testing.assert_array_equal(out.box_labels, np.concatenate([a.box_labels, b.box_labels]))
    assert out.masks.shape[0] == len(out.boxes) and out.semantic_mask is None


def test_fit_into_scales_boxes():
    big = _scenes(1, 64, 1, hw=(128, 64))[0]
    out = fit_into(big, 64, 64)
    assert out.image.shape == (64, 64, 3)
    np.testing.assert_allclose(out.boxes, big.boxes * 0.5, atol=1e-5)
    assert (out.image[:, 32:] == 114).all() and (out.semantic_mask[:, 32:] == 255).all()


def test_errors():
    with pytest.raises(ConfigError, match="Mosaic: n must be 4 or 9, got 5"):
        Mosaic(64, n=5)
    scenes = _scenes(4, 32)
    with pytest.raises(DataError, match="needs 4 samples"):
        Mosaic(64)(scenes[:3], np.random.default_rng(0))
    scenes[1] = scenes[1].replace(masks=None)
    with pytest.raises(DataError, match="masks"):
        Mosaic(64)(scenes, np.random.default_rng(0))


def test_split_and_run_pipeline_from_augment_spec():
    from cvcraft.transforms.multi_sample import run_pipeline
    from cvcraft.transforms.pipelines import split_pipeline

    multi, per_item = split_pipeline([{"name": "mosaic", "size": 48}, {"name": "mixup"}, "hflip"])
    assert [type(t).__name__ for t in multi] == ["Mosaic", "DetectionMixUp"]
    assert len(per_item) == 1
    scenes = _scenes(6, 48, 2)
    get = scenes.__getitem__
    out = run_pipeline(multi, per_item, get, 1, 6, np.random.default_rng([0, 0, 1]))
    again = run_pipeline(multi, per_item, get, 1, 6, np.random.default_rng([0, 0, 1]))
    assert out.image.shape == (48, 48, 3) and 0.2 < out.meta["mixup_lam"] < 0.8
    np.testing.assert_array_equal(out.boxes, again.boxes)
    np.testing.assert_array_equal(out.boxes, masks_to_boxes(out.masks))  # hflip kept them tight
    with pytest.raises(ConfigError, match="must come before"):
        split_pipeline(["hflip", {"name": "mosaic", "size": 48}])
