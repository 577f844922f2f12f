"""Bottom-up pose (OpenPose): whole images in, every person out, for the pose task.

Data flow: pose reader -> ``WholeImages`` (each image letterboxed into an ``imgsz`` square
with all its people) -> train: random rotation/scale and hflip (left/right swap) -> collate
(images, keypoints padded to (N, P, K, 3) with v = 0, maps back to the image) -> model ->
per stage heatmaps (N, K, h, w) and part affinity fields (N, 2L, h, w) -> MSE against the
targets at every stage (heatmap target = max over people of each person's Gaussian; field
target = ``ops.paf.paf_targets``).

Evaluation groups the last stage's maps into people (``ops.paf.group_people``), maps them
back to image coordinates and scores them with COCO's OKS AP against the held-out images'
annotations (person score = mean peak value over the K keypoints).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cvcraft.errors import DataError
from cvcraft.losses.keypoints import multi_stage_mse
from cvcraft.metrics.keypoints import COCOKeypointEvaluator
from cvcraft.ops.heatmaps import gaussian_heatmaps
from cvcraft.ops.paf import group_people, paf_targets
from cvcraft.structures import Sample


def collate_people(samples: list[Sample]) -> dict[str, Any]:
    """Images (N, 3, S, S) uint8, keypoints (N, P, K, 3) zero-padded to the most people,
    ``counts`` (N,), crop maps (N, 2, 3), image ids (N,)."""
    if not samples:
        raise DataError("collate got an empty batch")
    k = samples[0].keypoints.shape[1]
    p = max(1, max(len(s.keypoints) for s in samples))
    kp = np.zeros((len(samples), p, k, 3), np.float32)
    for i, s in enumerate(samples):
        kp[i, : len(s.keypoints)] = s.keypoints
    imgs = np.stack([s.image for s in samples])
    return {
        "images": torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),
        "keypoints": torch.from_numpy(kp),
        "counts": torch.tensor([len(s.keypoints) for s in samples]),
        "crop": torch.from_numpy(np.stack([s.meta["crop"] for s in samples])),
        "image_id": torch.tensor([s.meta["image_id"] for s in samples]),
        "index": torch.tensor([s.meta.get("index", -1) for s in samples]),
    }


def bottom_up_targets(
    keypoints: torch.Tensor,
    skeleton: Sequence[tuple[int, int]],
    size: tuple[int, int],
    stride: float,
    sigma: float,
    width: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap targets (N, K, h, w) = max over each image's people of their Gaussians, and
    field targets (N, 2L, h, w). keypoints (N, P, K, 3), v = 0 rows are padding."""
    n, p, k, _ = keypoints.shape
    hm, _ = gaussian_heatmaps(keypoints.reshape(n * p, k, 3), size, stride, sigma)
    heat = hm.reshape(n, p, k, *size).amax(1)
    kp = keypoints.detach().cpu().double().numpy()
    fields = np.stack([paf_targets(kp[i], skeleton, size, stride, width) for i in range(n)])
    return heat, torch.from_numpy(fields).to(heat.device)


def stage_loss(
    outputs: tuple[list[torch.Tensor], list[torch.Tensor]],
    keypoints: torch.Tensor,
    skeleton: Sequence[tuple[int, int]],
    stride: float,
    sigma: float,
    width: float,
) -> torch.Tensor:
    """OpenPose's intermediate supervision: sum over stages of the heatmap and field MSEs."""
    heats, pafs = outputs
    heat_t, paf_t = bottom_up_targets(keypoints, skeleton, tuple(heats[-1].shape[-2:]),
                                      stride, sigma, width)  # fmt: skip
    return multi_stage_mse([h.float() for h in heats], heat_t) + multi_stage_mse(
        [f.float() for f in pafs], paf_t
    )


def decode_people(
    heat: torch.Tensor,
    fields: torch.Tensor,
    skeleton: Sequence[tuple[int, int]],
    stride: float,
    threshold: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image of the batch, the grouped people (P, K, 3) in input pixels (x, y, peak
    value) and their scores (P,) = mean peak value over the K keypoints."""
    out = []
    for h, f in zip(heat.float().cpu().numpy(), fields.float().cpu().numpy()):
        people = group_people(h, f, skeleton, stride, threshold)
        out.append((people, people[..., 2].mean(1) if len(people) else np.zeros(0)))
    return out


def to_image_np(xy: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Input-square coordinates (P, K, 2) -> image coordinates through the inverse of one
    letterbox map u = a x + t (2, 3)."""
    return (xy - crop[:, 2]) @ np.linalg.inv(crop[:, :2]).T


class BottomUpEvaluator:
    """OKS AP of grouped people in image coordinates and the last stage's ``val_loss``.
    ``update(batch, (heatmaps, fields))``; state = detections + sums."""

    def __init__(
        self,
        gt: dict[str, Any],
        sigmas: np.ndarray,
        skeleton: Sequence[tuple[int, int]],
        sigma: float,
        width: float,
        threshold: float,
    ) -> None:
        self.coco = COCOKeypointEvaluator(gt, sigmas)
        self.skeleton = [tuple(s) for s in skeleton]
        self.sigma, self.width, self.threshold = sigma, width, threshold
        self.reset()

    def reset(self) -> None:
        self.coco.reset()
        self.loss_sum, self.n, self.found = 0.0, 0, 0

    def update(self, batch: dict[str, Any], outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        heat, fields = (o.float().cpu() for o in outputs)
        stride = batch["images"].shape[-1] / heat.shape[-1]
        loss = stage_loss(([heat], [fields]), batch["keypoints"], self.skeleton, stride,
                          self.sigma, self.width)  # fmt: skip
        self.loss_sum += float(loss) * len(heat)
        self.n += len(heat)
        crops = batch["crop"].double().numpy()
        preds = []
        for (people, scores), crop, img in zip(
            decode_people(heat, fields, self.skeleton, stride, self.threshold), crops,
            batch["image_id"].tolist(),
        ):  # fmt: skip
            self.found += len(people)
            if len(people):
                xy = to_image_np(people[..., :2], crop)
                preds.append({"image_id": int(img), "keypoints": xy, "scores": scores.tolist()})
        self.coco.update(preds)

    def state_dict(self) -> dict[str, Any]:
        return {"coco": self.coco.state_dict(), "loss_sum": self.loss_sum, "n": self.n,
                "found": self.found}  # fmt: skip

    def merge(self, state: dict[str, Any]) -> None:
        self.coco.merge(state["coco"])
        self.loss_sum += state["loss_sum"]
        self.n += state["n"]
        self.found += state["found"]

    def compute(self) -> dict[str, Any]:
        out = {k: v for k, v in self.coco.compute().items() if k != "iou_thresholds"}
        out["val_loss"] = self.loss_sum / max(self.n, 1)
        out["val_images"] = self.n
        out["people_found"] = self.found
        return out
