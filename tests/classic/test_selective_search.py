import cv2
import numpy as np
import pytest

from cvcraft.classic.selective_search import available, selective_search
from cvcraft.errors import ConfigError, DataError

needs_contrib = pytest.mark.skipif(
    not available(), reason="OpenCV contrib (cv2.ximgproc) is not installed in this venv"
)


@needs_contrib
def test_selective_search_wraps_opencv_and_returns_xyxy(rng):
    img = np.zeros((80, 100, 3), np.uint8)
    img[10:40, 10:50] = (200, 30, 30)
    img[45:75, 55:95] = (30, 200, 30)
    boxes = selective_search(img, "fast", 10_000)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    ss.switchToSelectiveSearchFast()
    ref = ss.process().reshape(-1, 4).astype(np.float32)
    # OpenCV ranks proposals with random jitter: compare the sets of boxes
    ref_xyxy = np.concatenate([ref[:, :2], ref[:, :2] + ref[:, 2:]], 1)
    assert {tuple(b) for b in boxes.tolist()} == {tuple(b) for b in ref_xyxy.tolist()}
    assert len(selective_search(img, "fast", 5)) == 5
    assert boxes[:, 2].max() <= 100 and boxes[:, 3].max() <= 80
    # the red square is proposed (IoU > 0.8 with some box)
    gt = np.array([10, 10, 50, 40])
    ix = np.clip(np.minimum(boxes[:, 2:], gt[2:]) - np.maximum(boxes[:, :2], gt[:2]), 0, None)
    inter = ix.prod(1)
    union = (boxes[:, 2:] - boxes[:, :2]).prod(1) + 1200 - inter
    assert (inter / union).max() > 0.8


def test_selective_search_errors():
    with pytest.raises(DataError, match="channels"):
        selective_search(np.zeros((8, 8), np.uint8))
    with pytest.raises(ConfigError, match="mode"):
        selective_search(np.zeros((8, 8, 3), np.uint8), "best")
