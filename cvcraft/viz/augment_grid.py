"""``cvcraft augment``: render a grid of augmented samples so a person can see a pipeline.

Each cell is one item of ``data`` after the pipeline, drawn with its targets: instance masks
as translucent colour, the semantic mask likewise (255 = ignore left undrawn), boxes with
their class names, keypoints as dots joined by the data's skeleton (pose), an extra image
target (fusion's infrared) beside the image, and for classification the label (or, with
mixup/cutmix, the two largest soft-target shares). Small images are enlarged (nearest
neighbour) to at least ``MIN_CELL`` pixels so 32 px samples stay readable.

The pipeline is a YAML file holding a list of transform specs (``build_transforms``), or a
mapping with such a list under ``augment:`` (a training config); entries naming a
multi-sample transform (``mosaic``, ``mixup``, ``copy_paste``) run first, with partners
drawn from the item's generator (``mosaic.split_pipeline`` / ``run_pipeline``). Builtin
names: ``default`` (what ``cvcraft train TASK`` does with default keys: the task's own
training dataset, epoch 0), ``none``, ``mosaic``
(detect/segment: 4-image mosaic), and for classification ``mixup`` / ``cutmix``
(batch-level mixing of the n shown images).
Item ``i`` uses ``np.random.default_rng([seed, 0, i])``, as the training dataset does. A
YAML list's ``mosaic`` without ``size`` gets the image size, as ``augment:`` in training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from cvcraft.data.io import write_image
from cvcraft.errors import ConfigError
from cvcraft.structures import Sample, target_kind
from cvcraft.transforms import (
    copy_paste,  # noqa: F401  (registers copy_paste)
    default_classify_transforms,
)
from cvcraft.transforms.base import Compose
from cvcraft.transforms.mix import MixupCutmix
from cvcraft.transforms.mosaic import Mosaic
from cvcraft.transforms.multi_sample import run_pipeline
from cvcraft.transforms.pipelines import sized_spec, split_pipeline

MIN_CELL = 160  # smallest drawn cell side in pixels


# A palette of 20 distinct colours (RGB) for classes; class k uses PALETTE[k % 20].
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.uint8,
)  # fmt: skip


def draw_sample(
    sample: Sample,
    class_names: Sequence[str] = (),
    *,
    caption: str = "",
    min_size: int = MIN_CELL,
    mask_alpha: float = 0.45,
    semantic_names: Sequence[str] | None = None,
    skeleton: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """The sample's image with masks, boxes, box class names and ``caption`` drawn, uint8 RGB.

    Enlarged by an integer factor (nearest) to at least ``min_size`` on its longer side.
    Instance masks are coloured per object (by class), the semantic mask by class index.
    """
    img = np.ascontiguousarray(sample.image[..., :3]).astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    k = max(1, int(np.ceil(min_size / max(img.shape[:2]))))
    out = img.astype(np.float32)
    if sample.semantic_mask is not None:
        sem = np.asarray(sample.semantic_mask)
        valid = (sem != 255) & (sem != 0)  # 0 = background and 255 = ignore stay uncoloured
        colour = PALETTE[(sem.astype(np.int64) - 1) % len(PALETTE)].astype(np.float32)
        out = np.where(valid[..., None], (1 - mask_alpha) * out + mask_alpha * colour, out)
    labels = np.zeros(0, np.int64) if sample.box_labels is None else sample.box_labels
    if sample.masks is not None and len(sample.masks):
        m = np.asarray(sample.masks, bool)  # (N, H, W)
        top = np.where(m.any(0), len(m) - 1 - m[::-1].argmax(0), -1)  # last drawn on top
        colour = PALETTE[labels[np.maximum(top, 0)] % len(PALETTE)].astype(np.float32)
        out = np.where((top >= 0)[..., None], (1 - mask_alpha) * out + mask_alpha * colour, out)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if k > 1:
        out = cv2.resize(out, (out.shape[1] * k, out.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    out = np.ascontiguousarray(out)
    if sample.boxes is not None:
        for box, lab in zip(np.asarray(sample.boxes) * k, labels):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            colour = tuple(int(c) for c in PALETTE[lab % len(PALETTE)])
            cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, 2)
            name = class_names[lab] if 0 <= lab < len(class_names) else str(int(lab))
            _text(out, name, x1 + 2, max(y1 - 3, 10), colour)
    if sample.keypoints is not None and len(sample.keypoints):
        _draw_keypoints(out, np.asarray(sample.keypoints, np.float64), k, skeleton)
    pairs = [np.asarray(v) for name, v in sample.extras.items() if target_kind(name) == "image"]
    for extra in pairs:  # the paired image, enlarged alike, to the right
        e = np.repeat(extra[..., None], 3, 2) if extra.ndim == 2 else extra[..., :3]
        e = cv2.resize(e.astype(np.uint8), (out.shape[1], out.shape[0]),
                       interpolation=cv2.INTER_NEAREST)  # fmt: skip
        out = np.ascontiguousarray(np.concatenate([out, e], 1))
    if caption:
        _text(out, caption, 3, out.shape[0] - 5, (255, 255, 255))
    return out


def _draw_keypoints(img: np.ndarray, kp: np.ndarray, k: int, skeleton: Sequence) -> None:
    """Labelled keypoints (v > 0) of every person (N, K, 3) as dots, limbs as lines, in place;
    ``k`` is the enlargement (continuous coordinates: pixel i's centre is i + 0.5)."""
    p = np.round(kp[..., :2] * k - 0.5).astype(np.int64)
    for n, person in enumerate(kp):
        colour = tuple(int(c) for c in PALETTE[(n + 1) % len(PALETTE)])
        for a, b in skeleton:
            if person[a, 2] > 0 and person[b, 2] > 0:
                cv2.line(img, tuple(p[n, a].tolist()), tuple(p[n, b].tolist()), colour, 1)
        for j in np.flatnonzero(person[:, 2] > 0):
            cv2.circle(img, tuple(p[n, j].tolist()), 2, colour, -1)


def _text(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, ...]) -> None:
    """Text with a dark outline so it reads on any background."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    cv2.putText(img, text, (x, y), font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), font, scale, colour, 1, cv2.LINE_AA)


def make_grid(cells: Sequence[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    """Tile RGB cells (any sizes) into one image, row-major, ``pad`` px white gaps."""
    rows = -(-len(cells) // cols)
    ch = max(c.shape[0] for c in cells)
    cw = max(c.shape[1] for c in cells)
    grid = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), 255, np.uint8)
    for i, c in enumerate(cells):
        r, q = divmod(i, cols)
        y, x = pad + r * (ch + pad), pad + q * (cw + pad)
        grid[y : y + c.shape[0], x : x + c.shape[1]] = c
    return grid


def load_pipeline(spec: str, kind: str, imgsz: int, alpha: float) -> tuple[list[Any], Any, Any]:
    """(multi-sample transforms, per-item Compose, batch mixer or None) from ``pipeline=``."""
    if spec in ("", "default"):
        if kind == "label":
            return [], default_classify_transforms(imgsz, train=True), None
        return [], Compose([]), None
    if spec == "none":
        return [], Compose([]), None
    if spec == "mosaic":
        return [Mosaic(imgsz)], Compose([]), None
    if spec in ("mixup", "cutmix"):
        if kind != "label":
            raise ConfigError(f"pipeline={spec} is batch mixing for task=classify; for "
                              "detection use a YAML list with {name: mixup}")  # fmt: skip
        mixer = (alpha, 0.0) if spec == "mixup" else (0.0, alpha)
        return [], default_classify_transforms(imgsz, train=True), mixer
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"pipeline={spec}: no such file and not a builtin (default, none, mosaic, mixup, "
            "cutmix); pass a YAML file with a list of transforms"
        )
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if isinstance(loaded, dict) and "augment" in loaded:
        loaded = loaded["augment"]
    if isinstance(loaded, (str, dict)):
        loaded = [loaded]
    if not isinstance(loaded, list):
        raise ConfigError(f"{path}: expected a list of transform specs (or augment: [...])")
    multi, per_item = split_pipeline(sized_spec(loaded, imgsz), str(path))  # as training does
    return multi, per_item, None


def render_augment_grid(
    source: Any,
    kind: str,
    pipeline: str,
    *,
    n: int = 16,
    seed: int = 0,
    imgsz: int = 256,
    cols: int = 0,
    alpha: float = 1.0,
    out: str | Path = "augment_grid.png",
    train_preview: Callable[[Any, int, int], Any] | None = None,
) -> Path:
    """Draw ``n`` items of ``source`` (a reader: ``classes``, ``len``, ``sample(i)``) after
    ``pipeline`` into a grid PNG at ``out``. ``pipeline=default`` with ``train_preview`` (the
    task's training dataset builder) draws epoch 0's items exactly as training makes them."""
    if n < 1:
        raise ConfigError(f"n={n} must be >= 1")
    n_items, names = len(source), list(source.classes)
    if n_items == 0:
        raise ConfigError("the dataset is empty")
    if pipeline in ("", "default") and train_preview is not None:
        train = train_preview(source, imgsz, seed)
        samples = [train[(0, i % n_items)] for i in range(n)]
        mixer = None
    else:
        multi, per_item, mixer = load_pipeline(pipeline, kind, imgsz, alpha)
        samples = []
        for i in range(n):
            index = i % n_items
            rng = np.random.default_rng([seed, 0, index])
            samples.append(run_pipeline(multi, per_item, source.sample, index, n_items, rng))
    captions = [""] * n
    if kind == "label":
        captions = [names[s.label] if s.label is not None else "" for s in samples]
    if mixer is not None:
        samples, captions = _mix_batch(samples, names, mixer, seed)
    skeleton = tuple(getattr(source, "skeleton", ()))
    cells = [draw_sample(s, names, caption=c, skeleton=skeleton) for s, c in zip(samples, captions)]
    out = Path(out)
    write_image(out, make_grid(cells, max(1, cols or int(np.ceil(np.sqrt(n))))))
    return out


def _mix_batch(
    samples: list[Sample], names: list[str], alphas: tuple[float, float], seed: int
) -> tuple[list[Sample], list[str]]:
    """Mix the shown samples as one batch (step 0); captions show the top-2 target shares."""
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    labels = torch.tensor([int(s.label) for s in samples])
    mix = MixupCutmix(len(names), alphas[0], alphas[1], prob=1.0, switch_prob=1.0)
    x, y = mix(images, labels, np.random.default_rng([seed, 0, 0, 1]))
    mixed = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    captions = []
    for row in y.numpy():
        top = np.argsort(-row)[:2]
        captions.append(" ".join(f"{names[c]} {row[c]:.2f}" for c in top if row[c] > 0.005))
    out = [s.replace(image=np.ascontiguousarray(im), label=None) for s, im in zip(samples, mixed)]
    return out, captions


__all__ = ["draw_sample", "load_pipeline", "make_grid", "render_augment_grid"]
