"""Segmentation data: mask readers, instance painting (pycocotools oracle), folder layouts,
the dataset/collate pair and the shared COCO128 semantic masks."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cvcraft.data.collate import collate_segment
from cvcraft.data.io import write_image
from cvcraft.data.segmentation import (
    load_segmentation,
    make_shapes_segmentation,
    paint_instances,
    read_mask,
    segment_dataset,
)
from cvcraft.data.shapes import SEMANTIC_CLASSES, render_scene, split_code
from cvcraft.errors import DataError


def test_shapes_segmentation_is_render_scene():
    d = make_shapes_segmentation(5, 48, seed=3, split="val")
    assert d.classes == list(SEMANTIC_CLASSES)
    ref = render_scene(np.random.default_rng([3, split_code("val"), 4]), 48, (1, 2),
                       size_range=(0.25, 0.45), min_visible=0.8)  # fmt: skip
    s = d.sample(4)
    assert np.array_equal(s.image, ref.image)
    assert np.array_equal(s.semantic_mask, ref.semantic_mask)
    assert s.semantic_mask.max() < len(SEMANTIC_CLASSES)
    # the scene parameters are forwarded, not only the defaults
    d3 = make_shapes_segmentation(2, 48, seed=3, split="val", n_objects=(3, 3),
                                  size_range=(0.1, 0.2), min_visible=0.3)  # fmt: skip
    ref3 = render_scene(np.random.default_rng([3, split_code("val"), 1]), 48, (3, 3),
                        size_range=(0.1, 0.2), min_visible=0.3)  # fmt: skip
    assert np.array_equal(d3.sample(1).semantic_mask, ref3.semantic_mask)


def test_read_mask_palette_grey_rgb_and_lut(tmp_path):
    idx = np.array([[0, 1], [2, 255]], np.uint8)
    pal_img = Image.fromarray(idx, mode="P")
    pal_img.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [255] * (253 * 3))
    pal_img.save(tmp_path / "p.png")
    assert np.array_equal(read_mask(tmp_path / "p.png"), idx)
    Image.fromarray(idx, mode="L").save(tmp_path / "g.png")
    assert np.array_equal(read_mask(tmp_path / "g.png"), idx)
    colors = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10]])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1], rgb[1, 0], rgb[1, 1] = colors[1], colors[2], (1, 2, 3)  # last: unknown colour
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_mask(tmp_path / "c.png", palette=colors).tolist() == [[0, 1], [2, 255]]
    with pytest.raises(DataError, match="palette"):
        read_mask(tmp_path / "c.png")
    lut = np.full(65536, 255, np.uint8)
    lut[[0, 2]] = [1, 0]
    assert read_mask(tmp_path / "g.png", lut=lut).tolist() == [[1, 255], [0, 255]]
    with pytest.raises(DataError, match="mask value 2"):
        read_mask(tmp_path / "g.png", num_classes=2)


def test_paint_instances_small_on_top_and_crowd_ignored():
    m = np.zeros((3, 4, 4), bool)
    m[0] = True  # large, class 0
    m[1, 1:3, 1:3] = True  # small, class 1, painted over the large one
    m[2, 0, 0] = True  # crowd
    out = paint_instances(m, np.array([0, 1, 2]), np.array([False, False, True]))
    expect = np.ones((4, 4), np.uint8)
    expect[1:3, 1:3] = 2
    expect[0, 0] = 255
    assert np.array_equal(out, expect)


def _coco(tmp_path, mask_util, h=40, w=50):
    img = np.full((h, w, 3), 90, np.uint8)
    write_image(tmp_path / "images" / "a.png", img)
    write_image(tmp_path / "images" / "b.png", img)
    poly = [[5.0, 5.0, 30.0, 5.0, 30.0, 25.0, 5.0, 25.0]]
    small = [[10.0, 10.0, 20.0, 10.0, 15.0, 20.0]]
    rle_mask = np.zeros((h, w), np.uint8, order="F")
    rle_mask[28:36, 35:48] = 1
    rle = mask_util.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 25, 20], "area": 500,
         "iscrowd": 0, "segmentation": poly},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [10, 10, 10, 10], "area": 50,
         "iscrowd": 0, "segmentation": small},
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [35, 28, 13, 8], "area": 104,
         "iscrowd": 1, "segmentation": rle},
    ]  # fmt: skip
    gt = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": h, "width": w},
            {"id": 2, "file_name": "b.png", "height": h, "width": w},
        ],
        "annotations": anns,
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "dog"}],
    }
    path = tmp_path / "annotations" / "instances_train.json"
    path.parent.mkdir()
    path.write_text(json.dumps(gt))
    return path, gt


def test_coco_polygons_and_rle_rasterize_like_pycocotools(tmp_path):
    mask_util = pytest.importorskip("pycocotools.mask")
    path, gt = _coco(tmp_path, mask_util)
    splits = load_segmentation(str(path), val_fraction=0.5)
    assert splits.classes == ["background", "car", "dog"]
    assert len(splits.train) == 1 and len(splits.val) == 1  # no val split: held out
    got = splits.train.base.sample(0).semantic_mask
    assert splits.train.base.sample(1).semantic_mask.max() == 0  # no annotations
    # oracle: pycocotools rasterizes each annotation; paint large, then small, crowd = 255
    h, w = 40, 50

    def ann_mask(a):
        seg = a["segmentation"]
        rles = mask_util.frPyObjects(seg, h, w) if isinstance(seg, list) else [seg]
        return mask_util.decode(mask_util.merge(rles) if isinstance(rles, list) else rles)

    a = gt["annotations"]
    ref = np.zeros((h, w), np.uint8)
    ref[ann_mask(a[0]) > 0] = 1
    ref[ann_mask(a[1]) > 0] = 2
    ref[ann_mask(a[2]) > 0] = 255
    assert np.array_equal(got, ref)


def test_yolo_seg_polygons(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    write_image(tmp_path / "images" / "train" / "x.png", img)
    write_image(tmp_path / "images" / "val" / "y.png", img)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    # class 1: a rectangle covering x in [0.25, 0.75] * 64, y in [0.25, 0.75] * 32
    line = "1 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"
    (tmp_path / "labels" / "train" / "x.txt").write_text(line)
    (tmp_path / "labels" / "val" / "y.txt").write_text("")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n"
    )
    splits = load_segmentation(str(tmp_path / "data.yaml"))
    assert splits.classes == ["background", "cat", "dog"]
    m = splits.train.sample(0).semantic_mask
    assert m[16, 32] == 2 and m[2, 2] == 0 and m[16, 5] == 0
    assert (m == 2).sum() == pytest.approx(32 * 16, rel=0.1)
    assert splits.val.sample(0).semantic_mask.max() == 0


def test_mask_folders_and_mask_yaml(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / "masks" / split).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 255, (8, 9, 3), np.uint8)
            write_image(tmp_path / "images" / split / f"{i}.jpg", img)
            m = rng.choice([0, 10, 40, 255], (8, 9)).astype(np.uint8)
            Image.fromarray(m).save(tmp_path / "masks" / split / f"{i}.png")
    (tmp_path / "config.yaml").write_text(
        "train: {images: images/train, masks: masks/train}\n"
        "val: {images: images/val, masks: masks/val}\n"
        "classes: {0: bg, 10: road, 40: car}\n"
    )
    splits = load_segmentation(str(tmp_path))
    assert splits.classes == ["bg", "road", "car"] and len(splits.train) == 3
    s = splits.val.sample(2)
    raw = np.asarray(Image.open(tmp_path / "masks" / "val" / "2.png"))
    lut = {0: 0, 10: 1, 40: 2, 255: 255}
    assert np.array_equal(s.semantic_mask, np.vectorize(lut.get)(raw))
    (tmp_path / "config.yaml").unlink()
    plain = load_segmentation(str(tmp_path))  # images/ + masks/ without a class list
    assert plain.classes == [str(i) for i in range(41)]


def test_dataset_collate_pads_with_ignore_and_is_deterministic():
    data = make_shapes_segmentation(4, 32, seed=1)

    def shrink(s, rng):  # a transform making sizes differ, drawing from the item's rng
        k = int(rng.integers(20, 33))
        return s.replace(image=s.image[:k, :k], semantic_mask=s.semantic_mask[:k, :k])

    ds = segment_dataset(data, shrink, seed=5)
    b1 = collate_segment([ds[(2, i)] for i in range(4)])
    b2 = collate_segment([ds[(2, i)] for i in range(4)])
    assert torch.equal(b1["images"], b2["images"]) and torch.equal(b1["masks"], b2["masks"])
    assert b1["images"].shape[-2:] == b1["masks"].shape[-2:]
    for i, (h, w) in enumerate(b1["sizes"].tolist()):
        assert (b1["masks"][i, h:, :] == 255).all() and (b1["masks"][i, :, w:] == 255).all()
        assert (b1["images"][i, :, h:, :] == 0).all()
    assert b1["masks"].dtype == torch.int64


def test_mosaic_in_dataset_keeps_masks_aligned():
    mosaic_mod = pytest.importorskip("cvcraft.transforms.mosaic")
    from cvcraft.transforms.multi_sample import run_multi_sample

    data = make_shapes_segmentation(6, 32, seed=2)
    ds = segment_dataset(data, None, seed=0, multi=[(mosaic_mod.Mosaic(32, n=4), 1.0)])
    s = ds[(0, 1)]
    assert s.image.shape == (32, 32, 3) and s.semantic_mask.shape == (32, 32)
    assert set(np.unique(s.semantic_mask).tolist()) <= set(range(7)) | {255}
    # the same item drawn by hand: probability draw, then the partners from the same stream
    rng = np.random.default_rng([0, 0, 1])
    assert rng.random() < 1.0
    ref = run_multi_sample(mosaic_mod.Mosaic(32, n=4), data.sample, 1, 6, rng)
    assert np.array_equal(s.image, ref.image)
    assert np.array_equal(s.semantic_mask, ref.semantic_mask)


def test_coco128_semantic_masks(shared_data, require_shared):
    root = shared_data / "coco128" / "semantic_segmentation"
    require_shared(root)
    splits = load_segmentation(str(root))
    assert splits.classes[0] == "unlabeled" and splits.classes[1] == "person"
    n_masks = len(list((root / "masks" / "train2017").glob("*.png")))
    assert len(splits.train) == n_masks and len(splits.val) > 0
    assert any("have no mask" in n for n in splits.notes)  # counted, not silent
    s = splits.train.sample(0)
    raw = np.asarray(Image.open(splits.train.masks[0]))
    ids = sorted(int(k) for k in yaml.safe_load((root / "config.yaml").read_text())["classes"])
    lut = {v: i for i, v in enumerate(ids)}
    assert np.array_equal(s.semantic_mask, np.vectorize(lambda v: lut.get(int(v), 255))(raw))
    assert s.image.shape[:2] == s.semantic_mask.shape


def test_class_instances_and_copy_paste_move_pixels_with_labels():
    from cvcraft.data.segmentation import with_class_instances

    sem = np.array([[0, 2, 2], [255, 5, 0]], np.uint8)
    s = with_class_instances(Sample_(sem))
    assert s.box_labels.tolist() == [2, 5]
    assert np.array_equal(s.masks[0], sem == 2) and s.boxes[1].tolist() == [1, 1, 2, 2]

    cp = pytest.importorskip("cvcraft.transforms.copy_paste")
    data = make_shapes_segmentation(6, 32, seed=3)
    ds = segment_dataset(data, None, seed=1, multi=[(cp.CopyPaste(object_prob=1.0, flip=0.0), 1.0)])
    changed = 0
    for i in range(6):
        out = ds[(0, i)]
        assert out.masks is None and out.boxes is None  # instances dropped afterwards
        orig = data.sample(i)
        moved = out.semantic_mask != orig.semantic_mask
        if not moved.any():
            continue
        changed += 1
        # relabelled pixels also took a new colour (the pasted object's)
        assert (np.abs(out.image.astype(int) - orig.image)[moved].sum(-1) > 0).mean() > 0.9
    assert changed >= 3


def Sample_(sem):
    from cvcraft.structures import Sample

    return Sample(image=np.zeros((*sem.shape, 3), np.uint8), semantic_mask=sem)


def test_load_segmentation_reads_packed_shards(tmp_path):
    from cvcraft.data.webdataset import write_shards

    train = make_shapes_segmentation(7, 32, seed=1, split="train")
    val = make_shapes_segmentation(3, 32, seed=1, split="val")
    write_shards(train, tmp_path / "packed" / "train", max_count=3)  # 3 shards
    write_shards(val, tmp_path / "packed" / "val")
    sp = load_segmentation(tmp_path / "packed")
    assert sp.classes == list(SEMANTIC_CLASSES)
    assert (len(sp.train), len(sp.val)) == (7, 3)
    for src, got in ((train, sp.train), (val, sp.val)):
        for i in range(len(src)):
            assert np.array_equal(got.sample(i).semantic_mask, src.masks[i])
            assert np.array_equal(got.sample(i).image, src.images[i])  # png is lossless
    # one shard folder without val: split like any source without a val split
    one = load_segmentation(tmp_path / "packed" / "train", val_fraction=0.3, seed=0)
    assert (len(one.train), len(one.val)) == (5, 2)
    assert any("held out" in n for n in one.notes)
    held = one.val.indices  # held-out positions in the shard folder's item order
    for i, j in enumerate(held):
        assert np.array_equal(one.val.sample(i).semantic_mask, train.masks[j])


def test_load_segmentation_rejects_classification_shards(tmp_path):
    from cvcraft.data.shapes import make_shapes
    from cvcraft.data.webdataset import write_shards

    write_shards(make_shapes(4, 16), tmp_path / "cls")
    with pytest.raises(DataError, match="task=segment"):
        load_segmentation(tmp_path / "cls")
