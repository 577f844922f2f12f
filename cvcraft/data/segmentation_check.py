"""``cvcraft check`` for semantic-segmentation datasets: every pair that training would fail
on, with the file at fault.

A mask dataset is a mask YAML (``train: {images: DIR, masks: DIR}``), a folder holding one,
or a folder with ``images/`` and ``masks/``. Each image/mask pair is read as training reads
it: the mask must decode (PNG, not JPEG), hold only the dataset's classes (or 255 = ignore)
and have its image's size; images without a mask are reported too. Telling a mask dataset
apart needs only the YAML and the folder names, so checking a detection dataset still
imports no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from cvcraft.data.detection.problems import Problem
from cvcraft.data.detection.yolo import image_size
from cvcraft.data.io import read_image
from cvcraft.errors import DataError

MASK_YAML_NAMES = ("config.yaml", "data.yaml", "dataset.yaml")


def _is_mask_yaml(path: Path) -> bool:
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    train = cfg.get("train") if isinstance(cfg, dict) else None
    return isinstance(train, dict) and "masks" in train


def is_mask_dataset(data: str | os.PathLike[str]) -> bool:
    """Whether ``data`` is a semantic-mask dataset (a mask YAML or a folder of masks)."""
    p = Path(data)
    if p.is_file():
        return p.suffix.lower() in (".yaml", ".yml") and _is_mask_yaml(p)
    if not p.is_dir():
        return False
    if any((p / n).is_file() and _is_mask_yaml(p / n) for n in MASK_YAML_NAMES):
        return True
    return (p / "images").is_dir() and (p / "masks").is_dir()


def check_segmentation(data: str | os.PathLike[str], decode_images: bool = True) -> list[Problem]:
    """Every problem of a mask dataset, one ``Problem`` each (see the module docstring)."""
    from cvcraft.data.segmentation import MaskFolderData, load_segmentation, read_mask

    where = os.fspath(data)
    try:
        splits = load_segmentation(where)
    except DataError as e:
        return [Problem(where, None, "malformed", str(e).removeprefix(f"{where}: "))]
    problems = [
        Problem(where, None, "missing_mask", note) for note in splits.notes if "no mask" in note
    ]
    parts = [splits.train] + ([splits.val] if isinstance(splits.val, MaskFolderData) else [])
    for part in parts:
        if not isinstance(part, MaskFolderData):
            continue
        k = len(part.classes)
        for image, mask in zip(part.images, part.masks):
            try:
                m = read_mask(mask, part.lut, part.palette, k)
            except DataError as e:
                problems.append(Problem(mask, None, "bad_mask", str(e).split(": ", 1)[-1]))
                continue
            try:
                h, w = read_image(image).shape[:2] if decode_images else image_size(image)[::-1]
            except DataError as e:
                problems.append(Problem(image, None, "unreadable_image", str(e).split(": ", 1)[-1]))
                continue
            if m.shape != (h, w):
                problems.append(
                    Problem(mask, None, "size_mismatch",
                            f"mask is {m.shape[1]}x{m.shape[0]} but its image {image} is {w}x{h}")
                )  # fmt: skip
    return problems
