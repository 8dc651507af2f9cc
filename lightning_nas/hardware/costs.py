"""One call that gives a candidate's hardware metrics: the hook search loops plug in.

``CostHook(input_shape, ...)(arch, model)`` returns ``{"params", "flops", "macs"}`` and, when
latency is on, ``{"latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_iqr_ms"}``,
using the standard metric keys of :mod:`lightning_nas.hardware.objective`. Results are
cached per architecture (``Arch`` is hashable), so re-evaluating a sub-network costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lightning_nas.hardware.latency import measure_latency
from lightning_nas.hardware.metrics import _check_shape, count_flops, count_parameters

__all__ = ["model_costs", "CostHook"]


def model_costs(model: nn.Module, input_shape: Sequence[int], *, latency: bool = False,
                batch_size: int = 1, **latency_kwargs: Any) -> dict[str, float]:
    """Params, FLOPs/MACs per sample and optionally measured latency of ``model``.

    Args:
        model: the standalone network.
        input_shape: one sample without the batch dimension, e.g. ``(3, 32, 32)``.
        latency: also time it with :func:`measure_latency`.
        batch_size: batch of the latency measurement (FLOPs are always per sample).
        **latency_kwargs: device, warmup, repeats, num_threads for :func:`measure_latency`.

    Returns:
        ``{"params": count, "flops": per sample, "macs": per sample}`` plus, with latency,
        ``latency_ms`` (median, ms per batch), ``latency_p10_ms``, ``latency_p90_ms``,
        ``latency_iqr_ms``.
    """
    shape = _check_shape(input_shape)
    flops = count_flops(model, shape, batch_size=1)
    out: dict[str, float] = {"params": count_parameters(model), "flops": flops.flops,
                             "macs": flops.macs}
    if latency:
        res = measure_latency(model, shape, batch_size=batch_size, **latency_kwargs)
        out.update(latency_ms=res.median_ms, latency_p10_ms=res.p10_ms,
                   latency_p90_ms=res.p90_ms, latency_iqr_ms=res.iqr_ms)
    return out


class CostHook:
    """Metric hook ``(arch, model) -> dict`` for search loops and one-shot strategies.

    Args:
        input_shape: one sample without the batch dimension.
        latency: measure latency too (slower: warmup + repeats forward passes).
        batch_size: batch of the latency measurement.
        cache: remember results per ``arch`` (set False when ``model`` changes for the same
            arch, e.g. a different width multiplier outside the Arch).
        **latency_kwargs: device, warmup, repeats, num_threads for :func:`measure_latency`.

    Example:
        >>> hook = CostHook((3, 32, 32), latency=True, repeats=20, num_threads=1)
        >>> metrics = hook(arch, space.build(arch))
        >>> reasons = Constraints(max_latency_ms=5).check(metrics)  # [] when feasible
    """

    def __init__(self, input_shape: Sequence[int], *, latency: bool = False,
                 batch_size: int = 1, cache: bool = True, **latency_kwargs: Any):
        self.input_shape = _check_shape(input_shape)
        self.latency = latency
        self.batch_size = batch_size
        self.cache = cache
        self.latency_kwargs = latency_kwargs
        self._results: dict[Any, dict[str, float]] = {}

    def __call__(self, arch: Any, model: nn.Module) -> dict[str, float]:
        if self.cache and arch in self._results:
            return dict(self._results[arch])
        out = model_costs(model, self.input_shape, latency=self.latency,
                          batch_size=self.batch_size, **self.latency_kwargs)
        if self.cache:
            self._results[arch] = out
        return dict(out)
