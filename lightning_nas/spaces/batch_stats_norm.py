"""Batch normalisation with batch statistics, routed around torch's slow CPU kernels.

The DARTS supernet normalises with batch statistics only (``_batch_stats_only``), on
channels-last activations. torch 2.13's CPU batch-norm kernel for channels-last tensors
vectorises over the channels, which is slow when they are few. Measured forward + backward
at 2 threads (B=64, scripts/bench_darts.py shapes): C=4 at 32x32 (PC-DARTS, K=4) 3.4 ms, or
1.3 ms through an NCHW copy; C=16 at 32x32 2.0 ms, or 1.2 ms as a (B*H*W, C) 1-D batch norm;
C >= 32 at 16x16 and smaller: no better route. :func:`batch_norm` picks the route; every
route computes the same normalisation (tests/test_batch_stats_norm.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def batch_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``F.batch_norm`` of (B, C, H, W) ``x`` with its batch statistics, scale ``weight``
    (C,) or None, no bias, no running statistics."""
    if (x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        b, c, h, w = x.shape
        if c < 8:
            y = F.batch_norm(x.contiguous(), None, None, weight, None, True, 0.0, eps)
            return y.contiguous(memory_format=torch.channels_last)
        if h * w >= 1024:
            rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C), no copy
            y = F.batch_norm(rows, None, None, weight, None, True, 0.0, eps)
            return y.reshape(b, h, w, c).permute(0, 3, 1, 2)  # channels-last again
    return F.batch_norm(x, None, None, weight, None, True, 0.0, eps)


def uses_batch_stats_only(bn: nn.Module) -> bool:
    """A plain non-affine ``BatchNorm2d`` without running statistics: :func:`batch_norm`
    computes exactly what it does (a subclass such as ``GlobalBatchNorm2d`` may not)."""
    return type(bn) is nn.BatchNorm2d and not bn.affine and bn.running_mean is None


def normalise(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)``, through :func:`batch_norm` when that is exact."""
    return batch_norm(x, None, bn.eps) if uses_batch_stats_only(bn) else bn(x)


class BatchStatsNorm(nn.Module):
    """Calls ``bn`` through :func:`batch_norm` when that is exact, else ``bn`` itself.

    Holds a reference to ``bn`` (registered where it lives; this wrapper is used in
    unregistered views of an op, so the state dict does not change)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.__dict__["bn"] = bn  # not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(self.__dict__["bn"], x)
