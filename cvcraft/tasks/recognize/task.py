"""Text-line recognition as a Trainer task (CRNN + CTC), plus its val and predict entry points.

Data flow: MNIST digit images -> composed lines (``data.py``; val lines from held-out
digits) -> collate (uint8 (B, 1, H, W), concatenated labels + 1) -> device: x / 255 ->
model -> log-probabilities (T, B, 11) -> CTC loss (``cvcraft.losses.ctc``). Evaluation
decodes (greedy or prefix beam search) and scores sequence accuracy and CER; ``predict``
reads images, turns them grey (inverted when mostly light: the model saw light digits on
black), resizes them to the line height and writes the decoded strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cvcraft.data.io import IMAGE_EXTENSIONS
from cvcraft.data.loader import build_loader
from cvcraft.engine.device import autocast, select_device
from cvcraft.engine.evaluation import MetricsWithLoss
from cvcraft.errors import DataError
from cvcraft.losses.ctc import ctc_loss
from cvcraft.metrics.text import TextEvaluator
from cvcraft.models import create_model
from cvcraft.models.recognition.ctc_decode import ctc_beam_search, ctc_greedy_decode
from cvcraft.tasks.base import BaseTask, build_model_with, finish_skipped, readable_images
from cvcraft.tasks.recognize.config import RecognizeConfig
from cvcraft.tasks.recognize.data import DIGITS, DigitSplits, collate_lines, load_digit_strings

PLOT_LINES = 12  # val lines in plots/predictions.png


def build_recogniser(name: str, model_kwargs: dict[str, Any], classes: list[str], imgsz: int
                     ) -> nn.Module:  # fmt: skip
    return build_model_with(
        name,
        model_kwargs,
        lambda: create_model(
            name, num_classes=len(classes), in_chans=1, img_height=imgsz, **dict(model_kwargs)
        ),
    )


def decode(log_probs: torch.Tensor, cfg: Any, classes: list[str]) -> list[str]:
    """Strings from (T, B, C) log-probabilities, greedy or beam search (class k+1 = label k)."""
    if cfg.decode == "beam":
        seqs = [b[0][0] for b in ctc_beam_search(log_probs.float(), beam=cfg.beam)]
    else:
        seqs = ctc_greedy_decode(log_probs)
    return ["".join(classes[c - 1] for c in s) for s in seqs]


class RecognitionEvaluator(MetricsWithLoss):
    """``seq_acc`` and ``cer`` of the decoded lines plus ``val_loss``, the mean CTC loss per
    character (the training loss's ``mean``)."""

    def __init__(self) -> None:
        self.metrics = TextEvaluator()
        self.reset()

    def update(self, batch: Any, outputs: dict[str, Any]) -> None:
        self.metrics.update(batch, outputs)
        self.loss_sum += float(outputs["loss_sum"])
        self.n += len(outputs["targets"])


class RecognizeTask(BaseTask):
    """Everything recognition-specific the Trainer delegates."""

    name = "recognize"

    def __init__(self, cfg: RecognizeConfig) -> None:
        super().__init__(cfg)
        self.cfg: RecognizeConfig = cfg
        self.classes = list(DIGITS)

    # ------------------------------------------------------------------ data and model
    def load_splits(self) -> DigitSplits:
        return load_digit_strings(self.cfg)

    def build_val_loader(self, splits: Any) -> Any:
        cfg = self.cfg
        return build_loader(splits.val, cfg.batch, shuffle=False, workers=cfg.workers,
                            seed=cfg.seed, collate_fn=collate_lines)  # fmt: skip

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        splits = self.load_splits()
        self.classes = list(splits.classes)
        self.check_resume(trainer)
        self.val_data = splits.val
        trainer.train_loader = build_loader(
            splits.train, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed,
            drop_last=True, collate_fn=collate_lines,
        )  # fmt: skip
        if len(trainer.train_loader) == 0:
            raise DataError(f"train_strings={cfg.train_strings} is fewer than batch={cfg.batch}")
        self.val_loader = self.build_val_loader(splits)
        self.device = trainer.device
        torch.manual_seed(cfg.seed)
        model = build_recogniser(cfg.model, cfg.model_kwargs, self.classes, cfg.imgsz)
        trainer.model = model.to(trainer.device)

    def checkpoint_meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {**super().checkpoint_meta(), "line_width": cfg.line_width,
                "decode": cfg.decode, "beam": cfg.beam}  # fmt: skip

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        return build_recogniser(state["model_name"], state.get("model_kwargs") or {},
                                list(state["classes"]), int(state["imgsz"]))  # fmt: skip

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        self.cfg.imgsz = int(state.get("imgsz", self.cfg.imgsz))

    # ------------------------------------------------------------------ training / eval
    def _forward(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        x = batch["images"].to(self.device).float() / 255.0
        log_probs = model(x).float()  # (T, B, C)
        T, B = log_probs.shape[:2]
        frames = torch.full((B,), T, dtype=torch.long, device=log_probs.device)
        tl = batch["target_lengths"].to(self.device)
        return log_probs, frames, tl

    def train_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        log_probs, frames, tl = self._forward(model, batch)
        loss = ctc_loss(log_probs, batch["targets"].to(self.device), frames, tl,
                        zero_infinity=True)  # fmt: skip
        return loss, int(tl.shape[0])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        log_probs, frames, tl = self._forward(model, batch)
        nll = ctc_loss(log_probs, batch["targets"].to(self.device), frames, tl,
                       reduction="none", zero_infinity=True)  # fmt: skip
        nll = (nll / tl.clamp(min=1)).sum()  # per character, as the training loss
        return {"texts": decode(log_probs, self.cfg, self.classes), "targets": batch["texts"],
                "loss_sum": nll}  # fmt: skip

    def build_evaluators(self) -> dict[str, Any]:
        return {"text": RecognitionEvaluator()}

    # ------------------------------------------------------------------ plots
    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.cfg.plots:
            write_plots(Path(trainer.out), trainer.history, model, self.val_data, self.cfg,
                        self.classes, self.device)  # fmt: skip

    def val_plots(self, out: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
        write_plots(out, [], model, self.val_data, self.cfg, self.classes, self.device)

    @staticmethod
    def predict(cfg: RecognizeConfig, out: Path) -> list[dict[str, Any]]:
        return predict_lines(cfg, out)


@torch.no_grad()
def recognise(model: nn.Module, lines: list[np.ndarray], cfg: Any, classes: list[str],
              device: torch.device) -> list[str]:  # fmt: skip
    """Decoded strings of uint8 (H, W) grey lines of the model's height (one at a time:
    widths differ)."""
    model.eval()
    texts = []
    for line in lines:
        x = torch.from_numpy(line)[None, None].to(device).float() / 255.0
        with autocast(device, bool(getattr(cfg, "amp", False))):
            lp = model(x).float()
        texts += decode(lp, cfg, classes)
    return texts


def to_line(image: np.ndarray, height: int) -> np.ndarray:
    """An RGB image -> a grey uint8 line ``height`` px high (aspect kept, width padded to a
    multiple of 4 and at least 4); a mostly light image (dark ink) is inverted first."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    if grey.mean() > 127:
        grey = 255 - grey
    w = max(1, int(round(grey.shape[1] * height / grey.shape[0])))
    grey = cv2.resize(grey, (w, height), interpolation=cv2.INTER_AREA)
    pad = (-w) % 4 + max(0, 4 - w - (-w) % 4)
    return np.pad(grey, ((0, 0), (0, pad)))


def write_plots(out: Path, history: list[dict[str, Any]], model: nn.Module, val_data: Any,
                cfg: Any, classes: list[str], device: torch.device) -> None:  # fmt: skip
    """Curves and a grid of val lines titled ``prediction / truth`` (red when wrong)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvcraft.viz.plots import plot_curves

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, plots)
    n = min(PLOT_LINES, len(val_data))
    items = [val_data[(0, i)] for i in range(n)]
    preds = recognise(model, [it["image"] for it in items], cfg, classes, device)
    fig, axes = plt.subplots((n + 2) // 3, 3, figsize=(9, 1.2 * ((n + 2) // 3)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, it, p in zip(axes.flat, items, preds):
        truth = "".join(classes[c] for c in it["label"])
        ax.imshow(it["image"], cmap="gray")
        ax.set_title(f"{p} / {truth}", fontsize=8, color="black" if p == truth else "red")
    fig.tight_layout()
    fig.savefig(plots / "predictions.png", dpi=100)
    plt.close(fig)


def predict_lines(cfg: RecognizeConfig, out: Path) -> list[dict[str, Any]]:
    """``cvcraft predict recognize source=IMG|DIR weights=best.pt``: the string read from
    each image, in ``predictions.json`` (path, text)."""
    device = select_device(cfg.device)
    model, state = RecognizeTask.load_model(cfg.weights, device)
    classes = list(state["classes"])
    cfg.decode = str(cfg.decode or state.get("decode", "greedy"))
    height = int(state["imgsz"])
    src = Path(cfg.source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    elif src.is_file():
        files = [src]
    else:
        raise DataError(f"source={cfg.source}: no such image or folder")
    if not files:
        raise DataError(f"source={cfg.source}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    skipped: list[tuple[str, str]] = []
    images = readable_images(files, skipped)
    texts = recognise(model, [to_line(im, height) for _, im in images], cfg, classes, device)
    results = [{"path": str(p), "text": t, "summary": t} for (p, _), t in zip(images, texts)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    finish_skipped(out, skipped, len(files), cfg.skip_bad)
    return results
