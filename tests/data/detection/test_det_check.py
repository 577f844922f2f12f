"""check_dataset finds every planted problem, one of each kind, with the right file and line."""

import json
import os
from pathlib import Path

import numpy as np
import yaml

from cvcraft.data.detection import check_dataset
from cvcraft.data.io import write_image


def _img(path: Path, h: int = 20, w: int = 40) -> None:
    write_image(path, np.full((h, w, 3), 128, np.uint8))


def _found(problems) -> set[tuple[str, int | None, str]]:
    return {(os.path.basename(p.file), p.line, p.kind) for p in problems}


def test_yolo_every_problem(tmp_path):
    imgs, lbls = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    lbls.mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["a"]}))
    _img(imgs / "a.jpg")
    (lbls / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "0 0.9 0.5 0.4 0.2\n"  # 2: x2 = 1.1 * w
        "0 0.5 0.5 0 0.2\n"  # 3: zero width
        "3 0.5 0.5 0.2 0.2\n"  # 4: class 3 of 1
        "0 0.5\n"  # 5: malformed
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "0 x 0.5 0.2 0.2\n"  # 7: malformed
    )
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (lbls / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _img(imgs / "dup.jpg")
    _img(imgs / "dup.png")
    (imgs / "trunc.png").write_bytes((imgs / "dup.png").read_bytes()[:60])
    got = _found(check_dataset(tmp_path))
    assert got == {
        ("a.txt", 2, "out_of_bounds"),
        ("a.txt", 3, "empty_box"),
        ("a.txt", 4, "unknown_class"),
        ("a.txt", 5, "malformed"),
        ("a.txt", 7, "malformed"),
        ("broken.jpg", None, "unreadable_image"),
        ("trunc.png", None, "unreadable_image"),
        ("orphan.txt", None, "missing_image"),
        ("dup.png", None, "duplicate_id"),
    }


def test_coco_every_problem(tmp_path):
    _img(tmp_path / "images" / "train" / "1.jpg")
    (tmp_path / "images" / "train" / "3.jpg").write_bytes(b"garbage")
    _img(tmp_path / "images" / "train" / "4.jpg", 30, 40)
    good = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
    doc = {
        "images": [
            {"id": 1, "file_name": "1.jpg", "width": 40, "height": 20},
            {"id": 2, "file_name": "2.jpg", "width": 40, "height": 20},  # missing
            {"id": 3, "file_name": "3.jpg", "width": 40, "height": 20},  # unreadable
            {"id": 4, "file_name": "4.jpg", "width": 40, "height": 20},  # really 40x30
            {"id": 4, "file_name": "1.jpg", "width": 40, "height": 20},  # duplicate id
            {"id": 5, "file_name": "../x.jpg", "width": 40, "height": 20},  # unsafe
        ],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {**good, "id": 1},
            {**good, "id": 2, "bbox": [30, 1, 20, 5]},  # 1: out of bounds
            {**good, "id": 3, "bbox": [1, 1, 0, 5]},  # 2: empty
            {**good, "id": 4, "category_id": 9},  # 3: unknown class
            {**good, "id": 4},  # 4: duplicate annotation id
            {"id": 6, "image_id": 1, "category_id": 1},  # 5: no bbox
        ],
    }
    ann = tmp_path / "annotations" / "instances_train.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(doc))
    (tmp_path / "annotations" / "instances_val.json").write_text('{"images": [')
    problems = check_dataset(tmp_path)
    got = _found(problems)
    j = "instances_train.json"
    assert got == {
        (j, 1, "out_of_bounds"),
        (j, 2, "empty_box"),
        (j, 3, "unknown_class"),
        (j, 4, "duplicate_id"),
        (j, 5, "malformed"),
        ("2.jpg", None, "missing_image"),
        ("3.jpg", None, "unreadable_image"),
        (j, None, "size_mismatch"),
        (j, 4, "duplicate_id"),  # images[4]
        (j, 5, "unsafe_path"),
        ("instances_val.json", None, "malformed"),
    }
    assert all(str(p).startswith(p.file) for p in problems)  # printable as file:line: ...
    assert any("annotation id 2" in p.message for p in problems if p.kind == "out_of_bounds")


def test_voc_every_problem(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "classes.txt").write_text("a\n")
    _img(tmp_path / "JPEGImages" / "1.jpg")

    def obj(name, box):
        corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        return f"<object><name>{name}</name><bndbox>{corners}</bndbox></object>"

    size = "<size><width>40</width><height>20</height></size>"
    objs = obj("a", (1, 1, 5, 5)) + obj("a", (30, 1, 50, 5)) + obj("a", (5, 5, 4, 9))
    objs += obj("zebra", (1, 1, 5, 5)) + "<object><name>a</name></object>"
    (tmp_path / "Annotations" / "1.xml").write_text(
        f"<annotation><filename>1.jpg</filename>{size}{objs}</annotation>"
    )
    (tmp_path / "Annotations" / "2.xml").write_text(
        f"<annotation><filename>2.jpg</filename>{size}</annotation>"
    )
    (tmp_path / "Annotations" / "3.xml").write_text("<annotation><filename>")
    got = _found(check_dataset(tmp_path))
    assert got == {
        ("1.xml", 1, "out_of_bounds"),
        ("1.xml", 2, "empty_box"),
        ("1.xml", 3, "unknown_class"),
        ("1.xml", 4, "malformed"),
        ("2.jpg", None, "missing_image"),
        ("3.xml", None, "malformed"),
    }


def test_clean_coco128_has_only_known_problems(shared_data):
    problems = check_dataset(
        shared_data / "coco128" / "annotations" / "instances_train2017.json", decode_images=False
    )
    # the real file is clean apart from boxes that touch the border within float noise
    assert all(p.kind in ("out_of_bounds",) for p in problems), problems[:3]
