"""COCO reader/writer: coco128 against pycocotools' COCO API; safety and error messages."""

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from cvcraft.data.detection import read_coco, write_coco
from cvcraft.data.io import write_image
from cvcraft.errors import DataError
from cvcraft.ops.masks import rle_decode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def make_coco(tmp: Path, anns=None, images=None) -> Path:
    """A 2-image COCO dataset with real JPEGs: tmp/images/train, tmp/annotations/*.json."""
    img_dir = tmp / "images" / "train"
    rng = np.random.default_rng(0)
    for name, (h, w) in (("1.jpg", (40, 60)), ("2.jpg", (30, 50))):
        write_image(img_dir / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    doc = {
        "images": images
        or [
            {"id": 1, "file_name": "1.jpg", "width": 60, "height": 40},
            {"id": 2, "file_name": "2.jpg", "width": 50, "height": 30},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": anns
        or [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [1.5, 2, 10, 20], "iscrowd": 0,
             "segmentation": [[1.5, 2, 11.5, 2, 11.5, 22, 1.5, 22]], "area": 200},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [30, 5, 20, 10], "iscrowd": 1,
             "segmentation": {"size": [40, 60], "counts": [1805, 10, 585]}, "area": 10},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [0, 0, 50, 30], "iscrowd": 0},
        ],
    }  # fmt: skip
    path = tmp / "annotations" / "instances_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_read_small_dataset(tmp_path):
    data = read_coco(make_coco(tmp_path))
    assert data.classes == ["cat", "dog"] and data.category_ids == [3, 7]
    assert data.root == str(tmp_path / "images" / "train")
    a, b = data.images
    np.testing.assert_allclose(a.boxes, [[1.5, 2, 11.5, 22], [30, 5, 50, 15]])
    assert a.labels.tolist() == [1, 0] and a.iscrowd.tolist() == [False, True]
    assert a.ann_ids.tolist() == [10, 11] and a.ann_lines.tolist() == [0, 1]
    assert b.segments == [None]
    s = data.sample(0, masks=True)
    assert s.image.shape == (40, 60, 3) and s.masks.shape == (2, 40, 60)
    assert s.masks[0].sum() == 200  # pixel centres inside [1.5, 11.5) x [2, 22): 10 x 20
    assert np.array_equal(s.masks[1], rle_decode(a.segments[1]))
    assert s.meta["image_id"] == 1 and s.meta["orig_size"] == (40, 60)
    assert s.meta["iscrowd"].tolist() == [False, True]
    assert "2 objects" in data.describe(0) and "1.jpg" in data.describe(0)


def test_coco128_boxes_equal_pycocotools(shared_data):
    ann = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    data = read_coco(ann)
    coco = COCO(str(ann))
    assert len(data) == 128 == len(coco.getImgIds())
    assert data.category_ids == sorted(coco.getCatIds())
    assert data.classes == [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))]
    for rec in data.images:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=rec.image_id))
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        expect = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        np.testing.assert_allclose(rec.boxes, expect, atol=1e-4)
        assert [data.category_ids[k] for k in rec.labels] == [a["category_id"] for a in anns]
        assert rec.iscrowd.tolist() == [bool(a["iscrowd"]) for a in anns]
        assert rec.ann_ids.tolist() == [a["id"] for a in anns]
    assert Path(data.images[0].path).is_file()


def test_write_read_round_trip_keeps_everything(tmp_path):
    data = read_coco(make_coco(tmp_path / "a"))
    out = write_coco(data, tmp_path / "a" / "annotations" / "copy.json")
    back = read_coco(out, data.root)
    assert back.classes == data.classes and back.category_ids == data.category_ids
    for x, y in zip(data.images, back.images):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-4)
        assert x.labels.tolist() == y.labels.tolist() and x.path == y.path
        assert x.iscrowd.tolist() == y.iscrowd.tolist() and x.ann_ids.tolist() == y.ann_ids.tolist()
        assert x.segments == y.segments
    # pycocotools accepts what we wrote
    coco = COCO(str(out))
    assert sorted(coco.getAnnIds()) == [10, 11, 12]


def test_coco128_write_loads_in_pycocotools(shared_data, tmp_path):
    data = read_coco(shared_data / "coco128" / "annotations" / "instances_train2017.json")
    out = write_coco(data, tmp_path / "x.json")
    ref = json.loads((shared_data / "coco128/annotations/instances_train2017.json").read_text())
    got = json.loads(out.read_text())
    ref_anns = {a["id"]: a for a in ref["annotations"]}
    for a in got["annotations"]:
        r = ref_anns[a["id"]]
        np.testing.assert_allclose(a["bbox"], r["bbox"], atol=1e-3)
        assert a["category_id"] == r["category_id"] and a["segmentation"] == r["segmentation"]
        assert a["area"] == pytest.approx(r["area"], abs=1e-3)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"index 1|:1: .*bbox"),
        (lambda d: d["annotations"][0].update(category_id=99), r":0: \[unknown_class\]"),
        (lambda d: d["annotations"][2].update(id=10), r":2: \[duplicate_id\]"),
        (lambda d: d["images"][1].update(id=1), r":1: \[duplicate_id\]"),
        (lambda d: d["annotations"][0].update(image_id=5), r":0: .*image_id 5"),
        (lambda d: d["annotations"][0].update(bbox=[0, 0, float("nan"), 1]), "finite"),
        (lambda d: d["annotations"][1]["segmentation"].update(counts=[1, 2]), "RLE"),
        (lambda d: d.pop("images"), "images"),
    ],
)
def test_malformed_raises_data_error_naming_file_and_index(tmp_path, mutate, match):
    path = make_coco(tmp_path)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=match) as e:
        read_coco(path)
    assert str(path) in str(e.value)


def test_not_json_raises(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_coco(p, tmp_path)


def test_file_name_outside_root_is_refused(tmp_path):
    images = [
        {"id": 1, "file_name": "../../../etc/passwd", "width": 60, "height": 40},
        {"id": 2, "file_name": "2.jpg", "width": 50, "height": 30},
    ]
    path = make_coco(tmp_path, images=images)
    with pytest.raises(DataError, match="outside the dataset root"):
        read_coco(path)
    data = read_coco(path, allow_outside_root=True)
    assert data.images[0].path.endswith("/etc/passwd")
    assert not data.images[0].path.startswith(data.root)
    images[0]["file_name"] = "/etc/passwd"
    path = make_coco(tmp_path, images=images)
    with pytest.raises(DataError, match="outside"):
        read_coco(path)


def test_sample_refuses_size_mismatch(tmp_path):
    images = [
        {"id": 1, "file_name": "1.jpg", "width": 60, "height": 40},
        {"id": 2, "file_name": "2.jpg", "width": 51, "height": 30},
    ]
    data = read_coco(make_coco(tmp_path, images=images))
    with pytest.raises(DataError, match="50x30"):
        data.sample(1)
