"""convert_dataset round trips on coco128 (coco -> yolo -> coco, coco -> voc -> coco)."""

import shutil

import numpy as np
import pytest

from cvcraft.data.detection import (
    convert_dataset,
    detect_format,
    read_coco,
    read_dataset,
    write_dataset,
)
from cvcraft.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def coco_small(shared_data, tmp_path):
    """The first 16 coco128 images with their COCO JSON, via convert (images symlinked)."""
    src = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    data = read_coco(src)
    crowded = [im for im in data.images if im.iscrowd.any()][:4]
    data.images = crowded + [im for im in data.images[:16] if not im.iscrowd.any()][:12]
    write_dataset(data, tmp_path / "coco", "coco", images="symlink")
    return tmp_path / "coco", data


def _by_id(data):
    return {im.image_id: im for im in data.images}


def test_coco_yolo_coco_keeps_boxes(coco_small, tmp_path):
    src, orig = coco_small
    rep = convert_dataset(src, None, tmp_path / "yolo", "yolo", images="symlink")
    assert detect_format(tmp_path / "yolo") == "yolo"
    n_crowd = sum(int(im.iscrowd.sum()) for im in orig.images)
    assert n_crowd >= 4
    assert rep.objects == orig.num_objects - n_crowd and "crowd" in str(rep)
    convert_dataset(tmp_path / "yolo", "yolo", tmp_path / "back", "coco", images="symlink")
    back = read_dataset(tmp_path / "back", "coco")
    assert back.classes == orig.classes
    b = _by_id(back)
    for im in orig.images:
        keep = ~im.iscrowd
        np.testing.assert_allclose(b[im.image_id].boxes, im.boxes[keep], atol=1e-3)
        assert b[im.image_id].labels.tolist() == im.labels[keep].tolist()


def test_coco_voc_coco_keeps_boxes_within_a_pixel(coco_small, tmp_path):
    src, orig = coco_small
    rep = convert_dataset(src, "coco", tmp_path / "voc", "voc", images="symlink")
    assert detect_format(tmp_path / "voc") == "voc" and rep.images == 16
    voc = _by_id(read_dataset(tmp_path / "voc"))
    for im in orig.images:  # crowd regions are kept as VOC "difficult" (ignored in eval)
        assert voc[im.image_id].difficult.tolist() == im.iscrowd.tolist()
    convert_dataset(tmp_path / "voc", "auto", tmp_path / "back", "coco", images="none")
    back = read_dataset(tmp_path / "back", "coco", allow_outside_root=True)
    assert back.classes == orig.classes
    b = _by_id(back)
    for im in orig.images:
        np.testing.assert_allclose(b[im.image_id].boxes, im.boxes, atol=1.0)
        assert b[im.image_id].labels.tolist() == im.labels.tolist()
    assert back.sample(0).image.ndim == 3  # file names still resolve (images="none")


def test_detect_format_errors(tmp_path):
    with pytest.raises(DataError, match="not a COCO"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="no such"):
        detect_format(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset format"):
        convert_dataset(tmp_path, "coco", tmp_path / "o", "pascal")
    shutil.rmtree(tmp_path)
