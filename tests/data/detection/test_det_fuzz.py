"""Fuzz: random and mutated COCO JSON / YOLO txt / VOC XML bytes only ever raise DataError."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcraft.data.detection import read_coco, read_voc, read_yolo
from cvcraft.data.io import write_image
from cvcraft.errors import DataError

FUZZ = settings(
    derandomize=True,  # a failure reproduces: the same examples every run
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

COCO_SEED = json.dumps(
    {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 2, 2],
                "iscrowd": 0,
                "segmentation": [[1, 1, 3, 1, 3, 3]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 8, 6],
                "iscrowd": 1,
                "segmentation": {"size": [6, 8], "counts": "=3300000;"},
            },
        ],
    }  # fmt: skip
).encode()
YOLO_SEED = b"0 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.3 0.1 0.3 0.3\n"
VOC_SEED = (
    b"<annotation><filename>a.jpg</filename><size><width>8</width><height>6</height></size>"
    b"<object><name>x</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
    b"<xmax>4</xmax><ymax>5</ymax></bndbox></object></annotation>"
)


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or the valid seed with a slice replaced / bytes flipped / cut short."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data)))
            j = draw(st.integers(i, min(len(data), i + 8)))
            data[i:j] = draw(st.binary(max_size=8))
        return bytes(data)

    return st.one_of(st.binary(max_size=300), mutate())


@pytest.fixture(scope="module")
def image_dir():
    with tempfile.TemporaryDirectory() as d:
        write_image(Path(d) / "a.jpg", np.zeros((6, 8, 3), np.uint8))
        yield Path(d)


def _only_data_error(fn) -> None:
    try:
        fn()
    except DataError:
        pass


@FUZZ
@given(mutated(COCO_SEED))
def test_coco_fuzz(image_dir, data):
    path = image_dir / "ann.json"
    path.write_bytes(data)
    _only_data_error(lambda: read_coco(path, image_dir))


@FUZZ
@given(mutated(YOLO_SEED))
def test_yolo_fuzz(image_dir, data):
    root = image_dir / "yolo"
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    img = root / "images" / "train" / "a.jpg"
    if not img.exists():
        img.write_bytes((image_dir / "a.jpg").read_bytes())
        (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["x"]}))
    (root / "labels" / "train" / "a.txt").write_bytes(data)
    _only_data_error(lambda: read_yolo(root))


@FUZZ
@given(mutated(VOC_SEED))
def test_voc_fuzz(image_dir, data):
    root = image_dir / "voc"
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    img = root / "JPEGImages" / "a.jpg"
    if not img.exists():
        img.write_bytes((image_dir / "a.jpg").read_bytes())
    (root / "Annotations" / "a.xml").write_bytes(data)
    _only_data_error(lambda: read_voc(root))


def test_seeds_are_valid(image_dir):
    # the mutations start from files that read cleanly, so the fuzzers reach deep code
    path = image_dir / "seed.json"
    path.write_bytes(COCO_SEED)
    data = read_coco(path, image_dir)
    assert len(data.images[0]) == 2 and data.instance_masks(0).shape == (2, 6, 8)
