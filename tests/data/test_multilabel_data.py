"""Multi-label readers: CSV (both layouts), folder + labels file, detection data, shapes."""

import json

import numpy as np
import pytest
import torch

from cvcraft.data.collate import Collate
from cvcraft.data.io import write_image
from cvcraft.data.multilabel import (
    MULTI_HOT,
    load_multilabel,
    make_multilabel_shapes,
    read_multilabel_csv,
)
from cvcraft.data.shapes import render_scene, split_code
from cvcraft.errors import DataError
from cvcraft.transforms.geometric import HorizontalFlip


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(names):
        write_image(folder / n, np.full((8, 8, 3), k * 20, np.uint8))


def test_csv_pipe_format_header_and_classes(tmp_path):
    _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    (tmp_path / "l.csv").write_text(
        "path,labels\n# comment\nimg/a.png,dog|cat\nimg/b.png,\nimg/c.png,cat\n"
    )
    d = read_multilabel_csv(tmp_path / "l.csv")
    assert d.classes == ["cat", "dog"]
    np.testing.assert_array_equal(d.targets, [[1, 1], [0, 0], [1, 0]])
    s = d.sample(0)
    assert s.extras[MULTI_HOT].tolist() == [1, 1] and s.image.shape == (8, 8, 3)
    fixed = read_multilabel_csv(tmp_path / "l.csv", classes=["dog", "cat", "bird"])
    np.testing.assert_array_equal(fixed.targets[0], [1, 1, 0])
    with pytest.raises(DataError, match=r"l.csv:3: label 'cat' is not in the class list"):
        read_multilabel_csv(tmp_path / "l.csv", classes=["dog"])


def test_wide_csv_carries_unknowns_and_refuses_bad_cells(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "w.csv").write_text("path,cat,dog,bird\na.png,1,-1,0\nb.png,0,1,-1\n")
    d = read_multilabel_csv(tmp_path / "w.csv")
    assert d.classes == ["cat", "dog", "bird"]
    np.testing.assert_array_equal(d.targets, [[1, -1, 0], [0, 1, -1]])
    (tmp_path / "bad.csv").write_text("path,cat,dog\na.png,1,2\n")
    with pytest.raises(DataError, match=r"bad.csv:2: need 3 fields .path then 1/0/-1"):
        read_multilabel_csv(tmp_path / "bad.csv")
    (tmp_path / "miss.csv").write_text("a.png,cat\nnope.png,dog\n")
    with pytest.raises(DataError, match=r"miss.csv:2: image .*nope.png does not exist"):
        read_multilabel_csv(tmp_path / "miss.csv")


def test_folder_with_train_and_val_csv_shares_the_class_list(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "train.csv").write_text("a.png,x|y\nb.png,y\n")
    (tmp_path / "val.csv").write_text("c.png,x\n")
    s = load_multilabel(tmp_path)
    assert s.classes == ["x", "y"] and len(s.train) == 2 and len(s.val) == 1
    np.testing.assert_array_equal(s.val.targets, [[1, 0]])
    (tmp_path / "val.csv").write_text("c.png,z\n")
    with pytest.raises(DataError, match="label 'z' is not in the class list"):
        load_multilabel(tmp_path)


def test_folder_with_labels_csv_is_split_without_loss(tmp_path):
    names = [f"{k}.png" for k in range(10)]
    _images(tmp_path, names)
    (tmp_path / "labels.csv").write_text("".join(f"{n},{'a|b' if k % 2 else 'a'}\n"
                                                 for k, n in enumerate(names)))  # fmt: skip
    s = load_multilabel(tmp_path, val_fraction=0.3, seed=1)
    assert len(s.train) == 7 and len(s.val) == 3
    seen = sorted(s.train.describe(i) for i in range(7)) + [s.val.describe(i) for i in range(3)]
    assert len(set(seen)) == 10
    assert s.train.targets.sum() + s.val.targets.sum() == 15


def test_coco_json_becomes_image_level_labels(shared_data):
    ann = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    s = load_multilabel(ann, val_fraction=0.1, seed=0)
    raw = json.loads(ann.read_text())
    cat_ids = sorted(c["id"] for c in raw["categories"])
    assert len(s.classes) == 80
    present = {}  # oracle: straight from the JSON
    for a in raw["annotations"]:
        present.setdefault(a["image_id"], set()).add(cat_ids.index(a["category_id"]))
    names = {im["id"]: im["file_name"] for im in raw["images"]}
    by_file = {names[i]: sorted(v) for i, v in present.items()}
    for part in (s.train, s.val):
        for i in range(len(part)):
            want = by_file.get(part.describe(i).split("/")[-1], [])
            assert np.flatnonzero(part.targets[i]).tolist() == want
    assert len(s.train) + len(s.val) == len(raw["images"])


def test_shapes_targets_are_the_classes_drawn_and_survive_augmentation():
    d = make_multilabel_shapes(12, 40, seed=3, split="val")
    for i in range(12):
        scene = render_scene(np.random.default_rng([3, split_code("val"), i]), 40, (1, 3),
                             size_range=(0.18, 0.32))  # fmt: skip
        assert np.flatnonzero(d.targets[i]).tolist() == sorted(set(scene.box_labels.tolist()))
        np.testing.assert_array_equal(d.load_image(i), scene.image)
    s = d.sample(5)
    flipped = HorizontalFlip(1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped.extras[MULTI_HOT], s.extras[MULTI_HOT])
    batch = Collate(("image",), extras=(MULTI_HOT,))([d.sample(i) for i in range(4)])
    assert batch[MULTI_HOT].shape == (4, 6) and batch[MULTI_HOT].dtype == torch.int8
    np.testing.assert_array_equal(batch[MULTI_HOT].numpy(), d.targets[:4])


def test_unknown_data_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_multilabel(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Accepted"):
        load_multilabel(tmp_path / "empty")
