"""The built-in entries of the operation registry (imported by
:mod:`lightning_nas.spaces.registry`).

Every builder is ``(C_in, C_out, stride, affine=True) -> nn.Module``. With ``C_in == C_out``
the DARTS ops are exactly :data:`~lightning_nas.spaces.ops.DARTS_OPS`'s modules (same
parameter names, so checkpoints and tables do not change); NB201's convolutions are
ReLU-Conv-BN (Dong & Yang 2020, Sec. 2.1).
"""

from __future__ import annotations

from torch import nn

from lightning_nas.spaces.attention import (
    LocalAttentionOp,
    SelfAttentionOp,
    SqueezeExciteOp,
    TransformerBlockOp,
)
from lightning_nas.spaces.ops import DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero
from lightning_nas.spaces.registry import channels_kept, register_op


# -- the zero / identity pair (any space may list them) ------------------------------------
@register_op("none")
def _none(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return Zero(stride, c_out=None if c_out == c_in else c_out)


@register_op("skip_connect")
def _skip(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    """Identity; at stride 2 DARTS's FactorizedReduce, with other channels a 1x1 ReLU-Conv-BN."""
    if stride > 1:
        return FactorizedReduce(c_in, c_out, affine)
    return nn.Identity() if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0, affine=affine)


# -- DARTS (Liu et al. 2019, A.1) and the NASNet / AmoebaNet extras ------------------------
@register_op("max_pool_3x3")
def _max_pool(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    channels_kept("max_pool_3x3", c_in, c_out)
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3")
def _avg_pool(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    channels_kept("avg_pool_3x3", c_in, c_out)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


def _sep(kernel: int):
    def build(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
        return SepConv(c_in, c_out, kernel, stride, kernel // 2, affine)
    return build


def _dil(kernel: int):
    def build(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
        return DilConv(c_in, c_out, kernel, stride, kernel - 1, 2, affine)  # dilation 2
    return build


for _k in (3, 5, 7):
    register_op(f"sep_conv_{_k}x{_k}", _sep(_k))
for _k in (3, 5):
    register_op(f"dil_conv_{_k}x{_k}", _dil(_k))


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c_out, c_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(c_out, affine=affine),
    )


# -- NAS-Bench-201's convolutions (its skip, pool and none are the entries above) ------------
@register_op("nor_conv_1x1")
def _nor_conv_1x1(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return ReLUConvBN(c_in, c_out, 1, stride, 0, affine=affine)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(c_in: int, c_out: int, stride: int, affine: bool = True) -> nn.Module:
    return ReLUConvBN(c_in, c_out, 3, stride, 1, affine=affine)


# -- attention and channel gating (lightning_nas.spaces.attention) -------------------------
register_op("self_attention", SelfAttentionOp)  # 2 heads, offsets clipped to 7
register_op("local_attention_3x3", LocalAttentionOp)  # 2 heads, 3x3 window
register_op("squeeze_excite", SqueezeExciteOp)  # bottleneck C / 4
register_op("transformer_block", TransformerBlockOp)  # 2 heads, MLP ratio 2


# -- MobileNetV2 inverted bottlenecks (ReLU, no SE), as in ProxylessNAS's op set -------------
def _mbconv(kernel: int, expand: int):
    def build(c_in: int, c_out: int, stride: int) -> nn.Module:
        from lightning_nas.spaces.mobilenet import MBConv

        return MBConv(c_in, c_out, kernel, stride, expand, False, "relu")
    return build


for _k in (3, 5):
    register_op(f"mbconv_{_k}x{_k}_e3", _mbconv(_k, 3))
