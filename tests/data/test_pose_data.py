"""Pose data: stick figures, COCO-keypoints and YOLO-pose round trips, errors naming the file,
person crops (oracle: a bright pixel at a keypoint lands where the map sends the keypoint),
and keypoints through geometric transforms with the left/right flip index."""

import json

import numpy as np
import pytest

from cvcraft.data.pose import (
    PersonCrops,
    coco_keypoints_dict,
    crop_person,
    load_pose,
    read_coco_keypoints,
    read_yolo_pose,
    shapes_pose,
    write_coco_keypoints,
    write_yolo_pose,
)
from cvcraft.data.skeleton import COCO_FLIP_INDEX, COCO_KEYPOINTS, flip_index
from cvcraft.errors import DataError
from cvcraft.structures import Sample
from cvcraft.transforms.geometric import HorizontalFlip, RandomAffine, VerticalFlip


def test_flip_index_swaps_left_and_right():
    assert COCO_FLIP_INDEX == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert flip_index(["left_a", "b", "right_a"]) == [2, 1, 0]


def test_stick_figures_are_frontal_and_seeded():
    data = shapes_pose(6, 64, seed=3)
    s = data.sample(2)
    assert s.image.shape == (64, 64, 3) and s.keypoints.shape == (1, 17, 3)
    kp = s.keypoints[0]
    assert (kp[:, 2] == 2).all() and (kp[:, :2] >= 0).all() and (kp[:, :2] <= 64).all()
    left = [i for i, n in enumerate(COCO_KEYPOINTS) if n in ("left_shoulder", "left_hip")]
    right = [i for i, n in enumerate(COCO_KEYPOINTS) if n in ("right_shoulder", "right_hip")]
    assert (kp[left, 0] > kp[right, 0]).all()  # the person's left is the image's right
    box = s.boxes[0]
    assert (kp[:, 0] >= box[0]).all() and (kp[:, 1] <= box[3]).all()
    assert np.array_equal(shapes_pose(6, 64, seed=3).sample(2).image, s.image)
    # the figure is drawn at its keypoints: the pixel under the hips' midpoint is not background
    mid = ((kp[11, :2] + kp[12, :2]) / 2).astype(int)
    corner = s.image[1, 1].astype(int)
    assert np.abs(s.image[mid[1], mid[0]].astype(int) - corner).sum() > 30


def test_coco_json_round_trip_and_count_error(tmp_path):
    data = shapes_pose(4, 64, seed=0)
    path = tmp_path / "kp.json"
    write_coco_keypoints(data, path)
    gt = json.loads(path.read_text())
    assert len(gt["annotations"]) == 4 and gt["annotations"][0]["num_keypoints"] == 17
    assert gt["categories"][0]["keypoints"] == list(COCO_KEYPOINTS)
    back = read_coco_keypoints(path)
    np.testing.assert_allclose(back.people[1][0].keypoints, data.people[1][0].keypoints, atol=1e-5)
    np.testing.assert_allclose(back.people[1][0].box, data.people[1][0].box, atol=1e-4)
    assert coco_keypoints_dict(back)["annotations"] == gt["annotations"]
    gt["annotations"][2]["keypoints"] = gt["annotations"][2]["keypoints"][:48]
    path.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"kp\.json: annotation 3 has 16 keypoints where the skel"):
        read_coco_keypoints(path)
    gt["annotations"][2]["keypoints"] += [0, 0, 0]
    gt["categories"][0]["skeleton"] = [[1, 2], [16, 18]]
    path.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"kp\.json: categories\[0\]\.skeleton limb \[16, 18\]"):
        read_coco_keypoints(path)


def test_yolo_pose_round_trip_and_count_error(tmp_path):
    data = shapes_pose(3, 64, seed=1)
    write_yolo_pose(data, tmp_path)
    back = read_yolo_pose(tmp_path)
    assert len(back) == 3
    for i in range(3):
        got, want = back.people[i][0].keypoints, data.people[i][0].keypoints
        assert np.array_equal(got[:, 2], want[:, 2])  # unlabelled points are written 0 0 0
        lab = want[:, 2] > 0
        np.testing.assert_allclose(got[lab], want[lab], atol=1e-3)
        np.testing.assert_allclose(back.people[i][0].box, data.people[i][0].box, atol=1e-3)
    splits = load_pose(str(tmp_path), val_fraction=0.34)
    assert len(splits.train) == 2 and len(splits.val) == 1
    label = sorted((tmp_path / "labels").glob("*.txt"))[0]
    label.write_text(label.read_text().strip() + " 0.5\n")
    with pytest.raises(DataError, match=rf"{label.name}:1: 52 keypoint values .* 17 keypoints"):
        read_yolo_pose(tmp_path)
    with pytest.raises(DataError, match="not pose data"):
        load_pose(str(tmp_path / "labels"))


def test_person_crop_moves_a_marked_pixel_with_its_keypoint():
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = np.zeros((90, 120, 3), np.uint8)
        x, y = rng.integers(30, 80), rng.integers(25, 60)
        img[y, x] = 255
        kp = np.zeros((1, 17, 3), np.float32)
        kp[0, 0] = (x + 0.5, y + 0.5, 2)  # the centre of pixel (x, y)
        box = np.array([[x - 20, y - 15, x + 10, y + 25]], np.float32)
        crop = crop_person(Sample(img, boxes=box, keypoints=kp), 0, 64, padding=1.25)
        peak = np.unravel_index(np.argmax(crop.image[..., 0]), (64, 64))
        # a 40 px box side * 1.25 -> 50 px across 64: the pixel spreads over ~1.3 px
        assert np.abs(crop.keypoints[0, 0, :2] - 0.5 - peak[::-1]).max() <= 0.65
    crops = PersonCrops(shapes_pose(5, 64), 32)
    assert len(crops) == 5 and crops.sample(0).image.shape == (32, 32, 3)
    assert len(crops.subset([1, 3])) == 2


GEOMETRIC = [
    HorizontalFlip(p=1.0, keypoint_flip_index=COCO_FLIP_INDEX),
    VerticalFlip(p=1.0),
    RandomAffine(degrees=20, scale=(0.8, 1.2)),
]


@pytest.mark.parametrize("t", GEOMETRIC, ids=["hflip", "vflip", "affine"])
def test_keypoints_follow_geometric_transforms(t):
    s = shapes_pose(1, 64, seed=4).sample(0)
    s = Sample(s.image, keypoints=s.keypoints, meta=s.meta)
    out = t(s, 0)
    if isinstance(t, HorizontalFlip):
        # x' = W - x, and label k now holds what was label flip[k]: the left shoulder is
        # still on the image right after the swap
        want = s.keypoints[0, list(COCO_FLIP_INDEX), 0]
        np.testing.assert_allclose(out.keypoints[0, :, 0], 64 - want, atol=1e-5)
        assert out.keypoints[0, 5, 0] > out.keypoints[0, 6, 0]
    elif isinstance(t, VerticalFlip):
        np.testing.assert_allclose(out.keypoints[0, :, 1], 64 - s.keypoints[0, :, 1], atol=1e-5)
    else:
        assert out.keypoints.shape == s.keypoints.shape
        assert not np.allclose(out.keypoints[0, :, :2], s.keypoints[0, :, :2])


def test_multi_person_stick_figures():
    from cvcraft.data.stick_figures import make_stick_figures

    data = shapes_pose(30, 128, seed=5, people=3)
    counts = [len(p) for p in data.people]
    assert set(counts) == {1, 2, 3}  # 1..people figures per image
    for i in range(len(data)):
        s = data.sample(i)
        assert s.keypoints.shape == (counts[i], 17, 3) and (s.keypoints[..., 2] == 2).all()
        assert (s.keypoints[..., :2] >= 0).all() and (s.keypoints[..., :2] <= 128).all()
        hips = s.keypoints[:, 11:13, :2].mean(1)
        gaps = np.linalg.norm(hips[:, None] - hips[None], axis=-1)[np.triu_indices(counts[i], 1)]
        assert (gaps >= 0.22 * 128 - 1e-4).all()
        assert (s.boxes[:, :2] <= s.keypoints[..., :2].min(1)).all()
    again = shapes_pose(30, 128, seed=5, people=3).sample(7)
    assert np.array_equal(again.image, data.sample(7).image)
    # people=1 is the single-figure generator, unchanged
    one = shapes_pose(3, 64, seed=2, people=1).sample(1)
    images, kps, _ = make_stick_figures(3, 64, 2)
    assert np.array_equal(one.image, images[1]) and np.array_equal(one.keypoints, kps[1])
    with pytest.raises(DataError, match="people=0"):
        shapes_pose(2, 64, people=0)
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match="people=2 shapes generated stick figures; x.json"):
        load_pose("x.json", people=2)


def test_whole_images_letterbox_every_person():
    import cv2

    from cvcraft.data.pose import WholeImages

    data = shapes_pose(4, 128, seed=1, people=3)
    items = WholeImages(data, 64)
    s, src = items.sample(2), data.sample(2)
    np.testing.assert_allclose(s.meta["crop"], [[0.5, 0, 0], [0, 0.5, 0]])
    np.testing.assert_allclose(s.keypoints[..., :2], src.keypoints[..., :2] / 2, atol=1e-5)
    want = cv2.resize(src.image, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(s.image.astype(int) - want).max() <= 1  # same bilinear sampling
    assert len(items.subset([0, 2])) == 2
