"""Infrared-visible image fusion as a Trainer task, plus its val and predict entry points.

Data flow: pair reader (visible RGB + ``extras["infrared"]`` grey) -> random ``imgsz`` crop
and flips (the pair moves together: the infrared is a registered ``image`` target) ->
collate (``images`` and ``infrared`` uint8) -> device: x = [infrared, visible luma Y] / 255
(N, 2, H, W) -> model -> fused luma (N, 1, H, W) -> fusion loss against both sources.

With ``strategy=add|l1`` the network is DenseFuse's auto-encoder instead: it learns to
reconstruct single images (both sources of every crop, reconstruction loss) and fuses only at
evaluation, with that rule on the encoded pairs; ``val``/``predict`` may switch the rule.

Evaluation runs each held-out pair whole (batch 1: pairs differ in size), after an optional
``resize`` of the longer side, and averages the fusion metrics of the fused luma; ``predict``
writes the fused luma back into the visible image's YCbCr (fuse Y, keep Cb, Cr), so a
colour visible image gives a colour fused image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.classic.color import rgb_to, to_rgb
from cvcraft.data.augmented import AugmentedDataset
from cvcraft.data.collate import Collate
from cvcraft.data.fusion import INFRARED, FusionSplits, load_fusion, pair_fusion_folders
from cvcraft.data.io import write_image
from cvcraft.data.loader import build_loader
from cvcraft.engine.device import autocast, select_device
from cvcraft.errors import ConfigError, DataError
from cvcraft.losses.fusion import FusionLoss, ReconstructionLoss
from cvcraft.metrics.fusion import FusionEvaluator, fusion_metrics, to_uint8
from cvcraft.models import create_model
from cvcraft.structures import Sample
from cvcraft.tasks.base import BaseTask, take_fraction
from cvcraft.tasks.fuse.config import FuseConfig
from cvcraft.transforms.base import Compose, Transform
from cvcraft.transforms.geometric import HorizontalFlip, PadRandomCrop, Resize, VerticalFlip

collate_fuse = Collate(("image",), extras=(INFRARED,))
GRID_PAIRS = 4  # val pairs in plots/predictions.png
LUMA = (0.299, 0.587, 0.114)  # BT.601, as the visible image's YCbCr


# ----------------------------------------------------------------------------- data
def build_transforms(cfg: FuseConfig, train: bool) -> Compose:
    """Train: [resize] -> random ``imgsz`` crop -> flips. Eval: [resize] only."""
    steps: list[Transform] = []
    if cfg.resize:
        steps.append(Resize(cfg.resize, keep_ratio=True, side="long"))
    if train:
        steps.append(PadRandomCrop(cfg.imgsz, padding=0))
        if cfg.hflip:
            steps.append(HorizontalFlip(p=cfg.hflip))
        if cfg.vflip:
            steps.append(VerticalFlip(p=cfg.vflip))
    return Compose(steps)


def model_input(images: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
    """uint8 visible (N, 3, H, W) and infrared (N, 1, H, W) -> float [ir, Y] (N, 2, H, W)."""
    w = torch.tensor(LUMA, device=images.device).view(1, 3, 1, 1)
    y = (images.float() * w).sum(1, keepdim=True)
    return torch.cat([infrared.float(), y], 1) / 255.0


def build_fuser(name: str, model_kwargs: dict[str, Any], strategy: str = "learned") -> nn.Module:
    """The fusion network; an auto-encoder (``strategy`` add / l1) has that fusion rule and
    no input skip (it reconstructs, the skip would make that the identity)."""
    kw = dict(model_kwargs)
    if strategy != "learned":
        kw.update(strategy=strategy, skip=False)
    return create_model(name, **kw)


class FusionLossEvaluator:
    """Mean val loss (``val_loss``): the fusion loss of the fused images, or for an
    auto-encoder the reconstruction loss of both sources; sum and count, merged by addition."""

    def __init__(self, criterion: FusionLoss | ReconstructionLoss) -> None:
        self.criterion = criterion
        self.reset()

    def reset(self) -> None:
        self.sum, self.n = 0.0, 0

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        f = outputs["fused"].float()
        if "recon" in outputs:
            x = torch.cat([outputs["infrared"], outputs["visible"]], 0).float()
            loss, _ = self.criterion(outputs["recon"].float(), x)
        else:
            loss, _ = self.criterion(f, outputs["infrared"].float(), outputs["visible"].float())
        self.sum += float(loss) * f.shape[0]
        self.n += int(f.shape[0])

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        self.sum += state["sum"]
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        return {"val_loss": self.sum / max(self.n, 1)}


# ----------------------------------------------------------------------------- task
class FuseTask(BaseTask):
    """Everything fusion-specific the Trainer delegates."""

    name = "fuse"

    def __init__(self, cfg: FuseConfig) -> None:
        super().__init__(cfg)
        self.cfg: FuseConfig = cfg
        self.criterion = FusionLoss(cfg.w_intensity, cfg.w_gradient, cfg.w_ssim)
        self.rec_criterion = ReconstructionLoss(cfg.w_rec_ssim)
        self.auto_encoder = cfg.strategy != "learned"
        self.eval_rule: str | None = None  # a rule other than the built one (val/predict)

    def load_splits(self) -> FusionSplits:
        cfg = self.cfg
        return load_fusion(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed,
                           imgsz=cfg.imgsz)  # fmt: skip

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        ds = AugmentedDataset(splits.val, build_transforms(cfg, False), cfg.seed)
        return build_loader(ds, 1, shuffle=False, workers=cfg.workers, seed=cfg.seed,
                            collate_fn=collate_fuse)  # fmt: skip

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        train = take_fraction(splits.train, cfg.fraction, cfg.seed)
        self.check_resume(trainer)
        self.train_data, self.val_data = train, splits.val
        ds = AugmentedDataset(train, build_transforms(cfg, True), cfg.seed)
        trainer.train_loader = build_loader(
            ds, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed, drop_last=True,
            collate_fn=collate_fuse,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(
                f"{cfg.data}: {len(train)} training pairs is fewer than batch={cfg.batch}; "
                "lower batch="
            )
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        model = build_fuser(cfg.model, cfg.model_kwargs, cfg.strategy)
        trainer.model = model.to(trainer.device)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**super().checkpoint_meta(), "resize": self.cfg.resize,
                "strategy": self.cfg.strategy}  # fmt: skip

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_fuser(state["model_name"], state.get("model_kwargs") or {},
                           state.get("strategy", "learned"))  # fmt: skip

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        self.cfg.imgsz = int(state.get("imgsz", self.cfg.imgsz))
        self.cfg.resize = int(state.get("resize", self.cfg.resize))
        self.eval_rule = eval_strategy(state, self.cfg.strategy)
        self.auto_encoder = state.get("strategy", "learned") != "learned"

    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model_input(batch["images"].to(self.device), batch[INFRARED].to(self.device))

    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        x = self._inputs(batch)
        if self.auto_encoder:  # both sources as single images: (2N, 1, H, W)
            singles = torch.cat([x[:, :1], x[:, 1:]], 0)
            loss, _ = self.rec_criterion(model(singles), singles)
            return loss, int(x.shape[0])
        loss, _ = self.criterion(model(x), x[:, :1], x[:, 1:])
        return loss, int(x.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = self._inputs(batch)
        out = {"fused": fuse(model, x, self.eval_rule).float(), "infrared": x[:, :1],
               "visible": x[:, 1:]}  # fmt: skip
        if self.auto_encoder:
            out["recon"] = model(torch.cat([x[:, :1], x[:, 1:]], 0)).float()
        return out

    def build_evaluators(self) -> dict[str, Any]:
        crit = self.rec_criterion if self.auto_encoder else self.criterion
        return {"fusion": FusionEvaluator(), "loss": FusionLossEvaluator(crit)}

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.cfg.plots:
            write_plots(Path(trainer.out), trainer.history, model, self.val_data, self.cfg,
                        self.device)  # fmt: skip

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        write_plots(out, [], model, self.val_data, self.cfg, self.device, self.eval_rule)

    @staticmethod
    def predict(cfg: FuseConfig, out: Path) -> list[dict[str, Any]]:
        return predict_fusion(cfg, out)


# ----------------------------------------------------------------------------- inference
def eval_strategy(state: dict[str, Any], asked: str) -> str | None:
    """The fusion rule val/predict use in place of the built one: an auto-encoder checkpoint
    takes ``add``/``l1`` as asked (``learned`` = keep its own); an end-to-end one has no
    weight-free rule to switch to."""
    trained = state.get("strategy", "learned")
    if asked == "learned" or asked == trained:
        return None
    if trained == "learned":
        raise ConfigError(
            f"strategy={asked}: this checkpoint was trained end to end (strategy=learned); "
            "add / l1 need an auto-encoder trained with `cvcraft train fuse strategy=add|l1`"
        )
    return asked


def fuse(model: nn.Module, x: torch.Tensor, strategy: str | None) -> torch.Tensor:
    """The model's fused luma, with the fusion rule ``strategy`` if one is given."""
    return model(x) if strategy is None else model(x, strategy=strategy)


@torch.no_grad()
def fuse_sample(
    model: nn.Module,
    sample: Sample,
    device: torch.device,
    amp: bool = False,
    strategy: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(infrared, visible luma, fused luma), uint8 HxW each, of one pair."""
    batch = collate_fuse([sample])
    x = model_input(batch["images"].to(device), batch[INFRARED].to(device))
    with autocast(device, amp):
        fused = fuse(model, x, strategy).float()
    return to_uint8(x[0, 0]), to_uint8(x[0, 1]), to_uint8(fused[0, 0])


def colour_fused(visible: np.ndarray, fused_y: np.ndarray) -> np.ndarray:
    """The visible RGB image with its luma replaced by the fused one (YCbCr: fuse Y, keep
    Cb and Cr). uint8 (H, W, 3) and (H, W) -> (H, W, 3)."""
    ycc = rgb_to(visible, "ycbcr")
    ycc[..., 0] = fused_y
    return to_rgb(ycc, "ycbcr")


def write_plots(out: Path, history: list[dict[str, Any]], model: nn.Module, val_data: Any,
                cfg: FuseConfig, device: torch.device, strategy: str | None = None
                ) -> None:  # fmt: skip
    """Curves and rows of (infrared, visible, fused colour) for a few val pairs."""
    from cvcraft.viz.augment_grid import make_grid
    from cvcraft.viz.plots import plot_curves

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, plots)
    tf = build_transforms(cfg, False)
    model.eval()
    cells = []
    for i in np.linspace(0, len(val_data) - 1, num=min(GRID_PAIRS, len(val_data))).astype(int):
        s = tf(val_data.sample(int(i)), np.random.default_rng(0))
        ir, _, fy = fuse_sample(model, s, device, strategy=strategy)
        cells += [np.repeat(ir[..., None], 3, 2), s.image, colour_fused(s.image, fy)]
    if cells:
        write_image(plots / "predictions.png", make_grid(cells, cols=3))


def predict_fusion(cfg: FuseConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict fuse source=DIR``: DIR holds ``infrared/`` and ``visible/`` pairs;
    per pair a colour fused image (``fused/<name>.png``, the visible image's size) and its
    fusion metrics in predictions.json."""
    device = select_device(cfg.device)
    model, state = FuseTask.load_model(cfg.weights, device)
    cfg.resize = int(state.get("resize", cfg.resize))
    strategy = eval_strategy(state, cfg.strategy)
    pairs = pair_fusion_folders(cfg.source)
    tf = build_transforms(cfg, False)
    visible_root = Path(cfg.source) / "visible"
    results: list[dict[str, Any]] = []
    for i in range(len(pairs)):
        s = tf(pairs.sample(i), np.random.default_rng(0))
        ir, vy, fy = fuse_sample(model, s, device, cfg.amp, strategy)
        rel = Path(pairs.visible[i]).relative_to(visible_root).with_suffix(".png")
        path = out / "fused" / rel
        write_image(path, colour_fused(s.image, fy))
        m = fusion_metrics(ir, vy, fy)
        results.append({"path": pairs.visible[i], "infrared": pairs.infrared[i],
                        "fused": str(path), "metrics": m,
                        "summary": f"EN {m['en']:.3f}  MI {m['mi']:.3f}  "
                                   f"SSIM {m['ssim']:.3f}  Qabf {m['qabf']:.3f}"})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    return results


# ----------------------------------------------------------------------------- data tools
def data_sources(data: str, imgsz: int | None, seed: int) -> tuple[Any, Any]:
    """(train, val) pairs of ``data`` (for pack and augment); the infrared image rides along
    as ``extras["infrared"]``."""
    splits = load_fusion(data, seed=seed, imgsz=imgsz or 96)
    return splits.train, splits.val


def train_preview(source: Any, imgsz: int, seed: int) -> Any:
    """The training dataset ``cvcraft train fuse`` builds with default keys (random crop and
    flips applied to both images of a pair), for ``cvcraft augment``."""
    return AugmentedDataset(source, build_transforms(FuseConfig(imgsz=imgsz, seed=seed), True),
                            seed)  # fmt: skip
