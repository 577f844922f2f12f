"""Detection confusion matrix on a hand-built case, and the detection plots (PNG files)."""

import cv2
import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.metrics.coco import COCOEvaluator
from cvcraft.metrics.detection_confusion import DetectionConfusionMatrix
from cvcraft.viz.detection import format_ap_table, plot_pr_curves
from cvcraft.viz.plots import plot_confusion_matrix


def test_hand_built_matrix():
    cm = DetectionConfusionMatrix(num_classes=3, conf_threshold=0.25, iou_threshold=0.45)
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], float)
    gl = np.array([0, 1, 2, 2])
    det = np.array(
        [
            [0, 0, 10, 10],  # gt0 class 0, right class
            [0, 1, 10, 11],  # gt0 again, lower IoU: loses -> background FP (class 0)
            [20, 0, 30, 10],  # gt1 (class 1) detected as class 2
            [40, 0, 50, 10.5],  # gt2, but confidence 0.2 <= 0.25: dropped -> gt2 missed
            [100, 100, 110, 110],  # nothing: background FP (class 1)
            [60, 0, 66, 10],  # gt3 IoU 0.6 -> class 2 right
        ],
        float,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5])
    dl = np.array([0, 0, 2, 2, 1, 2])
    cm.update(det, scores, dl, gt, gl)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # gt0 -> class 0
    expected[1, 2] = 1  # gt1 -> class 2
    expected[2, 3] = 1  # gt2 missed
    expected[2, 2] = 1  # gt3 -> class 2
    expected[3, 0] = 1  # duplicate on gt0
    expected[3, 1] = 1  # detection on nothing
    np.testing.assert_array_equal(cm.compute(), expected)
    # An image with no detections: every gt is a miss; no gts: every detection a false alarm.
    cm.update(np.zeros((0, 4)), [], [], gt[:1], [0])
    cm.update(det[:1], [0.9], [1], np.zeros((0, 4)), [])
    assert cm.matrix[0, 3] == 1 and cm.matrix[3, 1] == 2
    with pytest.raises(DataError, match=r"update: pred_labels outside \[0, 3\)"):
        cm.update(det[:1], [0.9], [5], gt[:1], [0])


def test_each_gt_keeps_its_best_detection():
    cm = DetectionConfusionMatrix(num_classes=2, iou_threshold=0.3)
    gt = np.array([[0, 0, 10, 10]], float)
    det = np.array([[0, 0, 10, 8], [0, 0, 10, 10]], float)  # second has IoU 1
    cm.update(det, [0.9, 0.5], [0, 1], gt, [0])
    assert cm.matrix[0, 1] == 1 and cm.matrix[2, 0] == 1 and cm.matrix.sum() == 2


def _readable(path):
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_plots_written(tmp_path):
    gt = {
        "images": [{"id": 1}],
        "categories": [
            {"id": 1, "name": "cat"},
            {"id": 2, "name": "dog"},
            {"id": 3, "name": "none"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 0, 50, 50], "area": 2500},
        ],
    }
    ev = COCOEvaluator(gt)
    ev.update(
        [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9},
            {"image_id": 1, "category_id": 2, "bbox": [300, 0, 50, 50], "score": 0.8},
            {"image_id": 1, "category_id": 2, "bbox": [100, 0, 50, 40], "score": 0.7},
        ]
    )
    out = ev.compute()
    p = plot_pr_curves(out["precision"], out["category_names"], tmp_path / "pr.png")
    img = _readable(p)
    assert img.std() > 5  # something was drawn
    table = format_ap_table(out["per_class"])
    assert "cat" in table and "1.0000" in table and table.splitlines()[-1].strip().endswith("-")
    cm = DetectionConfusionMatrix(3)
    cm.update(np.array([[0, 0, 50, 50]], float), [0.9], [0], np.array([[0, 0, 50, 50]], float), [0])
    _readable(
        plot_confusion_matrix(
            cm.compute(), ["cat", "dog", "none", "background"], tmp_path / "cm.png", normalize=False
        )
    )
    with pytest.raises(ValueError, match=r"precision must be .* with K = len\(class_names\)"):
        plot_pr_curves(out["precision"], ["cat"], tmp_path / "bad.png")
