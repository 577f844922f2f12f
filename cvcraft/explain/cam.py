"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Score-CAM, Eigen-CAM.

Every method weights the K feature maps ``A_k`` (B, K, h, w) of one layer and sums them,
``L = relu(sum_k w_k A_k)``; they differ only in the weights:

- CAM (Zhou et al. 2016): ``w_k = W_fc[c, k]``, the classifier's weights, valid when the
  layer feeds global average pooling and one linear layer.
- Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij dy_c/dA_kij`` — the gradient stands
  in for the classifier weight, so any differentiable head works (for GAP + linear it is
  ``W_fc[c, k] / hw``: the same map as CAM).
- Grad-CAM++ (Chattopadhay et al. 2018, eq. 19): ``w_k = sum_ij a_kij relu(g_kij)`` with
  ``a = g^2 / (2 g^2 + sum_ij(A_k) g^3)``, ``g = dy_c/dA`` (the closed form for an
  exponential score).
- Score-CAM (Wang et al. 2020): ``w = softmax_k y_c(x * norm(up(A_k)))``, no gradients —
  each upsampled, min-max normalised map masks the input and the class score it keeps is
  its weight.
- Eigen-CAM (Muhammad & Yeasin 2020): no class; the projection of the centred (hw, K)
  activations on their first principal direction.

The explained score is the target class's logit, or any differentiable ``score_fn(output)
-> (B,)`` — e.g. :func:`segmentation_score`, a class's logits summed over a pixel mask
(Seg-Grad-CAM, Vinogradova et al. 2020), which explains segmenters per class.

The low-resolution map is clipped at 0, min-max normalised, resized bilinearly to the input
and normalised again, as pytorch-grad-cam does (its results are the tests' oracle).
Shapes: input (B, C, H, W) -> maps (B, H, W) in [0, 1]; raw (B, h, w).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.explain.layers import capture_output, default_cam_layer, find_layer

CAM_METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "eigencam")
NORM_EPS = 1e-7  # min-max normalisation, as pytorch-grad-cam's scale_cam_image
PLUSPLUS_EPS = 1e-6
SCORECAM_EPS = 1e-8


@dataclass
class CamResult:
    """Heat maps (B, H, W) in [0, 1], the raw weighted sums (B, h, w) before clipping,
    the class explained per image (B,) (-1 for class-free Eigen-CAM), the layer name and the
    model's output (logits (B, num_classes) for a classifier; detached if a tensor)."""

    maps: torch.Tensor
    raw: torch.Tensor
    targets: torch.Tensor
    layer: str
    logits: Any


def normalize_minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-image ``(m - min) / (max - min + 1e-7)`` over the last two dims; (B, h, w)."""
    flat = maps.flatten(1)
    lo = flat.min(1).values[:, None, None]
    shifted = maps - lo
    return shifted / (NORM_EPS + shifted.flatten(1).max(1).values[:, None, None])


def upsample_maps(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """relu -> normalise -> bilinear resize (half-pixel centres) -> normalise; (B,h,w)->(B,H,W)."""
    m = normalize_minmax(raw.clamp_min(0))
    m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return normalize_minmax(m.clamp_min(0))


def _as_map(act: torch.Tensor, model: nn.Module, input_hw: tuple[int, int]) -> torch.Tensor:
    """A layer output as (B, K, h, w): conv maps pass; ViT tokens (B, T, D) lose their
    prefix (class) tokens and fold into the patch grid (needs ``model.patch_size``)."""
    if act.ndim == 4:
        return act
    patch = getattr(model, "patch_size", None)
    if act.ndim == 3 and patch:
        gh, gw = input_hw[0] // patch, input_hw[1] // patch
        prefix = act.shape[1] - gh * gw
        if prefix >= 0:
            return act[:, prefix:].transpose(1, 2).reshape(act.shape[0], act.shape[2], gh, gw)
    raise ConfigError(
        f"the CAM layer's output has shape {tuple(act.shape)}; CAM methods need a feature map "
        "(B, C, h, w) (or ViT tokens with model.patch_size); pick another layer="
    )


def _classifier(model: nn.Module) -> nn.Linear:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        raise ConfigError(
            f"method=cam needs a final nn.Linear classifier; {type(model).__name__} has none "
            "(use method=gradcam, which works with any head)"
        )
    return head


def segmentation_score(
    category: int, mask: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score of segmentation logits (B, K, H, W) for ``category``: its logits summed over
    ``mask`` (B, H, W) or (H, W) — default: the pixels predicted as ``category``."""

    def score(out: torch.Tensor) -> torch.Tensor:
        if out.ndim != 4 or not 0 <= category < out.shape[1]:
            raise ConfigError(
                f"segmentation_score({category}) needs (B, K, H, W) logits with K > {category}, "
                f"got {tuple(out.shape)}"
            )
        m = (out.argmax(1) == category) if mask is None else mask.to(out.device)
        return (out[:, category] * m.to(out.dtype)).sum((-2, -1))

    return score


def _targets(logits: torch.Tensor, target: int | list[int] | torch.Tensor | None) -> torch.Tensor:
    b, k = logits.shape
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
    t = t.expand(b) if t.numel() == 1 else t
    if t.numel() != b or bool(((t < 0) | (t >= k)).any()):
        raise ConfigError(f"class={target} must be one index in [0, {k}) or one per image ({b})")
    return t


def _plusplus_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = acts.sum((2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + PLUSPLUS_EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp_min(0)).sum((2, 3))


@torch.no_grad()
def _score_weights(
    model: nn.Module, x: torch.Tensor, acts: torch.Tensor, targets: torch.Tensor, batch: int
) -> torch.Tensor:
    """Score-CAM: softmax over channels of the class score of the input masked by each
    normalised, upsampled map. Maps are upsampled with corner-aligned bilinear
    interpolation (pytorch-grad-cam's choice; both papers' code differ here)."""
    up = F.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=True)
    flat = up.flatten(2)
    lo, hi = flat.min(2).values[..., None, None], flat.max(2).values[..., None, None]
    masks = (up - lo) / (hi - lo + SCORECAM_EPS)  # (B, K, H, W) in [0, 1]
    scores = torch.empty(acts.shape[:2], device=x.device)
    for b in range(x.shape[0]):  # one image's K masked copies, in chunks of `batch`
        masked = x[b][None] * masks[b][:, None]  # (K, C, H, W)
        for s in range(0, masked.shape[0], batch):
            scores[b, s : s + batch] = model(masked[s : s + batch])[:, targets[b]]
    return scores.softmax(1)


def _eigen_projection(acts: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) -> (B, h, w): centred activations projected on the first right singular
    vector; the sign (arbitrary in an SVD) is chosen so the larger magnitude is positive."""
    b, k, h, w = acts.shape
    m = acts.nan_to_num(0.0).flatten(2).transpose(1, 2)  # (B, hw, K)
    m = m - m.mean(1, keepdim=True)
    v = torch.linalg.svd(m, full_matrices=False).Vh[:, 0]  # (B, K)
    proj = (m @ v[..., None])[..., 0]  # (B, hw)
    flip = proj.min(1).values.abs() > proj.max(1).values.abs()
    return torch.where(flip[:, None], -proj, proj).reshape(b, h, w)


def class_activation_map(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | None = None,
    method: str = "gradcam",
    target: int | list[int] | torch.Tensor | None = None,
    batch_size: int = 32,
    score_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> CamResult:
    """Heat maps of why ``model`` scores class ``target`` (default: its top class) on ``x``.

    Args:
        model: any classifier returning logits (B, num_classes); run in eval mode here.
        x: (B, C, H, W) float input as the model expects it (normalised).
        layer: name of the layer to explain (``model.named_modules()``); default
            :func:`default_cam_layer`.
        method: one of :data:`CAM_METHODS`.
        target: class index, one per image, or None for the top-scoring class.
        batch_size: masked inputs per forward pass (Score-CAM).
        score_fn: explain ``score_fn(model(x))`` (B,) instead of a class logit (any output
            shape, e.g. :func:`segmentation_score`); not with ``cam`` or ``scorecam``.
    """
    if method not in CAM_METHODS:
        raise ConfigError(f"method={method!r}: choose one of {', '.join(CAM_METHODS)}")
    if score_fn is not None and method in ("cam", "scorecam"):
        raise ConfigError(f"method={method} explains a class logit; score_fn needs gradcam, "
                          "gradcam++ or eigencam")  # fmt: skip
    if x.ndim != 4:
        raise ConfigError(f"CAM input must be a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        name = layer or default_cam_layer(model, x, coarser=score_fn is not None)
        module = find_layer(model, name)
        need_grad = method in ("gradcam", "gradcam++")
        with torch.set_grad_enabled(need_grad), capture_output(module) as store:
            logits = model(x)
        if "out" not in store:
            raise ConfigError(f"layer={name!r} did not run in the forward pass; pick another")
        if score_fn is None and not (isinstance(logits, torch.Tensor) and logits.ndim == 2):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ConfigError(
                f"CAM needs classifier logits (B, num_classes); the model returned {shape} "
                "(pass score_fn, e.g. segmentation_score or detection_score, for others)"
            )
        if score_fn is None:
            targets = _targets(logits.detach(), target)
        else:
            targets = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        act = store["out"]
        if need_grad:
            if score_fn is None:
                score = logits.gather(1, targets[:, None]).sum()
            else:
                score = score_fn(logits).sum()
            (grad,) = torch.autograd.grad(score, act)
            grads = _as_map(grad, model, x.shape[-2:])
        acts = _as_map(act.detach(), model, x.shape[-2:])
        if method == "gradcam":
            raw = (grads.mean((2, 3))[..., None, None] * acts).sum(1)
        elif method == "gradcam++":
            raw = (_plusplus_weights(acts, grads)[..., None, None] * acts).sum(1)
        elif method == "cam":
            fc = _classifier(model)
            if fc.in_features != acts.shape[1]:
                raise ConfigError(
                    f"method=cam: layer {name!r} has {acts.shape[1]} channels but the classifier "
                    f"takes {fc.in_features} features; use the layer right before global "
                    "pooling, or method=gradcam"
                )
            w = fc.weight.detach()[targets]  # (B, K)
            raw = (w[..., None, None] * acts).sum(1)
        elif method == "scorecam":
            w = _score_weights(model, x, acts, targets, batch_size)
            raw = (w[..., None, None] * acts).sum(1)
        else:  # eigencam
            raw = _eigen_projection(acts)
            targets = torch.full_like(targets, -1)
    finally:
        model.train(was_training)
    raw = raw.detach()
    maps = upsample_maps(raw, tuple(x.shape[-2:]))
    out = logits.detach() if isinstance(logits, torch.Tensor) else logits
    return CamResult(maps, raw, targets, name, out)
