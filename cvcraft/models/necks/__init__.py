"""Necks shared by detection and segmentation models: modules between a backbone's
multi-scale features (``forward_intermediates``) and a task head."""

from cvcraft.models.necks.fpn import FPN

__all__ = ["FPN"]
