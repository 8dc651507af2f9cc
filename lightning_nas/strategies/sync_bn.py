"""Batch normalisation over the batch of all DDP ranks, on any device and backend.

One-shot supernets normalise with batch statistics (DARTS, NAS-Bench-201, ENAS, SPOS), so
under DDP with per-rank statistics a 2-rank step is *not* the single-process step on both
batches: each rank normalises with the mean and variance of its own half. torch's
``SyncBatchNorm`` fixes that on GPUs only; :class:`GlobalBatchNorm2d` does it everywhere
(gloo on CPUs included) with one differentiable all-reduce of ``[sum x, sum x^2, count]`` per
layer and forward pass, so forward *and* backward equal the single-process computation on the
concatenated batch (up to float rounding: the variance is ``E[x^2] - E[x]^2`` here, torch's
own kernel uses a two-pass formula). On one process it is the ordinary ``BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose batch statistics span every rank (module docstring).

    It also takes inputs with fewer channels than ``num_features`` and normalises them with
    the first channels' parameters and statistics (elastic width, as OFA's dynamic batch
    norm does), so an elastic supernet can call it directly (``accepts_fewer_channels``).
    """

    accepts_fewer_channels = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        use_batch_stats = self.training or not self.track_running_stats
        if c == self.num_features and (not use_batch_stats or _world_size() == 1):
            return super().forward(x)
        momentum = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                        else self.momentum)
        elif self.momentum is not None:
            momentum = self.momentum
        mean, var = ((self.running_mean[:c], self.running_var[:c])
                     if self.running_mean is not None else (None, None))
        weight, bias = ((self.weight[:c], self.bias[:c]) if self.affine else (None, None))
        if not use_batch_stats or _world_size() == 1:
            return F.batch_norm(x, mean, var, weight, bias, use_batch_stats, momentum, self.eps)
        return global_batch_norm(x, mean if self.training else None,
                                 var if self.training else None, weight, bias, momentum,
                                 self.eps)


def global_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
                      running_var: torch.Tensor | None, weight: torch.Tensor | None,
                      bias: torch.Tensor | None, momentum: float, eps: float) -> torch.Tensor:
    """Batch norm of ``x`` (B, C, H, W) with the batch statistics of every rank's ``x`` (one
    differentiable all-reduce of ``[sum x, sum x^2, count]``, shape (2C + 1,)); the running
    statistics (C,), when given, are updated in place with ``momentum`` (slices of a wider
    layer's buffers work: elastic width). Call it on every rank alike."""
    from torch.distributed.nn.functional import all_reduce  # differentiable

    c = x.shape[1]
    count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
    local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])  # (2C + 1,)
    total = all_reduce(local)
    n = total[-1]
    mean = total[:c] / n  # (C,)
    var = (total[c:2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as BN normalises
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp_min(1.0)
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * unbiased)
    y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + eps)
    if weight is not None:
        y = y * weight.view(1, c, 1, 1)
    if bias is not None:
        y = y + bias.view(1, c, 1, 1)
    return y


def globalise_batchnorm(module: nn.Module) -> int:
    """Turn every ``BatchNorm2d`` of ``module`` into a :class:`GlobalBatchNorm2d` in place
    (same parameters, buffers and state-dict keys); returns how many were converted."""
    converted = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
            converted += 1
    return converted


__all__ = ["GlobalBatchNorm2d", "global_batch_norm", "globalise_batchnorm"]
