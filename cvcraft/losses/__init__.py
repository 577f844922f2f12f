"""Losses by name: ``build_loss("focal", gamma=2.0)`` (floor 2)."""

from cvcraft.losses.box import (
    CIoULoss,
    DIoULoss,
    DistributionFocalLoss,
    GIoULoss,
    IoULoss,
    SigmoidFocalLoss,
    SIoULoss,
    SmoothL1Loss,
    VarifocalLoss,
    distribution_focal_loss,
    iou_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
    varifocal_loss,
)
from cvcraft.losses.classification import (
    CrossEntropyLoss,
    FocalLoss,
    SoftTargetCrossEntropy,
    cross_entropy,
)
from cvcraft.losses.fusion import FusionLoss, fusion_loss_terms
from cvcraft.losses.image import (
    GradientLoss,
    MSSSIMLoss,
    SSIMLoss,
    gradient_loss,
    ms_ssim,
    ssim,
)
from cvcraft.losses.keypoints import KeypointMSELoss, keypoint_mse
from cvcraft.losses.multilabel import (
    MultiLabelLoss,
    asymmetric_loss,
    bce_multilabel,
    focal_bce,
)
from cvcraft.losses.registry import LOSSES, build_loss
from cvcraft.losses.segmentation import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    LovaszSoftmaxLoss,
    build_segmentation_loss,
    dice_loss,
    lovasz_softmax,
)

__all__ = [
    "FusionLoss",
    "KeypointMSELoss",
    "fusion_loss_terms",
    "keypoint_mse",
    "MultiLabelLoss",
    "asymmetric_loss",
    "bce_multilabel",
    "focal_bce",
    "GradientLoss",
    "MSSSIMLoss",
    "SSIMLoss",
    "gradient_loss",
    "ms_ssim",
    "ssim",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "build_segmentation_loss",
    "dice_loss",
    "lovasz_softmax",
    "LOSSES",
    "CIoULoss",
    "CrossEntropyLoss",
    "DIoULoss",
    "DistributionFocalLoss",
    "FocalLoss",
    "GIoULoss",
    "IoULoss",
    "SIoULoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftTargetCrossEntropy",
    "VarifocalLoss",
    "build_loss",
    "cross_entropy",
    "distribution_focal_loss",
    "iou_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "varifocal_loss",
]
