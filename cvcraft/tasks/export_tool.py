"""``cvcraft export``: an ONNX or TorchScript file from a checkpoint of any task, with its
parity check against eager PyTorch printed.

Classifiers export logits (B, K) from normalised input; segmenters logits (B, K, H, W) from
normalised input; detectors with a ``decode`` (the YOLOs) export their decoded candidates,
boxes (B, N, 4) xyxy pixels and class scores (B, N, C), from 0-1 input, with NMS outside
the graph; ``nms=true`` puts the post-processing in the graph instead (one image per call:
boxes (K, 4), scores (K,), labels (K,)), checked against the model's own ``postprocess``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.ops import batched_nms

from cvcraft.engine.export import FORMATS, export_model, parity
from cvcraft.errors import ConfigError
from cvcraft.tasks.classify.classic import refuse_classic
from cvcraft.tasks.model_tools import (
    checkpoint_metadata,
    int_arg,
    load_task_model,
    parse_bool,
    parse_number,
)


class DecodedDetector(nn.Module):
    """A detector as deployed: image -> (boxes (B, N, 4), scores (B, N, C)), before NMS."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(self.model(x))


class DetectorWithNMS(nn.Module):
    """One image (1, 3, H, W) -> its detections as ``postprocess`` gives them: every
    (candidate, class) score above ``conf``, class-aware greedy NMS at ``iou``, the best
    ``max_det``. Uses torchvision's NMS, which exports to ONNX's NonMaxSuppression."""

    def __init__(self, model: nn.Module, conf: float, iou: float, max_det: int) -> None:
        super().__init__()
        self.model, self.conf, self.iou, self.max_det = model, conf, iou, max_det

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, scores = self.model.decode(self.model(x))
        b, s = boxes[0], scores[0]  # (N, 4), (N, C)
        cell, label = torch.nonzero(s > self.conf, as_tuple=True)
        kept_scores = s[cell, label]
        keep = batched_nms(b[cell], kept_scores, label, self.iou)[: self.max_det]
        return b[cell][keep], kept_scores[keep], label[keep]


EXPORT_KEYS = {
    "weights": "checkpoint (runs/.../best.pt) of a classifier, detector or segmenter",
    "format": f"{' | '.join(FORMATS)} (default onnx)",
    "dynamic": "true: symbolic batch axis (ONNX) (default false)",
    "opset": "ONNX opset (default 17)",
    "batch": "batch size of the traced input (default 1)",
    "imgsz": "input size (default: the checkpoint's)",
    "nms": "detectors: true puts thresholding + NMS in the graph (one image per call)",
    "conf": "detectors with nms=true: score threshold (default 0.25)",
    "iou": "detectors with nms=true: NMS IoU threshold (default 0.7)",
    "max_det": "detectors with nms=true: detections kept (default 300)",
    "half": "fp16 export (needs a CUDA device; not available on the CPU) (default false)",
    "out": "output file (default: beside weights, model.onnx / model.ts)",
}


def run_export(args: dict[str, str]) -> dict[str, Any]:
    """``cvcraft export``: write the ONNX / TorchScript file and print its parity check
    against eager PyTorch (max |difference| and the tolerance)."""
    fmt = args.get("format", "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    if parse_bool(args.get("half", "false"), "half"):
        raise ConfigError("half=true exports fp16, which needs a CUDA device; export fp32 here")
    weights = Path(args["weights"])
    if weights.suffix != ".pt":
        raise ConfigError(f"weights={weights}: export needs a .pt checkpoint")
    task, model, state = load_task_model(weights, torch.device("cpu"))
    refuse_classic(state, "export")
    if task == "detect":
        if not hasattr(model, "decode"):
            raise ConfigError(
                f"{state.get('model_name')} has no decode(): its post-processing is not a graph "
                "(Faster R-CNN samples proposals in Python); export a YOLO"
            )
    nms = parse_bool(args.get("nms", "false"), "nms")
    if nms and task != "detect":
        raise ConfigError(f"nms=true is for detectors; this is a {task} checkpoint")
    c, s = int(state.get("in_chans", 3)), int_arg(args, "imgsz", int(state.get("imgsz", 224)), 1)
    b, dynamic = int_arg(args, "batch", 1, 1), parse_bool(args.get("dynamic", "false"), "dynamic")
    if nms and (b != 1 or dynamic):
        raise ConfigError("nms=true exports one image per call: use batch=1, dynamic=false")
    detector = model
    if nms:
        conf, iou = (
            parse_number(args.get("conf", "0.25"), "conf"),
            parse_number(args.get("iou", "0.7"), "iou"),
        )
        model = DetectorWithNMS(detector, conf, iou, int_arg(args, "max_det", 300, 1)).eval()
    elif task == "detect":
        model = DecodedDetector(detector).eval()
    g = torch.Generator().manual_seed(0)
    draw = torch.rand if task == "detect" else torch.randn  # detectors take 0-1 pixels
    example = draw(b, c, s, s, generator=g)
    check = draw(b + 2 if dynamic else b, c, s, s, generator=g)
    suffix = ".onnx" if fmt == "onnx" else ".ts"
    out = Path(args.get("out") or weights.with_name(f"model{suffix}"))
    report = export_model(
        model, example, out, fmt, opset=int_arg(args, "opset", 17, 1), dynamic=dynamic,
        check=check, metadata=checkpoint_metadata(state),
    )  # fmt: skip
    if nms:  # the graph's post-processing against the library's own
        with torch.no_grad():
            ref = detector.postprocess(detector(check), conf=model.conf, iou=model.iou,
                                       max_det=model.max_det)[0]  # fmt: skip
            mine = model(check)
        same = parity((ref["boxes"], ref["scores"], ref["labels"].float()),
                      (mine[0], mine[1], mine[2].float()))  # fmt: skip
        report["same_as_postprocess"] = bool(same["ok"])
        print(f"in-graph NMS vs model.postprocess: {len(mine[0])} vs {len(ref['boxes'])} boxes, "
              f"{'same' if same['ok'] else 'DIFFERENT'}")  # fmt: skip
    verdict = "OK" if report["ok"] else "MISMATCH"
    print(f"export: wrote {out} ({report['bytes'] / 1e6:.2f} MB, {fmt})")
    print(f"parity vs PyTorch on a batch of {len(check)}: max |diff| {report['max_abs_diff']:.2e} "
          f"(tolerance {report['atol']:.1e} + {report['rtol']:.0e}*|y|) {verdict}")  # fmt: skip
    return report
