import math

import pytest
import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.transformer import (
    CrossAttention,
    LearnedPositionEmbedding,
    MultiHeadSelfAttention,
    TransformerEncoderBlock,
    WindowAttention,
    interpolate_pos_embed,
    relative_position_index,
    shifted_window_mask,
    sinusoidal_position_embedding,
    window_partition,
    window_reverse,
)


def _copy_mha(ref: nn.MultiheadAttention, ours: MultiHeadSelfAttention) -> None:
    with torch.no_grad():
        ours.qkv.weight.copy_(ref.in_proj_weight)
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.proj.weight.copy_(ref.out_proj.weight)
        ours.proj.bias.copy_(ref.out_proj.bias)


def test_mhsa_equals_torch_multihead_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(64, 8, batch_first=True).eval()
    nn.init.normal_(ref.in_proj_bias)  # torch zero-inits biases; make them matter
    ours = MultiHeadSelfAttention(64, 8).eval()
    _copy_mha(ref, ours)
    x = torch.randn(3, 10, 64)
    mask = torch.randn(10, 10)  # additive float mask works the same in both
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
    expected_m, _ = ref(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask), expected_m, atol=1e-5, rtol=1e-5)


def test_cross_attention_equals_torch_with_kdim_vdim():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(32, 4, kdim=32, vdim=32, batch_first=True).eval()
    nn.init.normal_(ref.in_proj_bias)
    ours = CrossAttention(32, 4).eval()
    with torch.no_grad():
        w, b = ref.in_proj_weight, ref.in_proj_bias
        ours.q.weight.copy_(w[:32])
        ours.q.bias.copy_(b[:32])
        ours.kv.weight.copy_(w[32:])
        ours.kv.bias.copy_(b[32:])
        ours.proj.load_state_dict(ref.out_proj.state_dict())
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    expected, _ = ref(x, ctx, ctx, need_weights=False)
    out = ours(x, ctx)
    assert out.shape == (2, 5, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_encoder_block_equals_torch_pre_norm_layer():
    torch.manual_seed(2)
    ref = nn.TransformerEncoderLayer(
        48, 4, 192, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
        batch_first=True, norm_first=True,
    ).eval()  # fmt: skip
    ours = TransformerEncoderBlock(48, 4, mlp_ratio=4.0).eval()
    _copy_mha(ref.self_attn, ours.attn)
    with torch.no_grad():
        ours.norm1.load_state_dict(ref.norm1.state_dict())
        ours.norm2.load_state_dict(ref.norm2.state_dict())
        ours.mlp.fc1.load_state_dict(ref.linear1.state_dict())
        ours.mlp.fc2.load_state_dict(ref.linear2.state_dict())
    x = torch.randn(2, 7, 48)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_window_partition_reverse_round_trip_and_order():
    x = torch.randn(2, 12, 8, 5)
    win = window_partition(x, 4)
    assert win.shape == (2 * 3 * 2, 16, 5)
    # Window 1 of image 0 is rows 0..3, cols 4..7, row-major inside the window.
    torch.testing.assert_close(win[1], x[0, 0:4, 4:8].reshape(16, 5))
    torch.testing.assert_close(window_reverse(win, 4, 12, 8), x)


def test_relative_position_index_by_hand():
    idx = relative_position_index(2)  # tokens (0,0) (0,1) (1,0) (1,1); table is 3x3
    # pair (q=(0,0), k=(1,1)): dy=-1, dx=-1 -> (0, 0) -> row 0; q=k -> centre row 4.
    assert idx[0, 3] == 0 and idx[3, 0] == 8
    assert torch.all(idx.diag() == 4)
    assert idx.max() == 8 and idx.min() == 0


def test_shifted_window_mask_blocks_across_regions_by_hand():
    # 4x4 map, window 2, shift 1: rows/cols split into bands [0,2), [2,3), [3,4).
    mask = shifted_window_mask(4, 4, 2, 1)
    assert mask.shape == (4, 4, 4)
    assert torch.all(mask[0] == 0)  # top-left window lies inside one region
    # Top-right window holds cols 2 and 3 of rows 0-1: col 2 and col 3 are different
    # regions (col 3 wrapped around from the left edge), so they may not attend.
    inf = math.inf
    expected = torch.tensor(
        [[0, -inf, 0, -inf], [-inf, 0, -inf, 0], [0, -inf, 0, -inf], [-inf, 0, -inf, 0]]
    )
    torch.testing.assert_close(mask[1], expected)
    # Bottom-right window: 4 tokens from 4 different regions, each sees only itself.
    assert torch.equal(mask[3] == 0, torch.eye(4, dtype=torch.bool))


def _window_attention_reference(m: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-token loop: each query attends to keys in its own shifted window and region."""
    B, H, W, C = x.shape
    w, s, nh, hs = m.window, m.shift, m.num_heads, m.head_dim
    qkv = m.qkv(x).reshape(B, H, W, 3, nh, hs)
    table = m.relative_position_bias_table
    out = torch.zeros(B, H, W, nh, hs)
    # shifted coordinates: token (i, j) sits at ((i - s) mod H, (j - s) mod W) after the roll
    for i in range(H):
        for j in range(W):
            ri, rj = (i - s) % H, (j - s) % W
            keys, bias = [], []
            for a in range(H):
                for b in range(W):
                    ra, rb = (a - s) % H, (b - s) % W
                    same_window = ri // w == ra // w and rj // w == rb // w
                    # tokens that were not neighbours before the roll (wrapped) are masked
                    near = abs(i - a) < w and abs(j - b) < w
                    if same_window and near:
                        keys.append((a, b))
                        dy, dx = ri - ra + w - 1, rj - rb + w - 1
                        bias.append(table[dy * (2 * w - 1) + dx])
            q = qkv[:, i, j, 0]  # (B, nh, hs)
            k = torch.stack([qkv[:, a, b, 1] for a, b in keys], 2)  # (B, nh, K, hs)
            v = torch.stack([qkv[:, a, b, 2] for a, b in keys], 2)
            att = (q[:, :, None] * k).sum(-1) / math.sqrt(hs) + torch.stack(bias, 1)
            out[:, i, j] = (att.softmax(-1)[..., None] * v).sum(2)
    return m.proj(out.reshape(B, H, W, C))


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_matches_token_loop_reference(shift):
    torch.manual_seed(3)
    m = WindowAttention(8, 2, window=4, shift=shift).eval()
    nn.init.normal_(m.relative_position_bias_table)
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _window_attention_reference(m, x), atol=1e-5, rtol=1e-4)


def test_window_attention_pads_odd_sizes():
    m = WindowAttention(8, 2, window=4, shift=2).eval()
    assert m(torch.randn(2, 6, 9, 8)).shape == (2, 6, 9, 8)
    with pytest.raises(ConfigError, match=r"shift 4 must be in \[0, window=4\)"):
        WindowAttention(8, 2, window=4, shift=4)


def test_sinusoidal_embedding_equals_formula():
    pe = sinusoidal_position_embedding(50, 16)
    for p in (0, 7, 49):
        for i in range(8):
            angle = p / 10000 ** (2 * i / 16)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_interpolate_pos_embed_keeps_class_token_and_matches_bicubic():
    torch.manual_seed(4)
    pos = torch.randn(1, 1 + 4 * 6, 3)
    out = interpolate_pos_embed(pos, (4, 6), (8, 3))
    assert out.shape == (1, 1 + 24, 3)
    torch.testing.assert_close(out[:, 0], pos[:, 0])
    grid = pos[0, 1:].reshape(4, 6, 3).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(grid, size=(8, 3), mode="bicubic")
    torch.testing.assert_close(out[0, 1:], ref[0].permute(1, 2, 0).reshape(24, 3))
    assert interpolate_pos_embed(pos, (4, 6), (4, 6)) is pos
    emb = LearnedPositionEmbedding((4, 6), 3)
    x = torch.zeros(2, 1 + 8 * 3, 3)
    assert emb(x, (8, 3)).shape == (2, 25, 3)
