"""Knowledge distillation losses: a student learns from a teacher's outputs or features.

- Hinton et al. 2015: soft targets at temperature T,
  ``T^2 * KL(softmax(t / T) || softmax(s / T))``, batch mean. The T^2 factor keeps the soft
  term's gradient on the scale of the hard-label term as T grows (the soft gradients shrink
  as 1/T^2). Combined with the hard labels as ``(1 - alpha) * CE + alpha * KD``.
- Logits of any shape (N, K, ...) — classification (N, K) or segmentation (N, K, H, W): the
  class dimension is 1 and every other position is one distribution; positions whose label
  is ``ignore_index`` are left out when a target is given.
- FitNets (Romero et al. 2015): a hint — the student's intermediate map, passed through a
  1x1-conv regressor to the teacher's width, matches the teacher's map in mean squared
  error (``hint_loss``); the regressor trains with the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 4.0,
    target: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """``T^2 * KL(p_t || p_s)`` at temperature T, averaged over positions (batch mean for
    (N, K) logits). ``target`` (N, ...) masks out ``ignore_index`` positions."""
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} != teacher {tuple(teacher.shape)}")
    k = student.shape[1]
    s = student.float().movedim(1, -1).reshape(-1, k)  # (positions, K)
    t = teacher.float().detach().movedim(1, -1).reshape(-1, k)
    if target is not None:
        keep = target.reshape(-1) != ignore_index
        s, t = s[keep], t[keep]
    if s.shape[0] == 0:
        return student.sum() * 0.0
    log_p_s = F.log_softmax(s / temperature, dim=1)
    p_t = F.softmax(t / temperature, dim=1)
    kl = F.kl_div(log_p_s, p_t, reduction="sum") / s.shape[0]
    return kl * temperature**2


def hint_loss(
    student_map: torch.Tensor, teacher_map: torch.Tensor, regressor: nn.Module
) -> torch.Tensor:
    """FitNets' hint: ``MSE(regressor(student_map), teacher_map)``; the student map is
    resized to the teacher's spatial size first when they differ (bilinear)."""
    s = regressor(student_map)
    if s.shape[-2:] != teacher_map.shape[-2:]:
        s = F.interpolate(s, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(s.float(), teacher_map.float().detach())
