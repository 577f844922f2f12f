"""YOLO reader/writer: coco128 labels against the COCO JSON boxes; line-level errors."""

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from cvcraft.data.detection import read_coco, read_yolo, write_yolo
from cvcraft.data.io import write_image
from cvcraft.errors import DataError
from cvcraft.structures import xyxy_to_cxcywh


def make_yolo(tmp: Path, lines: str = "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.3 0.1 0.3 0.3\n") -> Path:
    rng = np.random.default_rng(0)
    write_image(tmp / "images" / "train" / "a.jpg", rng.integers(0, 255, (40, 80, 3), np.uint8))
    write_image(tmp / "images" / "train" / "b.png", rng.integers(0, 255, (20, 10, 3), np.uint8))
    (tmp / "labels" / "train").mkdir(parents=True)
    (tmp / "labels" / "train" / "a.txt").write_text(lines)
    (tmp / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["x", "y"]}))
    return tmp / "data.yaml"


def test_read_boxes_and_polygons(tmp_path):
    data = read_yolo(make_yolo(tmp_path))
    assert data.classes == ["x", "y"] and len(data) == 2
    a, b = data.images
    assert (a.width, a.height) == (80, 40) and (b.width, b.height) == (10, 20)
    np.testing.assert_allclose(a.boxes[0], [32, 12, 48, 28], atol=1e-4)
    np.testing.assert_allclose(a.boxes[1], [8, 4, 24, 12], atol=1e-4)  # polygon min/max
    assert a.segments[0] is None and len(a.segments[1][0]) == 6
    assert a.ann_lines.tolist() == [1, 2] and len(b) == 0  # b: background image


@pytest.mark.parametrize(
    "line, kind",
    [
        ("0 0.5 0.5 0.2", "malformed"),
        ("0 0.5 0.5 0.2 zz", "malformed"),
        ("0.5 0.5 0.5 0.2 0.2", "malformed"),
        ("0 nan 0.5 0.2 0.2", "malformed"),
        ("7 0.5 0.5 0.2 0.2", "unknown_class"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "malformed"),
    ],
)
def test_bad_line_raises_with_file_and_line(tmp_path, line, kind):
    path = make_yolo(tmp_path, "0 0.5 0.5 0.2 0.4\n\n" + line + "\n")
    with pytest.raises(DataError, match=rf"a\.txt:3: \[{kind}\]"):
        read_yolo(path)


def test_unreadable_image_raises(tmp_path):
    make_yolo(tmp_path)
    (tmp_path / "images" / "train" / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"c\.jpg"):
        read_yolo(tmp_path)


def test_image_list_cannot_escape_root(tmp_path):
    make_yolo(tmp_path)
    (tmp_path / "train.txt").write_text("images/train/a.jpg\n../../etc/passwd\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "names": ["x", "y"]}))
    with pytest.raises(DataError, match=r"train\.txt:2: .*outside"):
        read_yolo(tmp_path / "data.yaml")


def test_write_read_round_trip(tmp_path):
    data = read_yolo(make_yolo(tmp_path / "src"))
    ypath = write_yolo(data, tmp_path / "out", split="val", segments=True)
    back = read_yolo(ypath, split="val")
    assert back.classes == data.classes
    for x, y in zip(data.images, back.images):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        assert x.labels.tolist() == y.labels.tolist()
        assert os.path.basename(x.path) == os.path.basename(y.path)


def link_coco128(shared_data: Path, dst: Path, task: str) -> Path:
    """coco128's YOLO layout for ``task``: its 'images' link is a text file here, so rebuild
    it with real symlinks next to a copy of the task's config."""
    root = shared_data / "coco128"
    dst.mkdir()
    (dst / "images").symlink_to(root / "images")
    (dst / "labels").symlink_to(root / task / "labels")
    (dst / "data.yaml").write_text((root / task / "config.yaml").read_text())
    return dst


@pytest.fixture
def coco128_yolo(shared_data, tmp_path) -> Path:
    return link_coco128(shared_data, tmp_path / "ds", "object_detection")


def test_coco128_yolo_labels_match_coco_json(coco128_yolo, shared_data):
    yolo = read_yolo(coco128_yolo)
    coco = read_coco(shared_data / "coco128" / "annotations" / "instances_train2017.json")
    assert len(yolo) == 128 and len(yolo.classes) == 80
    by_id = {im.image_id: im for im in coco.images}
    # the two label sets come from different exports: compare matched boxes only
    matched = compared = 0
    for y in yolo.images:
        c = by_id[y.image_id]
        keep = ~c.iscrowd
        cb, cl = c.boxes[keep], c.labels[keep]
        if len(cb) != len(y):
            continue
        compared += 1
        for box, lab in zip(y.boxes, y.labels):
            d = np.abs(cb - box).max(1)
            same = cl == lab  # both use the 80 classes in COCO id order
            if (same & (d <= 1.0)).any():
                matched += 1
    assert compared >= 100
    assert matched >= 0.95 * sum(len(y) for y in yolo.images if len(by_id[y.image_id]) >= len(y))
    # label files without an image are reported, not dropped silently
    assert any(p.kind == "missing_image" for p in yolo.warnings)


def test_coco128_boxes_reproduce_label_file_values(coco128_yolo):
    data = read_yolo(coco128_yolo)
    rec = data.images[0]
    rows = np.loadtxt(rec.ann_file, ndmin=2)
    wh = (rec.width, rec.height, rec.width, rec.height)
    norm = xyxy_to_cxcywh(rec.boxes.astype(np.float64)) / wh
    np.testing.assert_allclose(norm, rows[:, 1:], atol=1e-5)
    assert rec.labels.tolist() == rows[:, 0].astype(int).tolist()


def test_instance_seg_names_dict_keeps_ids(shared_data, tmp_path):
    data = read_yolo(link_coco128(shared_data, tmp_path / "seg", "instance_segmentation"))
    assert data.category_ids is not None and data.category_ids[0] == 1
    with_poly = [s for im in data.images for s in im.segments if s is not None]
    assert len(with_poly) > 100
