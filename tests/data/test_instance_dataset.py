"""Instance-segmentation data: shapes masks, masks kept aligned with boxes through Mosaic /
affine / MixUp / Copy-Paste and the collate, COCO ground truth with segmentations (scored by
pycocotools), masks mapped back through the letterbox, and mask/box mismatches or bad
segments refused naming the file and the annotation ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvcraft.data.collate import collate_instance
from cvcraft.data.detection import DetectionData, DetectionImage, read_coco
from cvcraft.data.detection_dataset import batch_targets, make_shapes_detection
from cvcraft.data.instance_dataset import (
    InstanceSource,
    instance_dataset,
    instance_ground_truth,
    tighten_to_masks,
)
from cvcraft.data.shapes import render_scene, split_code
from cvcraft.errors import DataError
from cvcraft.metrics.coco import SUMMARY_KEYS, COCOEvaluator
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample
from cvcraft.transforms.item_pipeline import DetectAugment
from cvcraft.transforms.letterbox import Letterbox, unletterbox_masks
from cvcraft.viz.detection_plots import class_color
from cvcraft.viz.instances import draw_instances, tint_masks


def test_shapes_keep_the_scene_masks():
    data = make_shapes_detection(5, 48, seed=2, split="train", masks=True)
    for i in range(5):
        scene = render_scene(np.random.default_rng([2, split_code("train"), i]), 48, (1, 4),
                             size_range=(0.12, 0.3), min_visible=0.7)  # fmt: skip
        s = data.sample(i, masks=True)
        assert np.array_equal(s.masks, scene.masks)
        np.testing.assert_array_equal(masks_to_boxes(s.masks), s.boxes)
    assert make_shapes_detection(2, 48).images[0].segments is None  # detect pays nothing


@pytest.mark.parametrize(
    "aug,pipeline",
    [
        (DetectAugment(mosaic=1.0, mixup=0.5, degrees=30.0, shear=5.0, scale=0.5), None),
        (None, [{"name": "copy_paste", "p": 1.0}, {"name": "hflip", "p": 0.5}]),
    ],
)
def test_augmentation_keeps_masks_aligned_with_tight_boxes(aug, pipeline):
    data = make_shapes_detection(12, 64, seed=0, masks=True)
    ds = instance_dataset(data, 64, aug, seed=0, pipeline=pipeline)
    n_objects = 0
    for i in range(12):
        s = ds[(0, i)]
        assert s.masks.shape == (len(s.boxes), 64, 64) and s.masks.dtype == bool
        assert (s.masks.sum((1, 2)) > 0).all()
        np.testing.assert_array_equal(s.boxes, masks_to_boxes(s.masks))
        n_objects += len(s.boxes)
    assert n_objects > 12
    batch = collate_instance([ds[(1, i)] for i in range(4)])
    targets = batch_targets(batch)
    for i, t in enumerate(targets):  # the packed masks split back per image, box by box
        s = ds[(1, i)]
        assert torch.equal(t["masks"], torch.from_numpy(s.masks))
        assert torch.equal(t["boxes"], torch.from_numpy(s.boxes))


def test_tighten_drops_objects_whose_mask_vanished():
    m = np.zeros((2, 8, 8), bool)
    m[0, 2:5, 1:3] = True
    s = Sample(np.zeros((8, 8, 3), np.uint8), boxes=[[0, 0, 8, 8], [1, 1, 2, 2]],
               box_labels=[3, 4], masks=m)  # fmt: skip
    out = tighten_to_masks(s)
    np.testing.assert_array_equal(out.boxes, [[1, 2, 3, 5]])
    assert out.box_labels.tolist() == [3] and out.masks.shape == (1, 8, 8)


def test_unletterbox_masks_inverts_an_integer_letterbox():
    rng = np.random.default_rng(0)
    m = rng.random((3, 16, 32)) > 0.5  # h=16, w=32 -> x2 into 64 with 16 px top/bottom pads
    s = Letterbox(64)(Sample(np.zeros((16, 32, 3), np.uint8), boxes=np.zeros((3, 4)),
                             box_labels=[0, 0, 0], masks=m))  # fmt: skip
    assert s.meta["letterbox"]["pad"] == (0, 16, 0, 16)
    back = unletterbox_masks(torch.from_numpy(s.masks).float(), s.meta)
    assert back.shape == (3, 16, 32)
    assert torch.equal(back > 0.5, torch.from_numpy(m))


def test_ground_truth_scored_by_pycocotools():
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    mask_api = pytest.importorskip("pycocotools.mask")
    data = make_shapes_detection(4, 40, seed=1, masks=True)
    data.images[0].segments[0] = None  # an object without a segment: its box as a polygon
    gt = instance_ground_truth(data)
    first = gt["annotations"][0]
    x, y, w, h = first["bbox"]
    assert first["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]]
    for a in gt["annotations"][1:]:  # RLE areas are pycocotools' areas
        rle = {**a["segmentation"]}
        assert a["area"] == float(mask_api.area(mask_api.frPyObjects(rle, *rle["size"])))
    ref = coco_mod.COCO()
    ref.dataset = gt
    ref.createIndex()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                "segmentation": mask_api.frPyObjects(a["segmentation"], 40, 40)}
               for a in gt["annotations"]]  # fmt: skip
    for r in results:
        if isinstance(r["segmentation"], list):  # the box polygon, rasterized by pycocotools
            r["segmentation"] = mask_api.merge(r["segmentation"])
        r["segmentation"]["counts"] = r["segmentation"]["counts"].decode()
    ev = cocoeval.COCOeval(ref, ref.loadRes(json.loads(json.dumps(results))), iouType="segm")
    ev.evaluate(), ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == 1.0  # every gt found as a result: every match is exact
    ours = COCOEvaluator(gt, iou_type="segm")
    ours.update(json.loads(json.dumps(results)))
    res = ours.compute()
    np.testing.assert_allclose([res[k] for k in SUMMARY_KEYS], ev.stats, atol=1e-12)


class _LosesAMask(DetectionData):
    def instance_masks(self, i):
        return super().instance_masks(i)[1:]


def _coco_file(tmp_path, segs):
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 5 + k, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 10], "area": 50.0,
             "iscrowd": 0, "segmentation": seg}
            for k, seg in enumerate(segs)
        ],
    }  # fmt: skip
    (tmp_path / "images").mkdir(exist_ok=True)
    import cv2

    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 50, 3), np.uint8))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def test_mask_box_count_mismatch_names_file_and_annotation_ids(tmp_path):
    square = [[2, 3, 12, 3, 12, 13, 2, 13]]
    path = _coco_file(tmp_path, [square, square])
    data = read_coco(path, tmp_path / "images")
    broken = _LosesAMask(classes=data.classes, images=data.images, root=data.root)
    with pytest.raises(DataError, match=r"instances\.json .*a\.png.*annotation ids \[5, 6\].*2 "
                       r"boxes but 1 instance masks"):  # fmt: skip
        InstanceSource(broken).sample(0)
    rec = data.images[0]
    with pytest.raises(DataError, match=r"instances\.json: image .*a\.png has 2 boxes but 1 "
                       r"segments \(annotation ids \[5, 6\]\)"):  # fmt: skip
        DetectionImage(rec.path, 50, 40, 1, rec.boxes, rec.labels, segments=[square],
                       ann_ids=rec.ann_ids, ann_file=rec.ann_file)  # fmt: skip
    s = InstanceSource(data).sample(0)
    s.masks = s.masks[:1]  # a transform that lost a mask
    with pytest.raises(DataError, match=r"collate: .*a\.png has 2 boxes but instance masks of "
                       r"shape \(1, 40, 50\)"):  # fmt: skip
        collate_instance([s])


def test_bad_segments_in_the_task_data_path_name_file_and_annotation(tmp_path):
    from cvcraft.cli import run

    two_points = _coco_file(tmp_path, [[[2, 3, 12, 3, 12, 13, 2, 13]], [[2, 3, 12, 13]]])
    args = ["train", "instance", f"data={two_points}", "model=yolo_seg_p", "imgsz=64",
            "epochs=1", "workers=0", f"out={tmp_path / 'r1'}"]  # fmt: skip
    with pytest.raises(DataError, match=r"instances\.json.*annotation id 6: each polygon .*>= 3 "
                       r"points"):  # fmt: skip
        run(args)
    wrong_rle = _coco_file(tmp_path, [{"size": [30, 50], "counts": [1500]}])
    args[2], args[-1] = f"data={wrong_rle}", f"out={tmp_path / 'r2'}"
    with pytest.raises(DataError, match=r"instances\.json.*annotation id 5: segmentation RLE "
                       r"size 30x50 differs from the image's 40x50"):  # fmt: skip
        run(args)


def test_tint_masks_in_class_colour():
    img = np.full((10, 12, 3), 100, np.uint8)
    m = np.zeros((2, 10, 12), bool)
    m[0, 6:9, 0:2] = True
    m[1, 6:9, 1:3] = True  # overlaps object 0 at column 1: object 0 (listed first) shows
    out = tint_masks(img, m, [0, 1])
    c0, c1 = np.array(class_color(0)), np.array(class_color(1))
    np.testing.assert_array_equal(out[7, 1], np.floor(0.5 * 100 + 0.5 * c0 + 0.5))
    np.testing.assert_array_equal(out[7, 2], np.floor(0.5 * 100 + 0.5 * c1 + 0.5))
    assert (out[0, 0] == 100).all()
    drawn = draw_instances(img, m, [[0, 6, 2, 9], [1, 6, 3, 9]], [0.9, 0.8], [0, 1], ["a", "b"])
    assert drawn.shape == img.shape and (drawn != out).any()  # boxes drawn over the tint
