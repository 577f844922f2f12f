"""Every target follows the image: a filled rectangle's pixels vs its transformed box,
mask, semantic mask and keypoint, for each geometric op; RRC sampling vs torchvision."""

import numpy as np
import pytest
import torch
import torchvision.transforms as T

from cvcraft.structures import Sample
from cvcraft.transforms import (
    CenterCrop,
    HorizontalFlip,
    PadRandomCrop,
    RandomAffine,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    VerticalFlip,
    sample_rrc_window,
)

BOX = (22, 12, 46, 40)  # x1, y1, x2, y2 of the object; centre (34, 26)


def rect_sample(h=64, w=80, box=BOX):
    x1, y1, x2, y2 = box
    img = np.zeros((h, w, 3), np.uint8)
    img[y1:y2, x1:x2, 0] = 255
    obj = img[..., 0] > 0
    # a 2x2 marker in the green channel centred on the keypoint (the object centre)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    img[cy - 1 : cy + 1, cx - 1 : cx + 1, 1] = 255
    centre = [(x1 + x2) / 2, (y1 + y2) / 2, 2.0]
    return Sample(
        img,
        label=3,
        boxes=[box],
        box_labels=[5],
        masks=obj[None],
        semantic_mask=np.where(obj, 7, 0).astype(np.uint8),
        keypoints=np.array([[centre]], np.float32),
    )


def pixel_bbox(binary):
    ys, xs = np.nonzero(binary)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def check_follows(out, tol=1.5, enclose_only=False):
    obj = out.image[..., 0] > 127
    assert obj.any()
    bbox = pixel_bbox(obj)
    assert len(out.boxes) == 1 and out.box_labels.tolist() == [5]
    if enclose_only:  # rotation: the corner box encloses the object
        assert (out.boxes[0, :2] <= bbox[:2] + tol).all() and (
            out.boxes[0, 2:] >= bbox[2:] - tol
        ).all()
    else:
        np.testing.assert_allclose(out.boxes[0], bbox, atol=tol)
    # masks: binary, same shape as the image, and on the object
    assert out.masks.dtype == bool and out.masks.shape == (1,) + out.image.shape[:2]
    iou = (out.masks[0] & obj).sum() / (out.masks[0] | obj).sum()
    assert iou > 0.85
    assert set(np.unique(out.semantic_mask)) <= {0, 7, 255}
    assert np.array_equal(out.semantic_mask == 7, out.masks[0])
    # the keypoint stays on the marker's centroid (pixel centres are at i + 0.5)
    marker = out.image[..., 1] > 127
    if marker.any():
        ys, xs = np.nonzero(marker)
        np.testing.assert_allclose(
            out.keypoints[0, 0, :2], [xs.mean() + 0.5, ys.mean() + 0.5], atol=tol
        )
        assert out.keypoints[0, 0, 2] == 2
    else:  # marker cut away: the keypoint must be marked invisible
        assert out.keypoints[0, 0, 2] == 0


@pytest.mark.parametrize(
    "transform",
    [
        HorizontalFlip(p=1.0),
        VerticalFlip(p=1.0),
        Resize((50, 120)),
        Resize(100, keep_ratio=True),
        CenterCrop(40),
        CenterCrop((90, 100)),  # larger than the image: pads
        RandomResizedCrop(48, scale=(0.5, 1.0)),
        PadRandomCrop(64, padding=8),
        RandomAffine(translate=0.1),
        RandomAffine(scale=(0.6, 1.3)),
        RandomAffine(translate=0.05, scale=0.2, degrees=0),
    ],
    ids=repr,
)
def test_targets_follow_image(transform):
    s = rect_sample()
    for seed in range(4):
        out = transform(s, seed)
        check_follows(out)


@pytest.mark.parametrize("degrees", [(30, 30), (-60, -60), (90, 90), (-15, 20)])
def test_rotation_box_encloses_object(degrees):
    s = rect_sample()
    out = RandomRotation(degrees)(s, 1)
    check_follows(out, tol=1.5, enclose_only=True)


def test_flip_values_exact():
    s = rect_sample()
    out = HorizontalFlip(p=1.0)(s, 0)
    assert np.array_equal(out.image, s.image[:, ::-1])
    np.testing.assert_array_equal(out.boxes, [[80 - 46, 12, 80 - 22, 40]])
    assert np.array_equal(out.masks, s.masks[:, :, ::-1])
    assert HorizontalFlip(p=0.0)(s, 0) is s


def test_boxes_leaving_image_are_dropped_with_their_rows():
    s = rect_sample()
    s = s.replace(
        boxes=np.array([BOX, [0, 0, 6, 6]], np.float32),
        box_labels=[5, 9],
        masks=np.concatenate([s.masks, np.zeros((1, 64, 80), bool)]),
        keypoints=np.concatenate([s.keypoints, [[[3, 3, 2]]]]).astype(np.float32),
    )
    # a centre crop of 40x40 starts at (20, 12): the small top-left box is outside
    out = CenterCrop(40)(s, 0)
    assert out.box_labels.tolist() == [5] and len(out.masks) == 1 and len(out.keypoints) == 1
    # min_visibility: keep the object only if enough of it is left
    crop = CenterCrop(40, min_visibility=0.99)
    assert (
        len(
            crop(
                s.replace(boxes=[[0, 0, 40, 40]], box_labels=[1], masks=None, keypoints=None), 0
            ).boxes
        )
        == 0
    )


def test_input_sample_not_mutated():
    s = rect_sample()
    before = {
        k: np.copy(getattr(s, k)) for k in ("image", "boxes", "masks", "semantic_mask", "keypoints")
    }
    for t in [HorizontalFlip(1.0), RandomAffine(30, 0.1, 0.2, 5), PadRandomCrop(64, 4, "reflect")]:
        t(s, 0)
    for k, v in before.items():
        assert np.array_equal(getattr(s, k), v), k


def test_rrc_fallback_matches_torchvision():
    # no window with area 100% and ratio in [2, 3] fits: both fall back deterministically
    for h, w in [(100, 100), (100, 40), (30, 200)]:
        ours = sample_rrc_window(h, w, (1.0, 1.0), (2.0, 3.0), np.random.default_rng(0))
        ref = T.RandomResizedCrop.get_params(torch.zeros(3, h, w), [1.0, 1.0], [2.0, 3.0])
        assert ours == tuple(ref)


def test_rrc_sampling_statistics():
    rng = np.random.default_rng(0)
    h, w = 120, 160
    wins = np.array(
        [sample_rrc_window(h, w, (0.08, 1.0), (3 / 4, 4 / 3), rng) for _ in range(3000)]
    )
    top, left, hh, ww = wins.T
    assert (
        (top >= 0).all() and (left >= 0).all() and (top + hh <= h).all() and (left + ww <= w).all()
    )
    frac = hh * ww / (h * w)
    assert frac.min() > 0.06 and frac.max() <= 1.0
    # uniform area fraction on [0.08, 1] has mean 0.54; rejections of large windows pull it down
    assert 0.4 < frac.mean() < 0.56
    aspect = ww / hh
    assert np.quantile(aspect, 0.02) > 0.7 and np.quantile(aspect, 0.98) < 1.4
    np.testing.assert_allclose(np.median(np.log(aspect)), 0.0, atol=0.05)
    # positions are uniform over the free range
    free = h - hh
    assert abs((top[free > 0] / free[free > 0]).mean() - 0.5) < 0.03


def test_rrc_output_size_and_determinism():
    img = np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    t = RandomResizedCrop((56, 64))
    a, b, c = t(img, 5), t(img, 5), t(img, 6)
    assert a.shape == (56, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_pad_random_crop_reflect_and_shapes():
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    out, params = PadRandomCrop(32, 4, "reflect")(img, 0, record=True)
    ref = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    t, l = params["top"], params["left"]
    assert np.array_equal(out, ref[t : t + 32, l : l + 32])
    out = PadRandomCrop(32, 4, fill=0)(np.full((32, 32, 3), 9, np.uint8), 1)
    assert out.shape == (32, 32, 3) and set(np.unique(out)) <= {0, 9}


def test_affine_is_one_warp_matching_params():
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out, p = RandomAffine(20, 0.1, 0.2, 10, fill=114)(img, 3, record=True)
    ref = cv2.warpAffine(img, p["matrix"], (50, 40), flags=cv2.INTER_LINEAR, borderValue=(114,) * 3)
    assert np.array_equal(out, ref)
