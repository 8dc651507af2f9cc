"""Dropout whose mask belongs to the image's place in the global batch, not to the rank.

Plain ``nn.Dropout`` draws from each process's own random stream, so under DDP a 2-rank step
drops different units than the single process does on the same global batch, and the steps
differ however exactly batch norm is synchronised. Inside :func:`global_batch_masks` every
:class:`GlobalBatchDropout` instead draws the mask of the *whole* global batch
(``world_size * B`` rows) from one generator that all ranks seed alike, and keeps rows
``rank, rank + world_size, ...``: the places of this rank's images in the global batch, as
``DistributedSampler`` deals them (rank ``r`` takes items ``r, r + W, ...`` of the epoch's
order, so its ``i``-th image of a step is row ``i * W + r`` of the single process's batch of
``W * B`` in that order). Every rank makes the same sequence of dropout calls (the same
subnets in the same order), so the generators stay in step and each image gets the row the
single process gives it. Outside the context, or in eval mode, it is ``nn.Dropout``. The
extra cost is the random numbers of the other ranks' rows (a ``(W * B, C)`` draw per call;
for OFA's classifier input C = 1280).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class GlobalBatchDropout(nn.Dropout):
    """``nn.Dropout`` that takes its mask from :func:`global_batch_masks` when one is active."""

    _masks: tuple[torch.Generator, int, int] | None = None  # (generator, rank, world size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._masks is None or not self.training or self.p == 0:
            return super().forward(x)
        generator, rank, world = self._masks
        b = x.shape[0]
        keep = 1.0 - self.p
        draw = torch.rand((world * b, *x.shape[1:]), generator=generator,
                          device=generator.device)[rank::world]  # (b, ...)
        mask = (draw < keep).to(device=x.device, dtype=x.dtype)
        return x * mask / keep


def globalise_dropout(module: nn.Module) -> int:
    """Turn every ``nn.Dropout`` of ``module`` into a :class:`GlobalBatchDropout` in place
    (no parameters or buffers change); returns how many were converted."""
    converted = 0
    for m in module.modules():
        if type(m) is nn.Dropout:
            m.__class__ = GlobalBatchDropout
            converted += 1
    return converted


@contextmanager
def global_batch_masks(modules: list[nn.Module], seed: int, *, rank: int, world_size: int,
                       device: torch.device) -> Iterator[None]:
    """Within the block, the :class:`GlobalBatchDropout` layers of ``modules`` draw from one
    generator seeded with ``seed`` (pass the same seed on every rank) on ``device``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    layers = [m for module in modules for m in module.modules()
              if isinstance(m, GlobalBatchDropout)]
    for layer in layers:
        layer._masks = (generator, rank, world_size)
    try:
        yield
    finally:
        for layer in layers:
            layer._masks = None


__all__ = ["GlobalBatchDropout", "global_batch_masks", "globalise_dropout"]
