"""Text-line recognition: CRNN + CTC on digit strings composed from MNIST digits
(sequence accuracy, character error rate)."""

from __future__ import annotations

from typing import Any

from cvcraft.tasks.recognize.config import RecognizeConfig
from cvcraft.tasks.registry import TaskSpec, register_task

# `cvcraft demo recognize`: a small CRNN on 3-digit strings, about a minute on 2 cores.
DEMO_PRESET: dict[str, Any] = {
    "model": "crnn",
    "min_len": 2,
    "max_len": 3,
    "line_width": 96,
    "train_strings": 1024,
    "val_strings": 256,
    "epochs": 2,
    "name": "demo",
}

register_task(
    TaskSpec(
        name="recognize",
        config=RecognizeConfig,
        task_class="cvcraft.tasks.recognize.task:RecognizeTask",
        help="text-line recognition, CRNN + CTC (sequence accuracy, CER)",
        model_packages=("recognition",),
        monitor="seq_acc",
        monitor_mode="max",
        lower_is_better=("cer",),
        summary_keys=("seq_acc", "cer", "val_loss", "best_epoch", "train_seconds"),
        val_keys=("seq_acc", "cer", "val_loss"),
        demo_preset=DEMO_PRESET,
        target_kind="label",
        default_imgsz=32,
    )
)
