"""Detection datasets: COCO / YOLO / VOC readers and writers, conversion and checking.

Every reader returns a ``DetectionData`` (float32 xyxy boxes, contiguous labels, crowd /
difficult flags, segments); every writer takes one, so any format converts to any other.
"""

from cvcraft.data.detection.check import check_dataset
from cvcraft.data.detection.coco import read_coco, write_coco
from cvcraft.data.detection.container import DetectionData, DetectionImage
from cvcraft.data.detection.convert import (
    FORMATS,
    ConvertReport,
    convert_dataset,
    detect_format,
    read_dataset,
    write_dataset,
)
from cvcraft.data.detection.problems import PROBLEM_KINDS, Problem
from cvcraft.data.detection.voc import VOC_CLASSES, parse_xml_safely, read_voc, write_voc
from cvcraft.data.detection.yolo import read_yolo, write_yolo

__all__ = [
    "FORMATS",
    "PROBLEM_KINDS",
    "VOC_CLASSES",
    "ConvertReport",
    "DetectionData",
    "DetectionImage",
    "Problem",
    "check_dataset",
    "convert_dataset",
    "detect_format",
    "parse_xml_safely",
    "read_coco",
    "read_dataset",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_dataset",
    "write_voc",
    "write_yolo",
]
