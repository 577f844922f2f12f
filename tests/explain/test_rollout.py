"""Attention rollout against a hand-written ViT forward (explicit softmax attention) and a
numpy rollout loop."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.explain import attention_maps, attention_rollout
from cvcraft.explain.cam import upsample_maps
from cvcraft.explain.rollout import rollout
from cvcraft.models import create_model
from cvcraft.models.classification.vit import VisionTransformer


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return VisionTransformer(32, 8, 5, embed_dim=24, depth=3, num_heads=3).eval()


def _manual_attentions(model, x):
    """Explicit ViT forward; returns per-block softmax(q k^T / sqrt(hs)) and the logits."""
    t = model.patch_embed(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), t], 1)
    t = model.pos_embed(t, (x.shape[2] // 8, x.shape[3] // 8))
    probs = []
    for blk in model.blocks:
        h = blk.norm1(t)
        B, N, C = h.shape
        nh = blk.attn.num_heads
        qkv = blk.attn.qkv(h).reshape(B, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
        a = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / (C // nh) ** 0.5, -1)
        probs.append(a)
        y = (a @ qkv[2]).transpose(1, 2).reshape(B, N, C)
        t = t + blk.attn.proj(y)
        t = t + blk.mlp(blk.norm2(t))
    return probs, model.head(model.norm(t)[:, 0])


def _numpy_rollout(probs):
    r = None
    for a in probs:
        a = a.mean(1).numpy().astype(np.float64)
        a = 0.5 * a + 0.5 * np.eye(a.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        r = a if r is None else np.einsum("bij,bjk->bik", a, r)
    return r


@torch.no_grad()
def test_recovered_attention_reproduces_the_network(vit):
    x = torch.randn(2, 3, 32, 32)
    probs, logits = attention_maps(vit, x)
    ref_probs, ref_logits = _manual_attentions(vit, x)
    assert len(probs) == 3 and probs[0].shape == (2, 3, 17, 17)
    for p, q in zip(probs, ref_probs):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    # the explicit-softmax forward gives the SDPA model's logits: the attention is the real one
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_rollout_matches_numpy(vit):
    x = torch.randn(2, 3, 32, 32)
    probs, _ = attention_maps(vit, x)
    np.testing.assert_allclose(rollout(probs).numpy(), _numpy_rollout(probs), atol=1e-6)
    maps, _ = attention_rollout(vit, x)
    ref = _numpy_rollout(probs)[:, 0, 1:].reshape(2, 4, 4)  # class token over the 4x4 patches
    # same resize/normalisation as the CAMs (checked against pytorch-grad-cam in test_cam)
    # float64 reference; min-max normalising a narrow float32 range magnifies rounding ~100x
    expected = upsample_maps(torch.from_numpy(ref), (32, 32))
    np.testing.assert_allclose(maps.numpy(), expected.numpy(), atol=2e-4)
    assert maps.shape == (2, 32, 32) and float(maps.max()) == pytest.approx(1, abs=1e-5)
    # rows of a rollout matrix are distributions
    np.testing.assert_allclose(rollout(probs).sum(-1).numpy(), 1.0, atol=1e-5)


def test_rollout_needs_a_transformer():
    with pytest.raises(ConfigError, match="needs a Vision Transformer"):
        attention_rollout(create_model("resnet20"), torch.randn(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="head_fusion"):
        rollout([torch.rand(1, 2, 3, 3)], "median")
