"""DepthwiseConv2d: the same outputs and gradients as nn.Conv2d, on every layout and
geometry the DARTS ops use (and odd ones that take the fallbacks)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_nas.spaces.depthwise import DepthwiseConv2d, use_fast_depthwise

GEOMETRIES = [  # kernel, dilation, stride: the DARTS ops (stride 2 on reduction edges) + 7x7
    (3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2),
    (7, 1, 1), (7, 1, 2),
]


def pair(k, d, s, channels=6):
    torch.manual_seed(k * 100 + d * 10 + s)
    ref = nn.Conv2d(channels, channels, k, s, d * (k - 1) // 2, dilation=d, groups=channels,
                    bias=False)
    with torch.no_grad():
        ref.weight.normal_()
    fast = use_fast_depthwise(copy.deepcopy(ref))
    assert type(fast) is DepthwiseConv2d
    return ref, fast


def outputs_and_gradients(conv, x, create_graph=False):
    x = x.detach().requires_grad_()
    y = conv(x)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)  # not all-ones: positions matter
    gx, gw = torch.autograd.grad(y, [x, conv.weight], g, create_graph=create_graph)
    return y, gx, gw


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("size", [8, 7, 2, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_and_both_gradients_equal_conv2d(geometry, size, channels_last):
    ref, fast = pair(*geometry)
    x = torch.randn(3, 6, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fast = fast.to(memory_format=torch.channels_last)
    for expected, got in zip(outputs_and_gradients(ref, x), outputs_and_gradients(fast, x)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_each_gradient_alone_and_no_grad():
    ref, fast = pair(5, 2, 1)
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    (gw,) = torch.autograd.grad(fast(x).square().sum(), fast.weight)
    torch.testing.assert_close(gw, torch.autograd.grad(ref(x).square().sum(), ref.weight)[0])
    (gx,) = torch.autograd.grad(fast(x).square().sum(), x)
    torch.testing.assert_close(gx, torch.autograd.grad(ref(x).square().sum(), x)[0])
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x))


@pytest.mark.parametrize("geometry", [(5, 1, 1), (3, 2, 1), (5, 2, 2)])
def test_second_derivatives_equal_conv2d(geometry):
    """Second-order DARTS's exact check differentiates through the backward pass."""
    ref, fast = pair(*geometry)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    ref, fast = ref.double(), fast.double()
    hvp = []
    for conv in (ref, fast):
        _, gx, gw = outputs_and_gradients(conv, x, create_graph=True)
        hvp.append(torch.autograd.grad(gx.square().sum() + gw.square().sum(), conv.weight)[0])
    torch.testing.assert_close(hvp[1], hvp[0])


def test_only_depthwise_convs_are_converted_and_the_state_dict_is_unchanged():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1), nn.Conv2d(4, 4, 3))
    keys = list(net.state_dict())
    use_fast_depthwise(net)
    assert [type(m).__name__ for m in net] == ["DepthwiseConv2d", "Conv2d", "Conv2d"]
    assert list(net.state_dict()) == keys


def test_the_darts_search_ops_use_it():
    from lightning_nas.spaces.darts import MixedOp, PRIMITIVES

    op = MixedOp(4, 1, PRIMITIVES)
    kinds = {type(m).__name__ for m in op.modules()}
    assert "DepthwiseConv2d" in kinds
    depthwise = [m for m in op.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(isinstance(m, DepthwiseConv2d) for m in depthwise)
    # two per sep_conv, one per dil_conv
    assert sorted((m.kernel_size[0], m.dilation[0]) for m in depthwise) == [
        (3, 1), (3, 1), (3, 2), (5, 1), (5, 1), (5, 2)]


def test_cpu_mixed_precision_runs_in_float32():
    """Under CPU autocast (bf16-mixed) the module computes in float32 (torch's bf16
    channels-last dilated depthwise weight gradient is wrong; see test_precision.py): the
    output and gradients are the float32 ones."""
    ref, fast = pair(5, 2, 1)
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    y_ref = ref(x)
    expected = (y_ref, *torch.autograd.grad(y_ref.sum(), [x, ref.weight]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fast(x)
    got = (y, *torch.autograd.grad(y.sum(), [x, fast.weight]))
    assert y.dtype == torch.float32
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
