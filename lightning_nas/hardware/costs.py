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
        input_shape: one sample without the batch dimension, e.g. ``(3, 32, 32)``. ``None``
            leaves it to the caller to set ``hook.input_shape`` before the first call (the
            search CLI fills it from the evaluator's data module).
        latency: measure latency too (slower: warmup + repeats forward passes).
        batch_size: batch of the latency measurement.
        cache: remember results per ``arch`` (set False when ``model`` changes for the same
            arch, e.g. a different width multiplier outside the Arch).
        device: where latency is measured (``"cpu"``, ``"cuda"``, ``"cuda:N"``): the target
            device.
        warmup: untimed forward passes before the timed ones.
        repeats: timed forward passes; the median is ``latency_ms``, the spread
            ``latency_p10_ms`` / ``latency_p90_ms`` / ``latency_iqr_ms``.
        num_threads: torch intra-op threads during the measurement (CPU); ``None`` keeps the
            current setting, 1 gives a stable single-core number.

    Example:
        >>> hook = CostHook((3, 32, 32), latency=True, repeats=20, num_threads=1)
        >>> metrics = hook(arch, space.build(arch))
        >>> reasons = Constraints(max_latency_ms=5).check(metrics)  # [] when feasible
    """

    def __init__(self, input_shape: Sequence[int] | None = None, *, latency: bool = False,
                 batch_size: int = 1, cache: bool = True, device: str = "cpu",
                 warmup: int = 10, repeats: int = 50, num_threads: int | None = None):
        self.input_shape = _check_shape(input_shape) if input_shape is not None else None
        self.latency = latency
        self.batch_size = batch_size
        self.cache = cache
        self.latency_kwargs: dict[str, Any] = {"device": device, "warmup": warmup,
                                               "repeats": repeats, "num_threads": num_threads}
        self._results: dict[Any, dict[str, float]] = {}

    def __call__(self, arch: Any, model: nn.Module) -> dict[str, float]:
        if self.cache and arch in self._results:
            return dict(self._results[arch])
        if self.input_shape is None:
            raise ValueError("CostHook has no input_shape: pass one, e.g. (3, 32, 32), or set "
                             "hook.input_shape before the first call")
        shape = tuple(self.input_shape)
        r = getattr(model, "resolution", None)
        if isinstance(r, int) and len(shape) == 3 and shape[1:] != (r, r):
            # the network's own input size (FixedArchitecture resizes images to it), e.g. a
            # compound-scaled network or an elastic-resolution OFA subnet
            shape = (shape[0], r, r)
        out = model_costs(model, shape, latency=self.latency,
                          batch_size=self.batch_size, **self.latency_kwargs)
        if self.cache:
            self._results[arch] = out
        return dict(out)

    def __repr__(self) -> str:
        shape = list(self.input_shape) if self.input_shape is not None else None
        lat = f", latency on {self.latency_kwargs['device']}" if self.latency else ""
        return f"CostHook({shape}{lat})"
