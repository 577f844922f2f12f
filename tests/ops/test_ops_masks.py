"""cvcraft.ops.masks against pycocotools.mask (RLE exact; polygons by IoU) and torchvision."""

import json

import numpy as np
import pycocotools.mask as pm
import pytest
import torch
import torchvision

from cvcraft.ops.masks import (
    counts_to_string,
    masks_to_boxes,
    polygon_area,
    polygons_to_mask,
    rle_area,
    rle_decode,
    rle_encode,
    segment_to_mask,
    string_to_counts,
)

# pycocotools (an oracle, not our code) trips numpy 2's copy= deprecation on every decode
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _ref_encode(m: np.ndarray) -> dict:
    return pm.encode(np.asfortranarray(m.astype(np.uint8)))


def _random_masks(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for t in range(n):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if t % 3 == 0:  # blobs: long runs, large counts
            m = np.zeros((h, w), bool)
            m[rng.integers(0, h) :, rng.integers(0, w) :] = True
        else:
            m = rng.random((h, w)) < rng.random()
        yield m


def test_rle_encode_decode_area_equal_pycocotools():
    for m in _random_masks(0, 300):
        ref = _ref_encode(m)
        mine = rle_encode(m)
        assert mine["size"] == list(ref["size"])
        assert mine["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(rle_decode(ref), m)
        assert np.array_equal(rle_decode(mine), pm.decode(ref).astype(bool))
        assert rle_area(mine) == int(pm.area(ref))


def test_large_counts_and_uncompressed_form():
    # runs of millions of pixels need multi-character (and negative-delta) varints
    m = np.zeros((3000, 3000), bool)
    m[5:2900, 7:2990] = True
    m[100:110, 100:120] = False
    ref = _ref_encode(m)
    assert rle_encode(m)["counts"] == ref["counts"].decode()
    flat = rle_encode(m, compress=False)
    assert isinstance(flat["counts"], list)
    # pycocotools turns an uncompressed (iscrowd) RLE into the compressed one
    assert pm.frPyObjects(flat, 3000, 3000)["counts"] == ref["counts"]
    assert np.array_equal(rle_decode(flat), m)
    assert np.array_equal(string_to_counts(counts_to_string(flat["counts"])), flat["counts"])


def test_edge_masks():
    for m in (np.ones((4, 5), bool), np.zeros((4, 5), bool), np.eye(6, dtype=bool)):
        assert rle_encode(m)["counts"] == _ref_encode(m)["counts"].decode()
        assert np.array_equal(rle_decode(rle_encode(m)), m)
    assert rle_encode(np.ones((2, 2), bool), compress=False)["counts"] == [0, 4]


def test_malformed_rle_raises_value_error():
    with pytest.raises(ValueError, match="sum"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="alphabet"):
        rle_decode({"size": [2, 2], "counts": "\x7f"})
    with pytest.raises(ValueError, match="middle"):
        string_to_counts("P")  # 'P' - 48 = 32: continuation bit set on the last char
    with pytest.raises(ValueError, match="size"):
        segment_to_mask({"size": [2, 2], "counts": [4]}, 3, 3)


def test_polygon_rasterization_matches_pycocotools_on_coco128(shared_data):
    ann_file = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    doc = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
    ious, big = [], []
    for a in doc["annotations"]:
        if a["iscrowd"]:
            continue
        h, w = sizes[a["image_id"]]
        ref = pm.decode(pm.merge(pm.frPyObjects(a["segmentation"], h, w))).astype(bool)
        mine = polygons_to_mask(a["segmentation"], h, w)
        iou = (mine & ref).sum() / max((mine | ref).sum(), 1)
        ious.append(iou)
        if ref.sum() >= 200:  # small objects are all boundary, where the two rules differ
            big.append(iou)
    assert len(ious) > 900
    assert np.median(ious) > 0.99
    assert min(big) >= 0.95


def test_crowd_rle_from_coco128_decodes_like_pycocotools(shared_data):
    ann_file = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    doc = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
    crowds = [a for a in doc["annotations"] if a["iscrowd"]]
    assert crowds
    for a in crowds:
        h, w = sizes[a["image_id"]]
        ref = pm.frPyObjects(a["segmentation"], h, w)
        assert np.array_equal(rle_decode(a["segmentation"]), pm.decode(ref).astype(bool))
        assert rle_area(a["segmentation"]) == int(pm.area(ref))
        assert rle_encode(rle_decode(a["segmentation"]))["counts"] == ref["counts"].decode()


def test_polygon_simple_square_and_area():
    # a 4x3 rectangle on pixel edges covers exactly those 12 pixels
    m = polygons_to_mask([[1, 1, 5, 1, 5, 4, 1, 4]], 6, 7)
    expect = np.zeros((6, 7), bool)
    expect[1:4, 1:5] = True
    assert np.array_equal(m, expect)
    assert polygon_area([1, 1, 5, 1, 5, 4, 1, 4]) == 12.0
    assert polygon_area([0, 0, 4, 0, 0, 3]) == 6.0
    # two overlapping parts are OR-ed, never XOR-ed into a hole
    two = polygons_to_mask([[0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]], 8, 8)
    assert two.sum() == 16 + 16 - 4


def test_masks_to_boxes_vs_torchvision():
    rng = np.random.default_rng(1)
    masks = rng.random((6, 20, 30)) < 0.02
    masks[0] = False
    masks[1] = False
    masks[1, 7, 9] = True
    ours = masks_to_boxes(masks)
    ref = torchvision.ops.masks_to_boxes(torch.from_numpy(masks[1:])).numpy()
    np.testing.assert_array_equal(ours[1:], ref + [0, 0, 1, 1])  # pixel-edge convention
    np.testing.assert_array_equal(ours[0], 0)
    np.testing.assert_array_equal(ours[1], [9, 7, 10, 8])
    t = masks_to_boxes(torch.from_numpy(masks))
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(ours))
