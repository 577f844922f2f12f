"""Top-down heatmap pose estimation as a Trainer task, plus its val and predict entry points.

Data flow: pose reader (images, people with boxes and K keypoints) -> ``PersonCrops`` (one
``imgsz`` square around each labelled person's box, keypoints mapped into it) -> train:
random rotation/scale and horizontal flip (left/right keypoints swap by the flip index) ->
collate (crops, keypoints (N, K, 3), crop maps) -> device: normalize -> model -> heatmaps
(N, K, imgsz/4, imgsz/4) -> MSE against Gaussian targets, weighted by visibility.

Evaluation decodes the heatmaps (argmax + quarter offset), maps the keypoints back through
each crop's map to image coordinates and scores them with COCO's OKS AP against the held-out
images' annotations (person score = mean heatmap peak), as a top-down model with
ground-truth boxes is evaluated.

A bottom-up model (registered with ``bottom_up: True``, e.g. ``openpose_small``) takes whole
images instead; its data, loss and grouping live in ``tasks/pose/bottom_up.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.io import list_images, read_image, write_image
from cvcraft.data.loader import build_loader
from cvcraft.data.pose import (
    PersonCrops,
    PoseSplits,
    WholeImages,
    coco_keypoints_dict,
    crop_matrix,
    load_pose,
)
from cvcraft.data.skeleton import COCO_SKELETON
from cvcraft.engine.device import autocast, select_device
from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.keypoints import keypoint_mse
from cvcraft.metrics.keypoints import COCO_SIGMAS, COCOKeypointEvaluator, pck_hits
from cvcraft.models import create_model, model_default_cfg
from cvcraft.ops.heatmaps import decode_heatmaps, decode_heatmaps_dark, gaussian_heatmaps
from cvcraft.structures import Sample
from cvcraft.tasks.base import BaseTask, take_fraction
from cvcraft.tasks.pose.bottom_up import (
    BottomUpEvaluator,
    collate_people,
    decode_people,
    stage_loss,
    to_image_np,
)
from cvcraft.tasks.pose.config import PoseConfig
from cvcraft.transforms.base import Compose, Transform
from cvcraft.transforms.geometric import HorizontalFlip, RandomAffine
from cvcraft.transforms.normalize import IMAGENET_STATS, Preprocess


def collate_pose(samples: list[Sample]) -> dict[str, Any]:
    """Crops (N, 3, S, S) uint8, keypoints (N, K, 3), crop maps (N, 2, 3), image ids (N,)."""
    if not samples:
        raise DataError("collate got an empty batch")
    imgs = np.stack([s.image for s in samples])
    return {
        "images": torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),
        "keypoints": torch.from_numpy(np.stack([s.keypoints[0] for s in samples])),
        "crop": torch.from_numpy(np.stack([s.meta["crop"] for s in samples])),
        "image_id": torch.tensor([s.meta["image_id"] for s in samples]),
        "index": torch.tensor([s.meta.get("index", -1) for s in samples]),
    }


def build_transforms(cfg: PoseConfig, flip: list[int]) -> Compose:
    """Train-time crop augmentation: random rotation/scale about the centre, then hflip."""
    steps: list[Transform] = []
    if cfg.degrees or cfg.scale:
        steps.append(RandomAffine(degrees=cfg.degrees, scale=(1 - cfg.scale, 1 + cfg.scale)))
    if cfg.hflip:
        steps.append(HorizontalFlip(p=cfg.hflip, keypoint_flip_index=flip))
    return Compose(steps)


def to_image(xy: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Crop coordinates (N, K, 2) -> image coordinates through the inverse of each crop's
    map u = a x + t (N, 2, 3)."""
    a = crop[:, :, :2].to(xy.dtype)
    t = crop[:, :, 2].to(xy.dtype)
    return torch.linalg.solve(a, (xy - t[:, None]).transpose(1, 2)).transpose(1, 2)


def decode(heatmaps: torch.Tensor, stride: float, method: str, sigma: float):
    """Keypoints (N, K, 2) and scores (N, K) by the configured decoding."""
    if method == "dark":
        return decode_heatmaps_dark(heatmaps, stride, sigma)
    return decode_heatmaps(heatmaps, stride)


def sigmas_for(cfg: PoseConfig, k: int) -> np.ndarray:
    if cfg.oks_sigmas:
        if len(cfg.oks_sigmas) != k:
            raise ConfigError(f"oks_sigmas has {len(cfg.oks_sigmas)} values for {k} keypoints")
        return np.asarray(cfg.oks_sigmas, np.float64)
    if k == len(COCO_SIGMAS):
        return COCO_SIGMAS
    raise ConfigError(f"{k} keypoints: give oks_sigmas=[...] (COCO's sigmas are for 17)")


class PoseEvaluator:
    """OKS AP of decoded heatmaps: COCO keypoint evaluation on image coordinates, the
    heatmap ``val_loss`` and PCK@0.2 (torso diameter = |left shoulder - right hip|, when the
    skeleton names them). ``update(batch, heatmaps)``; state = detections + sums."""

    def __init__(
        self,
        gt: dict[str, Any],
        sigmas: np.ndarray,
        sigma: float,
        torso: tuple[int, int] | None,
        method: str = "quarter",
    ) -> None:
        self.coco = COCOKeypointEvaluator(gt, sigmas)
        self.sigma, self.torso, self.method = sigma, torso, method
        self.reset()

    def reset(self) -> None:
        self.coco.reset()
        self.loss_sum, self.n = 0.0, 0
        self.pck_hits, self.pck_total = 0, 0

    def update(self, batch: dict[str, Any], heatmaps: torch.Tensor) -> None:
        hm = heatmaps.float().cpu()
        stride = batch["images"].shape[-1] / hm.shape[-1]  # crop px per heatmap cell
        target, weight = gaussian_heatmaps(batch["keypoints"], hm.shape[-2:], stride, self.sigma)
        self.loss_sum += float(keypoint_mse(hm, target, weight)) * len(hm)
        self.n += len(hm)
        xy, score = decode(hm, stride, self.method, self.sigma)
        if self.torso is not None:  # PCK is scale-free: crop coordinates will do
            gt = batch["keypoints"].double().numpy()
            a, b = self.torso
            both = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
            norm = np.where(both, np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1), 0)
            hits, total = pck_hits(xy.numpy(), gt, norm, 0.2)
            self.pck_hits += hits
            self.pck_total += total
        xy = to_image(xy.double(), batch["crop"].double())
        self.coco.update([{"image_id": int(i), "keypoints": xy[j:j + 1].numpy(),
                           "scores": [float(score[j].mean())]}
                          for j, i in enumerate(batch["image_id"])])  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"coco": self.coco.state_dict(), "loss_sum": self.loss_sum, "n": self.n,
                "pck": (self.pck_hits, self.pck_total)}  # fmt: skip

    def merge(self, state: dict[str, Any]) -> None:
        self.coco.merge(state["coco"])
        self.loss_sum += state["loss_sum"]
        self.n += state["n"]
        self.pck_hits += state["pck"][0]
        self.pck_total += state["pck"][1]

    def compute(self) -> dict[str, Any]:
        out = {k: v for k, v in self.coco.compute().items() if k != "iou_thresholds"}
        out["val_loss"] = self.loss_sum / max(self.n, 1)
        out["val_people"] = self.n
        if self.torso is not None:
            out["pck"] = self.pck_hits / max(self.pck_total, 1)
        return out


def is_bottom_up(name: str) -> bool:
    """Whether pose model ``name`` takes whole images (registered with ``bottom_up: True``)."""
    return bool(model_default_cfg(name).get("bottom_up"))


def build_pose_model(
    name: str, k: int, model_kwargs: dict[str, Any], skeleton: list | tuple = ()
) -> nn.Module:
    extra = {"num_limbs": len(skeleton)} if is_bottom_up(name) else {}
    return create_model(name, num_classes=k, **extra, **dict(model_kwargs))


class PoseTask(BaseTask):
    """Everything pose-specific the Trainer delegates."""

    name = "pose"

    def __init__(self, cfg: PoseConfig) -> None:
        super().__init__(cfg)
        self.cfg: PoseConfig = cfg
        self.pre = Preprocess(dict(IMAGENET_STATS), "zscore", 3)

    @property
    def bottom_up(self) -> bool:
        return is_bottom_up(self.cfg.model)

    def load_splits(self) -> PoseSplits:
        cfg = self.cfg
        return load_pose(cfg.data, cfg.val_fraction, cfg.seed, size=max(cfg.imgsz, 64),
                         people=cfg.people)  # fmt: skip

    def items(self, data: Any) -> Any:
        """What the model sees: whole images (bottom-up) or one crop per person."""
        if self.bottom_up:
            return WholeImages(data, self.cfg.imgsz)
        return PersonCrops(data, self.cfg.imgsz, self.cfg.padding)

    @property
    def collate(self) -> Any:
        return collate_people if self.bottom_up else collate_pose

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        self.gt = coco_keypoints_dict(splits.val)
        self.num_keypoints = splits.val.num_keypoints
        if not hasattr(self, "skeleton"):
            self.skeleton = [list(s) for s in splits.val.skeleton]
        items = self.items(splits.val)
        if len(items) == 0 or not self.gt["annotations"]:
            raise DataError(f"{cfg.data}: the val split has no labelled person")
        ds = AugmentedDataset(items, None, cfg.seed)
        return build_loader(ds, cfg.batch, shuffle=False, workers=cfg.workers, seed=cfg.seed,
                            collate_fn=self.collate)  # fmt: skip

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        self.classes = list(splits.classes)
        self.check_resume(trainer)
        train = take_fraction(splits.train, cfg.fraction, cfg.seed)
        self.val_data = splits.val
        self.keypoint_names = list(train.keypoint_names)
        self.skeleton = [list(s) for s in train.skeleton]
        items = self.items(train)
        ds = AugmentedDataset(items, build_transforms(cfg, train.flip_index), cfg.seed)
        trainer.train_loader = build_loader(
            ds, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed, drop_last=True,
            collate_fn=self.collate,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            what = "images" if self.bottom_up else "people"
            raise DataError(f"{cfg.data}: {len(items)} training {what} < batch={cfg.batch}")
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_pose_model(cfg.model, self.num_keypoints, cfg.model_kwargs, self.skeleton)
        trainer.model = model.to(trainer.device)
        self.pre = self.pre.to(trainer.device)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**super().checkpoint_meta(), "num_keypoints": self.num_keypoints,
                "keypoint_names": self.keypoint_names, "skeleton": self.skeleton,
                "padding": self.cfg.padding, "sigma": self.cfg.sigma,
                "paf_width": self.cfg.paf_width}  # fmt: skip

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_pose_model(state["model_name"], state["num_keypoints"],
                                state.get("model_kwargs") or {},
                                state.get("skeleton") or ())  # fmt: skip

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        self.cfg.model = str(state.get("model_name", self.cfg.model))
        if state.get("skeleton"):
            self.skeleton = [list(s) for s in state["skeleton"]]
        self.cfg.imgsz = int(state.get("imgsz", self.cfg.imgsz))
        self.cfg.padding = float(state.get("padding", self.cfg.padding))
        self.cfg.sigma = float(state.get("sigma", self.cfg.sigma))
        self.cfg.paf_width = float(state.get("paf_width", self.cfg.paf_width))
        self.pre = self.pre.to(self.device)

    def _forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(self.pre(batch["images"].to(self.device, non_blocking=True)))

    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        if self.bottom_up:
            out = self._forward(model, batch)
            loss = stage_loss(out, batch["keypoints"].to(self.device), self.skeleton,
                              model_stride(model), self.cfg.sigma, self.cfg.paf_width)  # fmt: skip
            return loss, int(batch["images"].shape[0])
        hm = self._forward(model, batch)
        kp = batch["keypoints"].to(self.device)
        target, weight = gaussian_heatmaps(kp, hm.shape[-2:], model_stride(model), self.cfg.sigma)
        return keypoint_mse(hm.float(), target, weight), int(hm.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        if self.bottom_up:  # eval mode: the last stage's (heatmaps, fields)
            heat, fields = self._forward(model, batch)
            return heat.float(), fields.float()
        return self._forward(model, batch).float()

    def build_evaluators(self) -> dict[str, Any]:
        sig = sigmas_for(self.cfg, self.num_keypoints)
        if self.bottom_up:
            cfg = self.cfg
            return {"keypoints": BottomUpEvaluator(self.gt, sig, self.skeleton, cfg.sigma,
                                                   cfg.paf_width, cfg.peak_threshold)}  # fmt: skip
        names = list(self.gt["categories"][0]["keypoints"])
        torso = None
        if "left_shoulder" in names and "right_hip" in names:
            torso = (names.index("left_shoulder"), names.index("right_hip"))
        return {"keypoints": PoseEvaluator(self.gt, sig, self.cfg.sigma, torso, self.cfg.decode)}

    @staticmethod
    def predict(cfg: PoseConfig, out: Path) -> list[dict[str, Any]]:
        return predict_pose(cfg, out)


def model_stride(model: nn.Module) -> int:
    """The heatmap stride of a (possibly wrapped) pose model (4 for SimpleBaseline)."""
    return int(getattr(getattr(model, "module", model), "stride", 4))


# ----------------------------------------------------------------------------- predict
@torch.no_grad()
def predict_pose(cfg: PoseConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict pose source=...``: each image is taken as one person crop (the whole
    image, padded to a square), or for a bottom-up model searched for every person; writes the
    skeletons drawn on the image (``images/``) and the keypoints as COCO results JSON
    (``keypoints.json``)."""
    device = select_device(cfg.device)
    model, state = PoseTask.load_model(cfg.weights, device)
    pre = Preprocess(dict(IMAGENET_STATS), "zscore", 3).to(device)
    size = int(state["imgsz"])
    cfg.sigma = float(state.get("sigma", cfg.sigma))
    skeleton = [tuple(s) for s in state.get("skeleton") or COCO_SKELETON]
    results, coco = [], []
    src = Path(cfg.source)
    for image_id, f in enumerate(list_images(src), 1):
        image = read_image(f)
        h, w = image.shape[:2]
        m = crop_matrix(np.array([0, 0, w, h]), size, 1.0)
        m_idx = m.copy()
        m_idx[:, 2] += 0.5 * m[:, :2].sum(1) - 0.5
        crop = cv2.warpAffine(image, m_idx, (size, size), flags=cv2.INTER_LINEAR)
        x = pre(torch.from_numpy(crop).permute(2, 0, 1)[None].to(device))
        with autocast(device, cfg.amp):
            y = model(x)
        if is_bottom_up(str(state["model_name"])):
            people, scores = decode_people(y[0], y[1], skeleton, model_stride(model),
                                           cfg.peak_threshold)[0]  # fmt: skip
            kps = np.concatenate([to_image_np(people[..., :2], m), people[..., 2:]], -1)
        else:
            xy, score = decode(y.float().cpu(), model_stride(model), cfg.decode, cfg.sigma)
            xy = to_image(xy.double(), torch.from_numpy(m)[None])[0].numpy()
            kps = np.concatenate([xy, score[0].numpy()[:, None]], 1)[None]
            scores = kps[..., 2].mean(1)
        drawn = image
        for kp in kps:
            drawn = draw_skeleton(drawn, kp[:, :2], kp[:, 2], skeleton, cfg.kpt_threshold)
        rel = f.relative_to(src) if src.is_dir() else Path(f.name)
        path = out / "images" / rel.with_suffix(".png")
        write_image(path, drawn)
        for kp, sc in zip(kps, scores):
            coco.append({"image_id": image_id, "file_name": str(f), "category_id": 1,
                         "keypoints": kp.ravel().tolist(), "score": float(sc)})  # fmt: skip
        found = int((kps[..., 2] > cfg.kpt_threshold).sum())
        results.append({"path": str(f), "image": str(path), "keypoints": kps.tolist(),
                        "summary": f"{len(kps)} people, {found} keypoints above "
                                   f"{cfg.kpt_threshold:g}"})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "keypoints.json").write_text(json.dumps(coco))
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    return results


def draw_skeleton(image: np.ndarray, xy: np.ndarray, score: np.ndarray,
                  skeleton: list[tuple[int, int]], threshold: float) -> np.ndarray:  # fmt: skip
    """Limbs and keypoints above ``threshold`` drawn on a copy of ``image``."""
    img = image.copy()
    r = max(1, round(min(img.shape[:2]) / 80))
    p = np.round((xy - 0.5) * 16).astype(np.int32)
    for a, b in skeleton:
        if score[a] > threshold and score[b] > threshold:
            cv2.line(img, tuple(p[a]), tuple(p[b]), (0, 255, 0), r, cv2.LINE_AA, 4)
    for k in np.flatnonzero(score > threshold):
        cv2.circle(img, tuple(p[k]), r * 16, (255, 0, 0), -1, cv2.LINE_AA, 4)
    return img


# ----------------------------------------------------------------------------- data tools
def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) of ``data`` read as pose data (for pack and augment): whole images with
    every person's box and keypoints."""
    splits = load_pose(data, seed=seed, size=max(imgsz or 64, 64))
    return splits.train, splits.val


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train pose`` builds with default keys (person crops,
    rotated, scaled and flipped with the left/right swap), for ``cvcraft augment``."""
    cfg = PoseConfig(imgsz=imgsz, seed=seed)
    return AugmentedDataset(PersonCrops(source, imgsz, cfg.padding),
                            build_transforms(cfg, source.flip_index), seed)  # fmt: skip
