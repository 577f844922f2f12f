"""Detection data for training: shapes scenes, splits, COCO ground truth, the augmenting
dataset (letterbox geometry, Mosaic switch, determinism) and the collate."""

import json

import cv2
import numpy as np
import pytest
import torch

from cvcraft.data.collate import collate_detect
from cvcraft.data.detection import DetectionData, DetectionImage, write_coco
from cvcraft.data.detection_dataset import (
    PAD_VALUE,
    DetectAugment,
    batch_targets,
    coco_ground_truth,
    detection_dataset,
    load_detection_splits,
    make_shapes_detection,
)
from cvcraft.data.shapes import render_scene, split_code
from cvcraft.errors import DataError
from cvcraft.transforms.letterbox import Letterbox, unletterbox_boxes


def test_shapes_detection_is_render_scene_seeded_per_index():
    d = make_shapes_detection(5, 64, seed=3, split="val")
    ref = render_scene(
        np.random.default_rng([3, split_code("val"), 4]), 64, (1, 4),
        size_range=(0.12, 0.3), min_visible=0.7,
    )  # fmt: skip
    s = d.sample(4)
    np.testing.assert_array_equal(s.image, ref.image)
    np.testing.assert_array_equal(s.boxes, ref.boxes)
    np.testing.assert_array_equal(s.box_labels, ref.box_labels)
    assert s.meta["image_id"] == 5 and s.meta["orig_size"] == (64, 64)
    other = make_shapes_detection(5, 64, seed=3, split="train")
    assert not np.array_equal(other.sample(4).image, s.image)


def test_shapes_splits_sizes_and_held_out():
    sp = load_detection_splits("shapes:20", imgsz=64, seed=0)
    assert len(sp.train) == 20 and len(sp.val) == 4
    assert sp.classes[:2] == ["circle", "square"] and sp.category_ids == [1, 2, 3, 4, 5, 6]
    assert sp.train.images[0].path.startswith("shapes://train/")
    assert sp.val.images[0].path.startswith("shapes://val/")


def test_coco_ground_truth_values_and_pycocotools_loads_it():
    from pycocotools.coco import COCO

    rec = DetectionImage(
        "a.jpg", 50, 40, 7, boxes=[[1, 2, 11, 22], [5, 5, 6, 7]], labels=[1, 0],
        iscrowd=[False, True],
    )  # fmt: skip
    data = DetectionData(classes=["x", "y"], images=[rec], category_ids=[3, 9])
    gt = coco_ground_truth(data)
    assert gt["categories"] == [{"id": 3, "name": "x"}, {"id": 9, "name": "y"}]
    a0, a1 = gt["annotations"]
    assert a0 == {"id": 1, "image_id": 7, "category_id": 9, "bbox": [1.0, 2.0, 10.0, 20.0],
                  "area": 200.0, "iscrowd": 0}  # fmt: skip
    assert a1["category_id"] == 3 and a1["area"] == 2.0 and a1["iscrowd"] == 1
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    assert coco.getAnnIds(imgIds=[7]) == [1, 2]


def test_eval_letterbox_known_geometry_and_inverse():
    # 100 x 200 (h x w) into 64: r = 0.32, resized 32 x 64, pad top = 16 -> hand-computed box
    img = np.zeros((100, 200, 3), np.uint8)
    rec = DetectionImage("m://0", 200, 100, 1, boxes=[[20, 10, 60, 50]], labels=[0])
    from cvcraft.data.detection_dataset import ArrayDetectionData

    data = ArrayDetectionData(classes=["a"], images=[rec], arrays=[img])
    s = detection_dataset(data, 64)[0]
    assert s.image.shape == (64, 64, 3)
    np.testing.assert_allclose(s.boxes, [[6.4, 19.2, 19.2, 32.0]], atol=1e-5)
    assert (s.image[:16] == 114).all() and (s.image[48:] == 114).all()
    back = unletterbox_boxes(s.boxes, s.meta)
    np.testing.assert_allclose(back, [[20, 10, 60, 50]], atol=1e-4)


def _aug_ds(n=12, **kw):
    data = make_shapes_detection(n, 64, seed=1)
    return detection_dataset(data, 64, DetectAugment(**kw), seed=5, mosaic_until=2)


def test_train_items_depend_only_on_seed_epoch_index():
    ds = _aug_ds(mixup=0.5)
    a, b = ds[(1, 3)], ds[(1, 3)]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(ds[(0, 3)].image, a.image)
    assert a.image.shape == (64, 64, 3)
    for e in range(3):
        for i in range(len(ds)):
            s = ds[(e, i)]
            assert s.boxes.shape[1] == 4 and len(s.boxes) == len(s.box_labels)
            assert (s.boxes >= 0).all() and (s.boxes <= 64).all()
            assert (s.boxes[:, 2:] > s.boxes[:, :2]).all()


def test_mosaic_switches_off_at_mosaic_until():
    ds = _aug_ds(mosaic=1.0)
    assert all("mosaic" in ds[(1, i)].meta for i in range(4))
    assert not any("mosaic" in ds[(2, i)].meta for i in range(4))
    assert ds.pipeline.mosaic_on(1) and not ds.pipeline.mosaic_on(2)


def test_identity_augment_keeps_boxes_exact():
    ds = _aug_ds(mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0, hsv_s=0, hsv_v=0)
    s = ds[(0, 2)]
    ref = ds.data.sample(2)
    np.testing.assert_allclose(s.boxes, ref.boxes, atol=1e-3)
    np.testing.assert_array_equal(s.box_labels, ref.box_labels)


def test_perspective_key_warps_boxes_with_the_image():
    flat = _aug_ds(mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0, hsv_s=0, hsv_v=0)
    warped = _aug_ds(
        mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0, hsv_s=0, hsv_v=0,
        perspective=0.002,
    )  # fmt: skip
    assert warped.pipeline.affine.perspective == 0.002
    moved = [not np.allclose(warped[(0, i)].boxes, flat[(0, i)].boxes, atol=0.5) for i in range(4)]
    assert any(moved)


def test_collate_detect():
    ds = _aug_ds()
    batch = collate_detect([ds[(0, i)] for i in range(3)])
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (3, 3, 64, 64)
    targets = batch_targets(batch)
    assert len(targets) == 3 and batch["counts"].sum() == len(batch["boxes"])
    for t, i in zip(targets, range(3)):  # the packed boxes split back into each image's
        s = ds[(0, i)]
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        np.testing.assert_array_equal(t["boxes"].numpy(), s.boxes.reshape(-1, 4))
        np.testing.assert_array_equal(t["labels"].numpy(), s.box_labels)
    assert batch["index"].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="differ in size"):
        s = ds[(0, 0)]
        collate_detect([s, s.replace(image=np.zeros((32, 32, 3), np.uint8))])


def test_coco_file_without_val_split_holds_out(tmp_path):
    data = make_shapes_detection(10, 32, seed=0)
    (tmp_path / "images").mkdir()
    recs = []
    for i, (rec, arr) in enumerate(zip(data.images, data.arrays)):
        p = tmp_path / "images" / f"{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
        recs.append(DetectionImage(str(p), 32, 32, i + 1, rec.boxes, rec.labels))
    files = DetectionData(list(data.classes), recs, root=str(tmp_path / "images"))
    js = write_coco(files, tmp_path / "train.json")
    sp = load_detection_splits(str(js), val_fraction=0.3, seed=0)
    assert len(sp.val) == 3 and len(sp.train) == 7
    assert not {r.image_id for r in sp.val.images} & {r.image_id for r in sp.train.images}
    assert any("held out 3 of 10" in n for n in sp.notes)
    gt = coco_ground_truth(sp.val, sp.category_ids)
    assert len(gt["images"]) == 3
    assert json.dumps(gt)  # plain JSON types only


def test_packed_shards_load_back_with_the_same_boxes(tmp_path):
    from cvcraft.tasks.tools import run_pack

    out = str(tmp_path / "shards")
    run_pack({"data": "shapes:12", "out": out, "task": "detect", "imgsz": "64"})
    packed = load_detection_splits(str(tmp_path / "shards"), imgsz=64)
    direct = load_detection_splits("shapes:12", imgsz=64)
    assert packed.classes == direct.classes
    assert len(packed.train) == len(direct.train) and len(packed.val) == len(direct.val)
    for i in range(len(direct.train)):
        a, b = packed.train.sample(i), direct.train.sample(i)
        np.testing.assert_array_equal(a.image, b.image)  # png: lossless
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_array_equal(a.box_labels, b.box_labels)


def test_shard_folder_of_another_task_is_refused(tmp_path):
    from cvcraft.tasks.tools import run_pack

    run_pack({"data": "shapes:20", "out": str(tmp_path / "cls"), "task": "classify", "imgsz": "32"})
    with pytest.raises(DataError, match="not detect"):
        load_detection_splits(str(tmp_path / "cls"))


def test_augment_spec_replaces_the_knobs_and_ends_at_imgsz():
    sp = load_detection_splits("shapes:16", imgsz=64, seed=0)
    spec = [{"name": "mosaic", "size": 64}, {"name": "hflip", "p": 1.0}]
    ds = detection_dataset(sp.train, 64, DetectAugment(), seed=0, mosaic_until=2, pipeline=spec)
    early, late = ds[(0, 3)], ds[(2, 3)]
    assert early.image.shape == late.image.shape == (64, 64, 3)
    assert "mosaic" in early.meta and "mosaic" not in late.meta  # closed from mosaic_until on
    # late epoch = letterbox + flip only: the boxes are the source boxes mirrored
    ref = Letterbox(64, fill=PAD_VALUE)(ds.data.sample(3))
    mirrored = ref.boxes.copy()
    mirrored[:, [0, 2]] = 64 - ref.boxes[:, [2, 0]]
    np.testing.assert_allclose(late.boxes, mirrored, atol=1e-3)
    assert ds[(0, 3)].boxes.tolist() == early.boxes.tolist()  # same key, same output


def test_detect_config_checks_the_augment_spec_early():
    from cvcraft.errors import ConfigError
    from cvcraft.tasks import task_config

    task_config("detect", {"augment": "[mosaic, hflip]"})
    with pytest.raises(ConfigError, match="must come before"):
        task_config("detect", {"augment": "[hflip, mosaic]"})
