import numpy as np
import pytest
import torch
import torchvision.ops as tvops

from cvcraft.structures import (
    Sample,
    box_area,
    clip_boxes,
    convert_boxes,
    cxcywh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)


def _boxes(n=20, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 50, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_conversions_match_torchvision(fmt):
    b = torch.from_numpy(_boxes())
    ours = convert_boxes(b, "xyxy", fmt)
    ref = tvops.box_convert(b, "xyxy", fmt)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(convert_boxes(ref, fmt, "xyxy"), b)


def test_numpy_round_trips_and_hand_values():
    b = np.array([[10, 20, 30, 60]], np.float32)
    np.testing.assert_allclose(xyxy_to_xywh(b), [[10, 20, 20, 40]])
    np.testing.assert_allclose(xyxy_to_cxcywh(b), [[20, 40, 20, 40]])
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    assert xyxy_to_xywh(b).dtype == np.float32


def test_normalized_yolo_to_xyxy():
    yolo = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)  # cx cy w h of a 200x100 (w x h) image
    out = convert_boxes(yolo, "cxcywh", "xyxy", image_size=(100, 200), src_normalized=True)
    np.testing.assert_allclose(out, [[80, 30, 120, 70]], rtol=1e-6)
    back = convert_boxes(out, "xyxy", "cxcywh", image_size=(100, 200), dst_normalized=True)
    np.testing.assert_allclose(back, yolo, rtol=1e-6)
    with pytest.raises(ValueError, match="image_size"):
        convert_boxes(yolo, "cxcywh", "xyxy", src_normalized=True)


def test_area_and_clip_match_torchvision():
    b = torch.from_numpy(_boxes()) - 20
    torch.testing.assert_close(
        box_area(clip_boxes(b, 60, 80)), tvops.box_area(tvops.clip_boxes_to_image(b, (60, 80)))
    )
    np.testing.assert_allclose(
        box_area(clip_boxes(b.numpy(), 60, 80)), box_area(clip_boxes(b, 60, 80)).numpy()
    )


def test_sample_validation():
    img = np.zeros((8, 8, 3), np.uint8)
    s = Sample(img, boxes=[[0, 0, 4, 4]], box_labels=[1])
    assert s.boxes.dtype == np.float32 and s.box_labels.dtype == np.int64
    assert (s.height, s.width) == (8, 8)
    with pytest.raises(ValueError, match="box_labels"):
        Sample(img, boxes=[[0, 0, 4, 4]], box_labels=[1, 2])
    with pytest.raises(ValueError, match="H, W, C"):
        Sample(np.zeros((8, 8), np.uint8))
    s2 = s.replace(label=3)
    s2.meta["x"] = 1
    assert s.meta == {} and s2.label == 3
