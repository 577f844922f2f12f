"""Classification data: readers per format, synthetic shapes, splits, cache, dataset, loader.

Every reader returns a ``ClassificationData`` (``classes``, ``labels``, ``load_image``);
``load_classification`` picks the reader from what it is pointed at.

Names are re-exported lazily: ``cvcraft check`` / ``convert`` read annotation files with
numpy alone and must not pay for importing torch through the loaders.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DecodedCache": "cache",
    "default_cache_dir": "cache",
    "RestrictedUnpickler": "cifar",
    "read_cifar": "cifar",
    "safe_unpickle": "cifar",
    "ArrayData": "classification",
    "ClassificationData": "classification",
    "FileListData": "classification",
    "SubsetData": "classification",
    "read_csv_list": "csvlist",
    "ClassifyDataset": "datasets",
    "DataSplits": "datasets",
    "load_classification": "datasets",
    "find_idx_pair": "idx",
    "read_idx": "idx",
    "read_idx_file": "idx",
    "read_imagefolder": "imagefolder",
    "DEFAULT_MAX_PIXELS": "io",
    "IMAGE_EXTENSIONS": "io",
    "decode_image": "io",
    "is_image_file": "io",
    "read_image": "io",
    "write_image": "io",
    "EpochSampler": "loader",
    "build_loader": "loader",
    "collate_classify": "loader",
    "set_epoch": "loader",
    "ClassBalancedBatchSampler": "sampling",
    "LabelDistribution": "sampling",
    "WeightedEpochSampler": "sampling",
    "build_sampler": "sampling",
    "class_weights": "sampling",
    "label_distribution": "sampling",
    "resample_indices": "sampling",
    "SEMANTIC_CLASSES": "shapes",
    "SHAPE_CLASSES": "shapes",
    "make_shapes": "shapes",
    "masks_to_boxes": "shapes",
    "render_scene": "shapes",
    "stratified_split": "split",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cvcraft.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cvcraft.data' has no attribute {name!r}")
