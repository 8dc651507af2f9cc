"""A depthwise convolution whose backward pass takes oneDNN's fast kernels on CPU.

On CPU, PyTorch runs depthwise convolutions through oneDNN. Its forward kernel handles any
kernel size and dilation. Its specialised backward kernels (``jit_dw``) cover only some
cases: the input gradient without dilation, and the weight gradient of an undilated 3x3.
Every other case falls back to the generic grouped kernel, which pads each one-channel group
to a 16-channel block. That is about 16x the arithmetic: measured at the DARTS search
configuration (B=64, C=16, 32x32, channels-last, 1 thread), the backward of a 5x5 took
9.4 ms against a 1.5 ms forward. The DARTS ops ``sep_conv_5x5``, ``dil_conv_3x3`` and
``dil_conv_5x5`` are all such cases (``scripts/bench_darts.py``).

:class:`DepthwiseConv2d` keeps ``nn.Conv2d``'s parameters and forward. On CPU, its backward
rewrites both gradients as calls to the fast kernels:

* input gradient, stride 1: a forward depthwise convolution of the output gradient with
  the flipped kernel, with padding ``(k - 1) * d - p``;
* weight gradient of a ``k x k`` kernel, undilated, k > 3: a sum of undilated 3x3
  weight gradients over 3x3 blocks of the kernel. Each block is the 3x3 gradient over the
  padded input shifted by the block's offset.

The remaining cases (stride > 1 input gradients, dilated weight gradients) call the same
aten backward that ``nn.Conv2d`` uses, and ask it only for the gradient that is needed.
On other devices the module is a plain ``nn.Conv2d``. ``tests/test_depthwise.py`` checks
both gradients against ``nn.Conv2d``'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _aten_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride, padding,
                   dilation, mask: list[bool]) -> tuple[torch.Tensor | None, ...]:
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0],
        x.shape[1], [*mask, False])


def input_gradient(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride,
                   padding, dilation) -> torch.Tensor:
    """dL/dx of a depthwise conv; ``grad`` (B, C, H_out, W_out) -> (B, C, H, W)."""
    kernel = weight.shape[-2:]
    flipped_padding = [(k - 1) * d - p for k, d, p in zip(kernel, dilation, padding)]
    if tuple(stride) == (1, 1) and min(flipped_padding) >= 0:
        # x[n] receives w[i] g[n + p - i d]: a correlation of g with the flipped kernel
        return F.conv2d(grad, weight.flip(-2, -1), None, 1, flipped_padding, dilation,
                        x.shape[1])
    return _aten_backward(grad, x, weight, stride, padding, dilation, [True, False])[0]


def weight_gradient(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride,
                    padding, dilation) -> torch.Tensor:
    """dL/dw of a depthwise conv: (C, 1, kh, kw)."""
    kh, kw = weight.shape[-2:]
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    h_out, w_out = grad.shape[-2:]
    h_pad, w_pad = x.shape[-2] + 2 * ph, x.shape[-1] + 2 * pw
    if (dh, dw) != (1, 1):
        if ((sh, sw) != (1, 1) or h_pad % dh or w_pad % dw or h_out % dh or w_out % dw):
            return _aten_backward(grad, x, weight, stride, padding, dilation, [False, True])[1]
        # polyphase: output o = d * o' + a sees only padded input d * (o' + i) + a, so the
        # dilated gradient is the undilated one over the d*d phase images, stacked on batch
        x_pad = F.pad(x, (pw, pw, ph, ph))
        phases = [(a, b) for a in range(dh) for b in range(dw)]
        x_phases = torch.cat([x_pad[:, :, a::dh, b::dw] for a, b in phases])
        g_phases = torch.cat([grad[:, :, a::dh, b::dw] for a, b in phases])
        return weight_gradient(g_phases, x_phases, weight, (1, 1), (0, 0), (1, 1))
    if kh != kw or kh <= 3:
        return _aten_backward(grad, x, weight, stride, padding, dilation, [False, True])[1]
    blocks = -(-kh // 3)  # 3x3 blocks per side, the last one partly outside the kernel
    extra = 3 * blocks - kh
    # padded input, with room for the last block's columns outside the kernel
    x_pad = F.pad(x, (pw, pw + extra, ph, ph + extra))
    h_in, w_in = (h_out - 1) * sh + 3, (w_out - 1) * sw + 3  # the input a 3x3 conv needs
    out = weight.new_empty(weight.shape[0], 1, 3 * blocks, 3 * blocks)
    block = weight.new_empty(weight.shape[0], 1, 3, 3)
    for i in range(blocks):
        for j in range(blocks):
            window = x_pad[:, :, 3 * i:3 * i + h_in, 3 * j:3 * j + w_in]
            out[:, :, 3 * i:3 * i + 3, 3 * j:3 * j + 3] = _aten_backward(
                grad, window, block, stride, (0, 0), (1, 1), [False, True])[1]
    return out[:, :, :kh, :kw].contiguous(memory_format=torch.contiguous_format)


class _DepthwiseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.geometry = stride, padding, dilation
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last
                               if x.is_contiguous(memory_format=torch.channels_last)
                               else torch.contiguous_format)
        gx = input_gradient(grad, x, weight, *ctx.geometry) if ctx.needs_input_grad[0] else None
        gw = weight_gradient(grad, x, weight, *ctx.geometry) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with groups = in = out channels, no bias, zero padding; on CPU its
    backward uses oneDNN's fast kernels (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or self.bias is not None or self.padding_mode != "zeros"
                or isinstance(self.padding, str) or not torch.is_grad_enabled()):
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            # CPU mixed precision: torch's bfloat16 channels-last depthwise weight gradient
            # is wrong with dilation (off by several times the gradient's size in torch
            # 2.13; tests/test_precision.py), so these small convs run in float32
            with torch.autocast("cpu", enabled=False):
                return self._fast(x.float())
        return self._fast(x)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        stride, padding, dilation = self.stride, self.padding, self.dilation
        if stride == dilation and dilation != (1, 1):
            # stride d and dilation d read only every d-th padded pixel: an undilated,
            # unstrided conv of the subsampled padded input (the dilated stride-2 backward
            # is the slowest case of all)
            x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
            x = x[:, :, ::stride[0], ::stride[1]]
            stride, padding, dilation = (1, 1), (0, 0), (1, 1)
        return _DepthwiseConv2dFunction.apply(x, self.weight, stride, padding, dilation)


def use_fast_depthwise(module: nn.Module) -> nn.Module:
    """Turn every depthwise ``nn.Conv2d`` of ``module`` into a :class:`DepthwiseConv2d`
    (same parameters and state dict); returns ``module``."""
    for m in module.modules():
        if (type(m) is nn.Conv2d and m.groups == m.in_channels == m.out_channels
                and m.groups > 1):
            m.__class__ = DepthwiseConv2d
    return module
