"""Attention and channel-gating ops for cell spaces, at the cell's resolution and width.

Each op is a builder ``Op(C_in, C_out, stride, affine=True, **options)`` of the operation
registry (:mod:`lightning_nas.spaces.registry`): (B, C_in, H, W) -> (B, C_out, H', W') with
H' = ceil(H / stride). **Stride 2** (reduction cells): a 3x3 average pool with that stride
(padding 1, padding not counted, as DARTS's ``avg_pool_3x3``) runs first, so attention
works on the reduced map (a quarter of the positions, 1/16 of the attention matrix).

* :class:`SelfAttentionOp`: multi-head self-attention over all H*W positions, with a learned
  relative position bias added to the logits (Swin, Liu et al. 2021, Eq. 4: ``softmax(QK^T /
  sqrt(d) + B) V``), the bias indexed by the offset (dy, dx) clipped to ``max_distance`` (Shaw
  et al. 2018, Sec. 3.2), so one table serves every resolution.
* :class:`LocalAttentionOp`: each position attends to its ``window`` x ``window``
  neighbourhood (stand-alone self-attention, Ramachandran et al. 2019, Sec. 3.1) with a
  learned bias per head and offset in the window; positions outside the image are masked.
* :class:`TransformerBlockOp`: a pre-norm transformer block (attention + MLP with
  ``mlp_ratio``, both residual), for network spaces whose blocks choose between
  convolutions and attention.
* :class:`SqueezeExciteOp`: channel gating ``x * sigmoid(W2 relu(W1 mean_hw(x)))`` (Hu et al.
  2018, Eq. 2-3), :class:`~lightning_nas.spaces.mobilenet.SqueezeExcite` with a sigmoid gate.

The attention ops are ``Sequential(pool?, attention, BatchNorm2d)``: ending in a BN like the
DARTS ops, so the supernets mix them the same way (non-affine BN under ``affine=False``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lightning_nas.spaces.mobilenet import SqueezeExcite


def _check_heads(heads: int, channels: int, op: str) -> int:
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"{op}: heads must be a positive integer, got {heads!r}")
    if channels % heads:
        raise ValueError(f"{op}: heads={heads} must divide the op's {channels} output channels "
                         f"(set init_args.heads to a divisor of {channels}, or change the "
                         "channels)")
    return channels // heads


def _reduce(stride: int) -> list[nn.Module]:
    """The stride-s 3x3 average pool before an op that keeps the resolution, or nothing."""
    if stride not in (1, 2):
        raise ValueError(f"cell ops take stride 1 or 2, got {stride}")
    return [nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)] if stride > 1 \
        else []


class RelativePositionBias(nn.Module):
    """A learned bias per head for each offset (dy, dx) between two positions, clipped to
    ``[-max_distance, max_distance]`` in each direction: a ``((2R+1)^2, heads)`` table.

    ``forward(h, w)`` -> (heads, h*w, h*w), entry [n, i, j] the bias of query i on key j
    (positions in row-major order). Initialised N(0, 0.02) as Swin's table.
    """

    def __init__(self, heads: int, max_distance: int = 7):
        super().__init__()
        if max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {max_distance}")
        self.heads, self.max_distance = heads, max_distance
        side = 2 * max_distance + 1
        self.table = nn.Parameter(torch.empty(side * side, heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        self._index: dict[tuple[int, int, str], torch.Tensor] = {}  # cache, not state

    def index(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(h*w, h*w) row of the table for each (query, key) pair."""
        key = (h, w, str(device))
        if key not in self._index:
            r = self.max_distance
            ys, xs = torch.meshgrid(torch.arange(h, device=device),
                                    torch.arange(w, device=device), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()  # (N,)
            dy = (ys[:, None] - ys[None, :]).clamp(-r, r) + r  # (N, N) in 0..2R
            dx = (xs[:, None] - xs[None, :]).clamp(-r, r) + r
            self._index[key] = dy * (2 * r + 1) + dx
        return self._index[key]

    def forward(self, h: int, w: int) -> torch.Tensor:
        idx = self.index(h, w, self.table.device)
        return self.table[idx].permute(2, 0, 1)  # (N, N, heads) -> (heads, N, N)


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map.

    (B, C_in, H, W) -> 1x1 conv to q, k, v (B, heads, N, d) with N = H*W, d = C_out / heads ->
    ``softmax(q k^T / sqrt(d) + bias) v`` -> (B, C_out, H, W) -> 1x1 output projection.
    """

    def __init__(self, c_in: int, c_out: int, heads: int = 2, max_distance: int = 7):
        super().__init__()
        self.heads = heads
        self.head_dim = _check_heads(heads, c_out, "self_attention")
        self.c_out = c_out
        self.qkv = nn.Conv2d(c_in, 3 * c_out, 1, bias=False)
        self.proj = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.position_bias = RelativePositionBias(heads, max_distance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, 3, self.heads, self.head_dim, n)  # (B, 3, heads, d, N)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, N, d)
        bias = self.position_bias(h, w).to(q.dtype)  # (heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, N, d)
        out = out.transpose(-1, -2).reshape(b, self.c_out, h, w)  # (B, C_out, H, W)
        return self.proj(out)


class LocalSelfAttention(nn.Module):
    """Each position attends to its ``window`` x ``window`` neighbourhood (zero padding masked).

    (B, C_in, H, W) -> q (B, heads, d, 1, N), neighbourhood k, v (B, heads, d, K, N) with
    K = window^2 (``F.unfold``) -> logits (B, heads, K, N) = q.k / sqrt(d) + bias[head, offset]
    -> softmax over K -> (B, C_out, H, W) -> 1x1 output projection.
    """

    def __init__(self, c_in: int, c_out: int, heads: int = 2, window: int = 3):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"local_attention: window must be an odd size >= 1, got {window}")
        self.heads, self.window = heads, window
        self.head_dim = _check_heads(heads, c_out, "local_attention")
        self.c_out = c_out
        self.qkv = nn.Conv2d(c_in, 3 * c_out, 1, bias=False)
        self.proj = nn.Conv2d(c_out, c_out, 1, bias=False)
        # the relative bias: one learned value per head and offset in the window
        self.position_bias = nn.Parameter(torch.empty(heads, window * window))
        nn.init.trunc_normal_(self.position_bias, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n, kk, pad = h * w, self.window * self.window, self.window // 2
        q, k, v = self.qkv(x).chunk(3, dim=1)  # each (B, C_out, H, W)
        shape = (b, self.heads, self.head_dim, kk, n)
        k = F.unfold(k, self.window, padding=pad).reshape(shape)  # (B, heads, d, K, N)
        v = F.unfold(v, self.window, padding=pad).reshape(shape)
        q = q.reshape(b, self.heads, self.head_dim, 1, n)
        logits = (q * k).sum(2) * self.head_dim ** -0.5  # (B, heads, K, N)
        logits = logits + self.position_bias[None, :, :, None].to(logits.dtype)
        inside = F.unfold(x.new_ones(1, 1, h, w), self.window, padding=pad)  # (1, K, N)
        logits = logits.masked_fill(inside[:, None] == 0, float("-inf"))
        attn = logits.softmax(dim=2)  # (B, heads, K, N)
        out = (attn[:, :, None] * v).sum(3)  # (B, heads, d, N)
        return self.proj(out.reshape(b, self.c_out, h, w))


class SelfAttentionOp(nn.Sequential):
    """Cell op: [3x3 avg pool, stride 2] -> :class:`SpatialSelfAttention` -> BN.

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride). ``heads`` must divide ``C_out``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool = True, *,
                 heads: int = 2, max_distance: int = 7):
        super().__init__(*_reduce(stride), SpatialSelfAttention(c_in, c_out, heads, max_distance),
                         nn.BatchNorm2d(c_out, affine=affine))


class LocalAttentionOp(nn.Sequential):
    """Cell op: [3x3 avg pool, stride 2] -> :class:`LocalSelfAttention` -> BN.

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride). ``heads`` must divide ``C_out``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool = True, *,
                 heads: int = 2, window: int = 3):
        super().__init__(*_reduce(stride), LocalSelfAttention(c_in, c_out, heads, window),
                         nn.BatchNorm2d(c_out, affine=affine))


class TransformerBlockOp(nn.Module):
    """Cell op / block: a pre-norm vision-transformer block on the feature map.

    [3x3 avg pool, stride 2] -> [1x1 conv + BN when C_in != C_out] -> ``x + MHSA(BN(x))`` ->
    ``x + MLP(BN(x))`` with the MLP two 1x1 convs C -> ``mlp_ratio`` * C -> C and a GELU
    (Dosovitskiy et al. 2021, Eq. 2-3, with batch norm for layer norm as on conv feature
    maps); the attention is :class:`SpatialSelfAttention` (relative position bias).
    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride); ``heads`` must divide ``C_out``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool = True, *,
                 heads: int = 2, mlp_ratio: float = 2.0, max_distance: int = 7):
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"transformer_block: mlp_ratio must be > 0, got {mlp_ratio}")
        layers = _reduce(stride)
        if c_in != c_out:
            layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine)]
        self.reduce = nn.Sequential(*layers)
        hidden = max(1, round(c_out * mlp_ratio))
        self.norm1 = nn.BatchNorm2d(c_out, affine=affine)
        self.attention = SpatialSelfAttention(c_out, c_out, heads, max_distance)
        self.norm2 = nn.BatchNorm2d(c_out, affine=affine)
        self.mlp = nn.Sequential(nn.Conv2d(c_out, hidden, 1), nn.GELU(),
                                 nn.Conv2d(hidden, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)  # (B, C_out, H', W')
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SqueezeExciteOp(nn.Sequential):
    """Cell op: [3x3 avg pool, stride 2] -> [1x1 conv + BN when C_in != C_out] -> SE gate.

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride): the input re-weighted per channel
    by ``sigmoid(W2 relu(W1 mean_hw(x)))`` with a bottleneck of ``max(1, C // reduction)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool = True, *,
                 reduction: int = 4):
        if reduction < 1:
            raise ValueError(f"squeeze_excite: reduction must be >= 1, got {reduction}")
        layers = _reduce(stride)
        if c_in != c_out:
            layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine)]
        layers.append(SqueezeExcite(c_out, mid=max(1, c_out // reduction), act="relu",
                                    gate="sigmoid"))
        super().__init__(*layers)
