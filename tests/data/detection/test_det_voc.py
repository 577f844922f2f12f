"""VOC reader/writer: 1-based coordinates, flags, safe XML (billion laughs, XXE)."""

import time
from pathlib import Path

import numpy as np
import pytest

from cvcraft.data.detection import parse_xml_safely, read_voc, write_voc
from cvcraft.data.io import write_image
from cvcraft.errors import DataError

XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>50</width><height>40</height><depth>3</depth></size>
  <object><name>dog</name><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
  <object><name>cat</name><difficult>1</difficult>
    <bndbox><xmin>11</xmin><ymin>6</ymin><xmax>20.5</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def make_voc(tmp: Path, xml: str = XML, names=("000001", "000002")) -> Path:
    (tmp / "Annotations").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in names:
        (tmp / "Annotations" / f"{n}.xml").write_text(xml.format(name=n))
        write_image(tmp / "JPEGImages" / f"{n}.jpg", rng.integers(0, 255, (40, 50, 3), np.uint8))
    return tmp


def test_read_converts_one_based_to_edges(tmp_path):
    data = read_voc(make_voc(tmp_path))
    assert data.classes[:3] == ["aeroplane", "bicycle", "bird"]  # all names are VOC classes
    rec = data.images[0]
    np.testing.assert_allclose(rec.boxes, [[0, 0, 50, 40], [10, 5, 20.5, 30]])
    assert [data.classes[k] for k in rec.labels] == ["dog", "cat"]
    assert rec.truncated.tolist() == [True, False] and rec.difficult.tolist() == [False, True]
    assert rec.image_id == 1 and data.sample(1).image.shape == (40, 50, 3)


def test_split_list_and_unknown_class(tmp_path):
    root = make_voc(tmp_path)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("000002\n")
    assert [im.image_id for im in read_voc(root, "val").images] == [2]
    with pytest.raises(DataError, match=r"000001\.xml:0: \[unknown_class\]"):
        read_voc(root, classes=["cat"])


def test_write_read_round_trip(tmp_path):
    data = read_voc(make_voc(tmp_path / "a"))
    write_voc(data, tmp_path / "b")
    back = read_voc(tmp_path / "b")
    assert back.classes == data.classes  # classes.txt keeps the order
    for x, y in zip(data.images, back.images):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=0.5)
        assert x.labels.tolist() == y.labels.tolist()
        assert x.difficult.tolist() == y.difficult.tolist()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename></annotation>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE, BILLION_LAUGHS.decode().encode("utf-16")])
def test_entity_attacks_raise_quickly(tmp_path, payload):
    root = make_voc(tmp_path)
    (root / "Annotations" / "000001.xml").write_bytes(payload)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"000001\.xml.*DOCTYPE"):
        read_voc(root)
    assert time.perf_counter() - t0 < 1.0


def test_plain_xml_entities_and_errors():
    el = parse_xml_safely(b"<a><b>x &amp; y</b></a>")
    assert el.find("b").text == "x & y"
    with pytest.raises(DataError, match="malformed XML"):
        parse_xml_safely(b"<a><b></a>", "f.xml")
    with pytest.raises(DataError, match="malformed XML"):
        parse_xml_safely(b"<a>&undefined;</a>", "f.xml")


def test_filename_outside_root_refused(tmp_path):
    root = make_voc(tmp_path, XML.replace("{name}.jpg", "../../{name}.jpg"))
    with pytest.raises(DataError, match="outside the dataset root"):
        read_voc(root)
