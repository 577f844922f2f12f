"""cvcraft.nn.transformer_decoder vs torch.nn.TransformerDecoderLayer / TransformerDecoder
with copied weights: causal + padding masks, post- and pre-norm, batch_first both ways,
outputs and gradients; the mask builders vs torch's."""

from __future__ import annotations

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.nn import transformer_decoder as TD
from cvcraft.nn.transformer import sinusoidal_position_embedding


def _pair(norm_first: bool, batch_first: bool, activation: str = "relu"):
    torch.manual_seed(0)
    kw = dict(d_model=16, nhead=4, dim_feedforward=24, dropout=0.0, activation=activation,
              batch_first=batch_first, norm_first=norm_first)  # fmt: skip
    ref = torch.nn.TransformerDecoderLayer(**kw).double()
    ours = TD.TransformerDecoderBlock(**kw).double()
    ours.load_state_dict(TD.from_torch_decoder_state_dict(ref.state_dict()), strict=True)
    return ours, ref


def test_causal_mask_equals_torch():
    for n in (1, 2, 7):
        torch.testing.assert_close(
            TD.causal_mask(n), torch.nn.Transformer.generate_square_subsequent_mask(n)
        )


def test_padding_mask():
    m = TD.padding_mask(torch.tensor([3, 0, 5]), max_len=5)
    expect = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(m, expect)
    with pytest.raises(ConfigError, match="shorter"):
        TD.padding_mask(torch.tensor([3, 6]), max_len=5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_block_equals_torch_with_masks(norm_first, batch_first, activation):
    ours, ref = _pair(norm_first, batch_first, activation)
    g = torch.Generator().manual_seed(2)
    B, N, M = 3, 6, 5
    tgt = torch.randn(B, N, 16, generator=g, dtype=torch.float64)
    # Positions: the sinusoidal codes ViT's module shares.
    tgt = tgt + sinusoidal_position_embedding(N, 16).double()
    mem = torch.randn(B, M, 16, generator=g, dtype=torch.float64)
    if not batch_first:
        tgt, mem = tgt.transpose(0, 1).contiguous(), mem.transpose(0, 1).contiguous()
    masks = dict(
        tgt_mask=TD.causal_mask(N).isinf(),  # bool, like the padding masks
        tgt_key_padding_mask=TD.padding_mask(torch.tensor([6, 4, 5]), N),
        memory_key_padding_mask=TD.padding_mask(torch.tensor([5, 2, 3]), M),
    )
    results = []
    for m in (ours, ref):
        t, k = tgt.clone().requires_grad_(), mem.clone().requires_grad_()
        y = m(t, k, **masks)
        w = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)
        (y * w).sum().backward()
        results.append([y.detach(), t.grad, k.grad] + [p.grad for p in m.parameters()])
    grads_ref = dict(zip([n for n, _ in ref.named_parameters()], results[1][3:]))
    grads_ref = TD.from_torch_decoder_state_dict(grads_ref)
    ours_grads = dict(zip([n for n, _ in ours.named_parameters()], results[0][3:]))
    for a, b in zip(results[0][:3], results[1][:3]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert set(ours_grads) == set(grads_ref)
    for name, g_ours in ours_grads.items():
        torch.testing.assert_close(g_ours, grads_ref[name], atol=1e-6, rtol=0, msg=name)


def test_bool_masks_memory_mask_and_is_causal():
    ours, ref = _pair(False, True)
    ours.eval(), ref.eval()
    tgt, mem = torch.randn(2, 4, 16).double(), torch.randn(2, 3, 16).double()
    mem_mask = torch.tensor([[False, True, False]] * 4)  # bool: True = not allowed
    causal_bool = torch.ones(4, 4, dtype=torch.bool).triu(1)
    a = ours(tgt, mem, tgt_mask=causal_bool, memory_mask=mem_mask)
    b = ref(tgt, mem, tgt_mask=causal_bool, memory_mask=mem_mask)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    c = ours(tgt, mem, tgt_is_causal=True)  # builds the causal mask itself
    d = ref(tgt, mem, tgt_mask=TD.causal_mask(4).double(), tgt_is_causal=True)
    torch.testing.assert_close(c, d, atol=1e-6, rtol=0)
    # a per-(batch, head) float mask (B*nh, Lq, Lk) with memory padding
    per_head = torch.randn(2 * 4, 4, 3).double()
    pad = TD.padding_mask(torch.tensor([3, 2]), 3)
    pad_float = torch.zeros(2, 3).double().masked_fill(pad, float("-inf"))  # torch wants one type
    a = ours(tgt, mem, memory_mask=per_head, memory_key_padding_mask=pad)
    b = ref(tgt, mem, memory_mask=per_head, memory_key_padding_mask=pad_float)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # causality: changing the last target token leaves the earlier outputs alone
    t2 = tgt.clone()
    t2[:, -1] += 5
    e = ours(t2, mem, tgt_is_causal=True)
    torch.testing.assert_close(e[:, :-1], c[:, :-1], atol=1e-12, rtol=0)
    assert not torch.allclose(e[:, -1], c[:, -1])


def test_stack_equals_torch_decoder():
    torch.manual_seed(1)
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True,
              norm_first=True)  # fmt: skip
    layer = torch.nn.TransformerDecoderLayer(**kw)
    ref = torch.nn.TransformerDecoder(layer, 3, norm=torch.nn.LayerNorm(8)).double().eval()
    ours = TD.TransformerDecoder(3, final_norm=True, **kw).double().eval()
    ours.load_state_dict(TD.from_torch_decoder_state_dict(ref.state_dict()), strict=True)
    tgt, mem = torch.randn(2, 5, 8).double(), torch.randn(2, 7, 8).double()
    cm = TD.causal_mask(5).double()
    torch.testing.assert_close(ours(tgt, mem, tgt_mask=cm), ref(tgt, mem, tgt_mask=cm),
                               atol=1e-6, rtol=0)  # fmt: skip


def test_bad_arguments():
    with pytest.raises(ConfigError, match="activation"):
        TD.TransformerDecoderBlock(8, 2, activation="tanh")
    with pytest.raises(ConfigError, match="multiple"):
        TD.TransformerDecoderBlock(10, 3)
    block = TD.TransformerDecoderBlock(8, 2)
    with pytest.raises(ConfigError, match="one width"):
        block(torch.randn(2, 3, 8), torch.randn(2, 3, 6))
    with pytest.raises(ConfigError, match="bool"):
        block(torch.randn(2, 3, 8), torch.randn(2, 3, 8), tgt_key_padding_mask=torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="n >= 1"):
        TD.causal_mask(0)
