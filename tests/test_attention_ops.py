"""Attention and squeeze-excite cell ops: shapes at stride 1 and 2, agreement with a
direct computation, gradients, and the relative position bias."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_nas.spaces.attention import (
    LocalAttentionOp,
    LocalSelfAttention,
    SelfAttentionOp,
    SpatialSelfAttention,
    SqueezeExciteOp,
    TransformerBlockOp,
)

OPS = (SelfAttentionOp, LocalAttentionOp, SqueezeExciteOp, TransformerBlockOp)


@pytest.mark.parametrize("op_class", OPS)
def test_shapes_at_stride_1_and_2_and_gradients_reach_every_parameter(op_class):
    torch.manual_seed(0)
    for c_in, c_out in ((8, 8), (8, 16)):  # SE bottleneck C / 4: 2 and 4 channels
        for stride, side in ((1, 6), (2, 3)):
            op = op_class(c_in, c_out, stride)
            # channel means that vary per image (SE squeezes them; zero-mean noise would
            # give every image the same bottleneck input)
            x = (torch.randn(3, c_in, 6, 6) + torch.randn(3, c_in, 1, 1)).requires_grad_()
            out = op(x)
            assert out.shape == (3, c_out, side, side)
            (out * torch.randn_like(out)).sum().backward()
            assert x.grad.abs().sum() > 0
            for name, p in op.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, (op_class.__name__, name)


def _global_reference(att: SpatialSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + B[head, clip(dy), clip(dx)]) v, position by position."""
    b, _, h, w = x.shape
    heads, d, r = att.heads, att.head_dim, att.position_bias.max_distance
    q, k, v = att.qkv(x).reshape(b, 3, heads, d, h * w).unbind(1)  # (B, heads, d, N)
    pos = [(i, j) for i in range(h) for j in range(w)]
    bias = torch.empty(heads, h * w, h * w)
    for a, (ya, xa) in enumerate(pos):
        for c, (yc, xc) in enumerate(pos):
            dy, dx = max(-r, min(r, ya - yc)) + r, max(-r, min(r, xa - xc)) + r
            bias[:, a, c] = att.position_bias.table[dy * (2 * r + 1) + dx]
    logits = torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(d) + bias
    out = torch.einsum("bhnm,bhdm->bhdn", logits.softmax(-1), v)
    return att.proj(out.reshape(b, heads * d, h, w))


def test_global_attention_equals_the_formula_with_clipped_offsets():
    torch.manual_seed(1)
    att = SpatialSelfAttention(3, 4, heads=2, max_distance=2)  # 5x5 map: offsets up to 4
    with torch.no_grad():
        att.position_bias.table.normal_()
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(att(x), _global_reference(att, x), atol=1e-5, rtol=1e-5)


def test_the_relative_bias_changes_the_output_and_breaks_permutation_equivariance():
    """Without a bias, global attention with 1x1 projections is equivariant to permuting the
    positions; the learned bias makes it position-aware."""
    torch.manual_seed(2)
    att = SpatialSelfAttention(4, 4, heads=2)
    x = torch.randn(2, 4, 4, 4)
    perm = torch.randperm(16)

    def permuted(t):
        return t.flatten(2)[:, :, perm].reshape(t.shape)

    with torch.no_grad():
        att.position_bias.table.zero_()
        plain = att(x)
        torch.testing.assert_close(att(permuted(x)), permuted(plain), atol=1e-5, rtol=1e-5)
        att.position_bias.table.normal_(std=1.0)
        biased = att(x)
    assert (biased - plain).abs().max() > 1e-2
    assert (att(permuted(x)) - permuted(biased)).abs().max() > 1e-2


def _local_reference(att: LocalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    heads, d, r = att.heads, att.head_dim, att.window // 2
    q, k, v = (t.reshape(b, heads, d, h, w) for t in att.qkv(x).chunk(3, dim=1))
    out = torch.zeros(b, heads, d, h, w)
    for i in range(h):
        for j in range(w):
            logits, values = [], []
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    y, z = i + di, j + dj
                    if 0 <= y < h and 0 <= z < w:  # inside the image only
                        offset = (di + r) * att.window + (dj + r)
                        logits.append((q[..., i, j] * k[..., y, z]).sum(-1) / math.sqrt(d)
                                      + att.position_bias[:, offset])
                        values.append(v[..., y, z])
            weights = torch.stack(logits, -1).softmax(-1)  # (B, heads, neighbours)
            out[..., i, j] = torch.einsum("bhk,bhkd->bhd", weights, torch.stack(values, 2))
    return att.proj(out.reshape(b, heads * d, h, w))


def test_local_attention_equals_the_neighbourhood_formula_with_the_border_masked():
    torch.manual_seed(3)
    att = LocalSelfAttention(3, 4, heads=2, window=3)
    with torch.no_grad():
        att.position_bias.normal_()
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(att(x), _local_reference(att, x), atol=1e-5, rtol=1e-5)
    before = att(x)
    with torch.no_grad():
        att.position_bias.zero_()
    assert (att(x) - before).abs().max() > 1e-2


def test_squeeze_excite_gates_each_channel_by_a_sigmoid_of_its_mean():
    torch.manual_seed(4)
    op = SqueezeExciteOp(4, 4, 1)
    x = torch.randn(2, 4, 5, 5)
    se = op[-1]
    gate = torch.sigmoid(se.expand(torch.relu(se.reduce(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(op(x), x * gate)
    assert ((op(x) / x) - gate).abs().max() < 1e-4  # (B, C, 1, 1) gate, constant over H, W


def test_heads_must_divide_the_channels():
    with pytest.raises(ValueError, match="heads=3 must divide the op's 8 output channels"):
        SelfAttentionOp(8, 8, 1, heads=3)
    with pytest.raises(ValueError, match="local_attention: heads=3"):
        LocalAttentionOp(4, 8, 2, heads=3)
    with pytest.raises(ValueError, match="odd"):
        LocalAttentionOp(4, 4, 1, window=2)
    with pytest.raises(ValueError, match="stride 1 or 2"):
        SelfAttentionOp(4, 4, 3)


def test_transformer_block_is_two_residual_branches():
    """With the attention output projection and the MLP's last conv zero, the block is the
    identity; each branch alone adds its own term."""
    torch.manual_seed(5)
    block = TransformerBlockOp(4, 4, 1, heads=2, mlp_ratio=1.5).eval()
    assert block.mlp[0].out_channels == 6
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        block.attention.proj.weight.zero_()
        block.mlp[2].weight.zero_()
        block.mlp[2].bias.zero_()
        torch.testing.assert_close(block(x), x)
        block.mlp[2].bias.fill_(0.5)
        torch.testing.assert_close(block(x), x + 0.5)
    with pytest.raises(ValueError, match="transformer_block: mlp_ratio must be > 0"):
        TransformerBlockOp(4, 4, 1, mlp_ratio=0)
