"""Reference multi-head self-attention vs torch.nn.MultiheadAttention with the same weights:
output and autograd gradients of the input and every projection, with and without a
causal mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refcheck import close

from cvcraft.errors import ConfigError
from cvcraft.reference.attention import (
    AttentionParams,
    causal_mask,
    self_attention,
    self_attention_backward,
)


@pytest.mark.parametrize("n,t,d,heads", [(2, 5, 8, 2), (1, 3, 6, 1), (3, 4, 12, 4)])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_equals_torch(n, t, d, heads, causal):
    rng = np.random.default_rng(n * 100 + t * 10 + d)
    x = rng.normal(size=(n, t, d))
    p = AttentionParams(*(rng.normal(0, d**-0.5, size=(d, d)) for _ in range(4)),
                        *(rng.normal(0, 0.1, size=d) for _ in range(4)))  # fmt: skip
    mask = causal_mask(t) if causal else None
    y, cache = self_attention(x, p, heads, mask)

    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([p.wq, p.wk, p.wv])))
        mha.in_proj_bias.copy_(torch.tensor(np.concatenate([p.bq, p.bk, p.bv])))
        mha.out_proj.weight.copy_(torch.tensor(p.wo))
        mha.out_proj.bias.copy_(torch.tensor(p.bo))
    xt = torch.tensor(x, requires_grad=True)
    mt = torch.tensor(mask) if causal else None
    yt, at = mha(xt, xt, xt, attn_mask=mt, need_weights=True, average_attn_weights=False)
    close(y, yt)
    close(cache.attn, at)
    dy = rng.normal(size=y.shape)
    yt.backward(torch.tensor(dy))
    dx, g = self_attention_backward(dy, cache, p)
    close(dx, xt.grad)
    close(np.concatenate([g.wq, g.wk, g.wv]), mha.in_proj_weight.grad)
    close(np.concatenate([g.bq, g.bk, g.bv]), mha.in_proj_bias.grad)
    close(g.wo, mha.out_proj.weight.grad)
    close(g.bo, mha.out_proj.bias.grad)


def test_attention_errors():
    p = AttentionParams(*(np.eye(6) for _ in range(4)), *(np.zeros(6) for _ in range(4)))
    with pytest.raises(ConfigError, match="divisible by heads=4"):
        self_attention(np.zeros((1, 2, 6)), p, 4)
