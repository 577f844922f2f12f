"""Property tests over many seeds for every geometric op: a box rasterized to a mask is
transformed together with the image; the transformed box must match the bounding box of
the transformed mask (exact for flips, integer translation, integer scale and crops; IoU
>= 0.9 for rotation/shear/perspective), keypoints land on the transformed pixel, empty
samples pass through, boxes leaving the image are dropped, same seed -> same output."""

import copy

import numpy as np
import pytest

from cvcraft.structures import Sample
from cvcraft.transforms import (
    Affine,
    CenterCrop,
    HorizontalFlip,
    Letterbox,
    PadToSize,
    RandomAffine,
    RandomCropKeepBoxes,
    RandomPerspective,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    VerticalFlip,
)

H, W = 96, 128
SEEDS = range(25)


def random_sample(seed: int, n: int = 3, margin: int = 30, min_side: int = 24) -> Sample:
    """n integer boxes inside the central region, each rasterized to an instance mask; a 3x3
    marker blob in the green channel at each box's keypoint (a pixel centre)."""
    rng = np.random.default_rng(seed)
    x1 = rng.integers(margin, W - margin - min_side, n)
    y1 = rng.integers(margin // 2, H - margin // 2 - min_side, n)
    x2 = np.minimum(x1 + rng.integers(min_side, min_side + 20, n), W - margin // 2)
    y2 = np.minimum(y1 + rng.integers(min_side, min_side + 16, n), H - margin // 3)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    masks = np.zeros((n, H, W), bool)
    for i, (a, b, c, d) in enumerate(boxes.astype(int)):
        masks[i, b:d, a:c] = True
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = masks.any(0) * 200
    kx = rng.integers(x1 + 2, x2 - 2)
    ky = rng.integers(y1 + 2, y2 - 2)
    kp = np.zeros((n, 1, 3), np.float32)
    kp[:, 0] = np.stack([kx + 0.5, ky + 0.5, np.full(n, 2.0)], 1)
    return Sample(
        img,
        boxes=boxes,
        box_labels=np.arange(n),
        masks=masks,
        semantic_mask=masks.any(0).astype(np.uint8),
        keypoints=kp,
    )


def mask_box(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def iou(a, b) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


EXACT = [
    HorizontalFlip(1.0),
    VerticalFlip(1.0),
    Affine(translate=(7, -5)),
    Affine(translate=(-13, 9)),
    Resize((2 * H, 2 * W)),
    CenterCrop((80, 100)),
    PadToSize((120, 150), position="random"),
    RandomCropKeepBoxes(),
    RandomCropKeepBoxes((70, 90)),
]
APPROX = [
    RandomRotation(25),
    RandomAffine(shear=12),
    RandomAffine(10, 0.05, (0.8, 1.2), 8),
    RandomAffine(perspective=0.0008),
    RandomPerspective(0.3),
    RandomResizedCrop((64, 80), scale=(0.6, 1.0)),
    Letterbox(160),
]


@pytest.mark.parametrize("op", EXACT, ids=repr)
def test_box_equals_mask_bbox_exact(op):
    for seed in SEEDS:
        s = random_sample(seed)
        out = op(s, seed)
        assert len(out.boxes) == len(out.masks) == len(out.box_labels)
        for box, m in zip(out.boxes, out.masks):
            np.testing.assert_allclose(box, mask_box(m), atol=1e-4, err_msg=f"seed {seed}")
        assert np.array_equal(out.semantic_mask == 1, out.masks.any(0))


def _nearest(op):
    # nearest image interpolation so the marker blob keeps its pixels crisp (on a copy: the
    # parametrized ops are shared between tests)
    op = copy.copy(op)
    op.interpolation = "nearest"
    return op


@pytest.mark.parametrize("op", APPROX, ids=repr)
def test_box_matches_mask_bbox_iou(op):
    for seed in SEEDS:
        s = random_sample(seed)
        out = op(s, seed)
        assert len(out.boxes) == len(out.masks)
        for box, m in zip(out.boxes, out.masks):
            if not m.any():
                continue
            on_border = m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
            if on_border:  # clipped objects: the box may only enclose the visible part
                mb = mask_box(m)
                assert (box[:2] <= mb[:2] + 1).all() and (box[2:] >= mb[2:] - 1).all()
                continue
            assert iou(box, mask_box(m)) >= 0.9, (seed, box, mask_box(m))


@pytest.mark.parametrize("op", EXACT + APPROX, ids=repr)
def test_keypoints_land_on_the_marker(op):
    exact = op in EXACT
    op = _nearest(op) if hasattr(op, "interpolation") else op
    checked = 0
    for seed in range(10):
        s = random_sample(seed, n=1)
        img = s.image.copy()
        kx, ky = (s.keypoints[0, 0, :2] - 0.5).astype(int)
        img[ky - 1 : ky + 2, kx - 1 : kx + 2, 1] = 255  # 3x3 blob centred on the keypoint
        out = op(s.replace(image=img), seed)
        blob = out.image[..., 1] > 127
        if len(out.keypoints) == 0 or not blob.any():
            continue
        ys, xs = np.nonzero(blob)
        tol = 0.6 if exact else 1.2
        np.testing.assert_allclose(
            out.keypoints[0, 0, :2], [xs.mean() + 0.5, ys.mean() + 0.5], atol=tol
        )
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("op", EXACT + APPROX, ids=repr)
def test_empty_and_unannotated_samples_pass(op):
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = op(Sample(img), 1)  # no targets at all
    assert out.boxes is None and out.masks is None and out.image.dtype == np.uint8
    empty = Sample(
        img,
        boxes=np.zeros((0, 4), np.float32),
        masks=np.zeros((0, H, W), bool),
        keypoints=np.zeros((0, 1, 3), np.float32),
    )
    out = op(empty, 1)
    assert out.boxes.shape == (0, 4) and out.masks.shape == (0,) + out.image.shape[:2]
    assert out.keypoints.shape == (0, 1, 3)


@pytest.mark.parametrize("op", EXACT + APPROX, ids=repr)
def test_same_seed_same_output(op):
    s = random_sample(3)
    a, pa = op(s, 11, record=True)
    b = op(s, 11)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    c = op.replay(s, pa)
    assert np.array_equal(a.image, c.image) and np.array_equal(a.masks, c.masks)


def test_boxes_leaving_the_image_are_dropped():
    s = random_sample(0, n=2)
    # shift everything 200 px right: both boxes leave, rows of every target go with them
    out = Affine(translate=(200, 0))(s, 0)
    assert len(out.boxes) == 0 and len(out.masks) == 0 and len(out.keypoints) == 0
    assert out.box_labels.shape == (0,)
    # a perspective/affine that keeps the image but pushes one box out
    boxes = np.array([[2, 2, 20, 20], [60, 40, 90, 70]], np.float32)
    s2 = Sample(np.zeros((H, W, 3), np.uint8), boxes=boxes, box_labels=[1, 2])
    out = Affine(translate=(-25, -25))(s2, 0)
    assert out.box_labels.tolist() == [2]
    np.testing.assert_allclose(out.boxes, [[35, 15, 65, 45]])


def test_random_crop_keep_boxes_keeps_every_box_whole():
    for seed in SEEDS:
        s = random_sample(seed)
        out, p = RandomCropKeepBoxes()(s, seed, record=True)
        np.testing.assert_allclose(out.boxes, s.boxes - [p["left"], p["top"]] * 2)
        sized, q = RandomCropKeepBoxes((72, 96))(s, seed, record=True)
        assert sized.image.shape[:2] == (72, 96) and len(sized.boxes) == 3
        # "one": the chosen box survives unclipped
        one = RandomCropKeepBoxes((48, 64), keep="one")(s, seed)  # fits any one box
        widths = one.boxes[:, 2:] - one.boxes[:, :2]
        assert any(np.allclose(wh, b[2:] - b[:2]) for wh in widths for b in s.boxes)


def test_random_affine_out_size_warps_a_mosaic_canvas_down():
    s = random_sample(1)
    big = Resize((2 * H, 2 * W))(s, 0)  # a 2s canvas
    out = RandomAffine(out_size=(H, W), scale=(0.5, 0.5))(big, 0)
    assert out.image.shape[:2] == (H, W) and out.masks.shape[1:] == (H, W)
    # scale 0.5 about the centre onto an output half the size: the original geometry
    np.testing.assert_allclose(out.boxes, s.boxes, atol=1.0)


def test_affine_perspective_is_one_warp_perspective():
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out, p = RandomAffine(10, 0.1, 0.2, 5, perspective=0.001, fill=114)(img, 3, record=True)
    assert p["matrix"].shape == (3, 3)
    ref = cv2.warpPerspective(img, p["matrix"], (50, 40), borderValue=(114,) * 3)
    assert np.array_equal(out, ref)


def test_random_perspective_matches_torchvision_geometry():
    import torch
    import torchvision.transforms.v2.functional as TF

    yy, xx = np.mgrid[0:60, 0:80]
    # a smooth pattern: sub-pixel sampling differences stay small, geometry errors do not
    img = np.stack([xx * 3, yy * 4, 128 + 100 * np.sin(xx / 6.0)], -1).astype(np.uint8)
    op = RandomPerspective(0.4, interpolation="linear")
    out, p = op(img, 5, record=True)
    start = [[0, 0], [79, 0], [79, 59], [0, 59]]
    end = p["corners"].astype(int).tolist()
    ref = TF.perspective(torch.from_numpy(img).permute(2, 0, 1), start, end)
    ref = ref.permute(1, 2, 0).numpy()
    inner = (slice(8, -8), slice(8, -8))  # borders differ in how the fill is blended
    diff = np.abs(out[inner].astype(int) - ref[inner].astype(int))
    assert np.mean(diff) < 1.5 and np.mean(diff > 10) < 0.02
