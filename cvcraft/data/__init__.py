"""Classification data: readers per format, synthetic shapes, splits, cache, dataset, loader.

Every reader returns a ``ClassificationData`` (``classes``, ``labels``, ``load_image``);
``load_classification`` picks the reader from what it is pointed at.
"""

from cvcraft.data.cache import DecodedCache, default_cache_dir
from cvcraft.data.cifar import RestrictedUnpickler, read_cifar, safe_unpickle
from cvcraft.data.classification import ArrayData, ClassificationData, FileListData, SubsetData
from cvcraft.data.csvlist import read_csv_list
from cvcraft.data.datasets import ClassifyDataset, DataSplits, load_classification
from cvcraft.data.idx import find_idx_pair, read_idx, read_idx_file
from cvcraft.data.imagefolder import read_imagefolder
from cvcraft.data.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    decode_image,
    is_image_file,
    read_image,
    write_image,
)
from cvcraft.data.loader import EpochSampler, build_loader, collate_classify, set_epoch
from cvcraft.data.sampling import (
    ClassBalancedBatchSampler,
    LabelDistribution,
    WeightedEpochSampler,
    build_sampler,
    class_weights,
    label_distribution,
    resample_indices,
)
from cvcraft.data.shapes import (
    SEMANTIC_CLASSES,
    SHAPE_CLASSES,
    make_shapes,
    masks_to_boxes,
    render_scene,
)
from cvcraft.data.split import stratified_split

__all__ = [
    "ClassBalancedBatchSampler",
    "LabelDistribution",
    "WeightedEpochSampler",
    "build_sampler",
    "class_weights",
    "label_distribution",
    "resample_indices",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SEMANTIC_CLASSES",
    "SHAPE_CLASSES",
    "ArrayData",
    "ClassificationData",
    "ClassifyDataset",
    "DataSplits",
    "DecodedCache",
    "EpochSampler",
    "FileListData",
    "RestrictedUnpickler",
    "SubsetData",
    "build_loader",
    "collate_classify",
    "decode_image",
    "default_cache_dir",
    "find_idx_pair",
    "is_image_file",
    "load_classification",
    "make_shapes",
    "masks_to_boxes",
    "read_cifar",
    "read_csv_list",
    "read_idx",
    "read_idx_file",
    "read_image",
    "read_imagefolder",
    "render_scene",
    "safe_unpickle",
    "set_epoch",
    "stratified_split",
    "write_image",
]
