"""Primitive operations shared by the cell spaces.

Every op maps ``(B, C, H, W) -> (B, C, H / stride, W / stride)``. The factories in
:data:`DARTS_OPS` follow Liu et al., "DARTS: Differentiable Architecture Search" (ICLR 2019),
Sec. 3.1 / Appendix A.1: separable convolutions are applied twice, every conv block is
ReLU-Conv-BN, dilated convs have dilation 2, pooling is 3x3.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride) -> BN: the 1x1 cell preprocessing and NB201's conv op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int = 1, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise conv (dilated) -> pointwise conv -> BN.

    ``preact=False`` leaves out the leading ReLU, for a supernet that applies it once per
    edge and shares the result among all ops of the edge.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True, preact: bool = True):
        super().__init__(
            *([nn.ReLU(inplace=False)] if preact else []),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks with dilation 1; only the first one strides (DARTS A.1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, preact: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine, preact),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The 'none' op: zeros of the strided output shape (no parameters); ``c_out`` other
    channels than the input's (None: the same)."""

    def __init__(self, stride: int, c_out: int | None = None):
        super().__init__()
        self.stride = stride
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        if self.c_out is not None and self.c_out != x.shape[1]:
            return out.new_zeros(out.shape[0], self.c_out, *out.shape[2:])
        return out.mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset stride-2 1x1 convs, concatenated on channels.

    ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``; the second conv sees the input shifted by
    one pixel so the two halves cover different positions. ``c_out`` must be even.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True, preact: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False) if preact else nn.Identity()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # same H, W, moved by (1, 1)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


OpFactory = Callable[[int, int, bool], nn.Module]  # (channels, stride, affine) -> module

#: The eight DARTS operations, in the order of the paper's code (index matters for alphas).
DARTS_OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "skip_connect": lambda c, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    ),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}

#: Ops of the NASNet / AmoebaNet cells published in the DARTS code base, so those presets
#: build too. They are not part of the DARTS search space.
EXTRA_OPS: dict[str, OpFactory] = {
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine),
    "conv_7x1_1x7": lambda c, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(c, affine=affine),
    ),
}


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples of a branch with probability ``drop_prob`` (scaled to keep the mean).

    ``x`` is (B, ...); the mask is (B, 1, 1, 1). Zoph et al. 2018 "ScheduledDropPath".
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
    return x * mask.bernoulli_(keep).div_(keep)
