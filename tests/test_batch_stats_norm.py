"""batch_norm's routes around slow CPU kernels compute what F.batch_norm computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.spaces.batch_stats_norm import BatchStatsNorm, batch_norm
from lightning_nas.strategies.sync_bn import GlobalBatchNorm2d


@pytest.mark.parametrize("shape", [(4, 4, 32, 32), (4, 16, 32, 32), (4, 16, 8, 8),
                                   (4, 8, 1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_every_route_equals_f_batch_norm(shape, channels_last, scaled):
    torch.manual_seed(0)
    x = 3 * torch.randn(shape) + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.rand(shape[1], requires_grad=True) if scaled else None
    g = torch.randn(shape)
    results = []
    for fn in (batch_norm, lambda x, w, eps: F.batch_norm(x, None, None, w, None, True, 0.0, eps)):
        y = fn(x, weight, 1e-5)
        assert y.shape == x.shape
        wrt = [x] + ([weight] if scaled else [])
        results.append((y, *torch.autograd.grad(y, wrt, g)))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if channels_last:  # the output stays in the activations' layout
        assert results[0][0].is_contiguous(memory_format=torch.channels_last)


def test_the_wrapper_defers_to_bns_it_cannot_replace():
    x = torch.randn(4, 3, 5, 5)
    tracked = nn.BatchNorm2d(3, affine=False)  # running statistics: must update them
    BatchStatsNorm(tracked)(x)
    assert int(tracked.num_batches_tracked) == 1
    global_bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    global_bn.__class__ = GlobalBatchNorm2d
    calls = []
    global_bn.register_forward_hook(lambda *_: calls.append(1))
    BatchStatsNorm(global_bn)(x)
    assert calls == [1]
    assert list(BatchStatsNorm(tracked).state_dict()) == []  # not a submodule
