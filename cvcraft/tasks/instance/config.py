"""Instance segmentation keys: the detection keys, with a mask model and COCO's 100
detections per image by default."""

from __future__ import annotations

from dataclasses import dataclass

from cvcraft.engine.config import _opt
from cvcraft.errors import ConfigError
from cvcraft.tasks.detect.config import DetectConfig


@dataclass
class InstanceConfig(DetectConfig):
    """Instance segmentation keys: every detection key (augmentation, NMS, ...) plus the
    mask threshold; the model must predict masks (``cvcraft models`` task ``instance``)."""

    data: str = _opt(
        "shapes",
        "dataset: 'shapes[:N]', COCO json (polygons / RLE) or YOLO-seg data yaml",
    )
    model: str = _opt("yolo_seg_n", "instance model: yolo_seg_p/n/s or maskrcnn_resnet18/50_fpn")
    max_det: int = _opt(100, "maximum detections per image (COCO's mask AP counts 100)")
    mask_threshold: float = _opt(0.5, "a pixel is in a predicted mask when its probability > this")

    def check(self) -> None:
        super().check()
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask_threshold={self.mask_threshold} must be in (0, 1)")
        if self.multi_scale:
            raise ConfigError("multi_scale=true is for detect; instance trains at imgsz")
        if self.tta:
            raise ConfigError("tta=true merges boxes only; instance has no mask TTA (drop tta=)")
