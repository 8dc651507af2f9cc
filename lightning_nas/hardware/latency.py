"""Measured inference latency of a model, and the interface latency predictors implement.

``measure_latency`` times whole forward passes: warm-up runs first (allocator, cuDNN
autotuning, lazy init), then ``repeats`` timed runs, each one its own sample, in eval mode
under ``torch.inference_mode()``. On CUDA every timed run is bracketed by
``torch.cuda.synchronize()`` so the time covers the kernels, not only their launch. Times are
wall-clock (``time.perf_counter_ns`` unless another ``clock`` is given, e.g. a fake clock in
tests) in milliseconds. Report the median with its spread
(IQR, p10/p90) and the hardware it ran on (DESIGN.md convention 10).

A per-layer lookup table (LUT) and learned predictors come later; they implement
:class:`LatencyModel` (``predict(arch) -> ms``) so objectives and constraints can use either
a measurement or a prediction. :class:`MeasuredLatency` is the measuring implementation.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from lightning_nas.hardware.metrics import _check_shape, make_input, model_device

__all__ = ["LatencyResult", "LatencyModel", "MeasuredLatency", "measure_latency", "device_name"]


@dataclass(frozen=True)
class LatencyResult:
    """Statistics of ``repeats`` timed forward passes (all times in ms per batch).

    Attributes:
        median_ms: median over the timed runs (the number to report).
        mean_ms: arithmetic mean.
        std_ms: sample standard deviation (ddof=1; 0 for one run).
        p10_ms: 10th percentile (linear interpolation).
        p90_ms: 90th percentile.
        iqr_ms: inter-quartile range p75 - p25.
        repeats: number of timed runs.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:1"``.
        batch_size: samples per forward pass.
        input_shape: shape of one sample (no batch dimension).
        hardware: human-readable device name (CPU model / GPU name and thread count).
        p25_ms: first quartile.
        p75_ms: third quartile (``iqr_ms = p75_ms - p25_ms``).
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int
    device: str
    batch_size: int
    input_shape: tuple[int, ...]
    hardware: str = ""
    p25_ms: float = math.nan
    p75_ms: float = math.nan

    @classmethod
    def from_times(cls, times_ms: Sequence[float], *, device: str, batch_size: int,
                   input_shape: Sequence[int], hardware: str = "") -> LatencyResult:
        """Summarise raw per-run times (ms)."""
        t = np.asarray(times_ms, dtype=np.float64)
        if t.ndim != 1 or t.size == 0:
            raise ValueError("need at least one timed run")
        p10, p25, p50, p75, p90 = np.percentile(t, [10, 25, 50, 75, 90])
        return cls(
            median_ms=float(p50), mean_ms=float(t.mean()),
            std_ms=float(t.std(ddof=1)) if t.size > 1 else 0.0,
            p10_ms=float(p10), p90_ms=float(p90), iqr_ms=float(p75 - p25),
            repeats=int(t.size), device=str(device), batch_size=int(batch_size),
            input_shape=tuple(int(s) for s in input_shape), hardware=hardware,
            p25_ms=float(p25), p75_ms=float(p75),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``input_shape`` as a list)."""
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


@runtime_checkable
class LatencyModel(Protocol):
    """Anything that gives the latency of an architecture in ms (measured, LUT, predictor).

    Implementations document which device, batch size and input shape their number is for.
    """

    def predict(self, arch: Any) -> float:
        """Latency of ``arch`` in ms per batch."""
        ...


def device_name(device: torch.device | str) -> str:
    """A short description of the hardware: GPU name or CPU model with its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine() or "cpu"
    try:  # Linux: the model name is more telling than the architecture
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def measure_latency(model: nn.Module, input_shape: Sequence[int], *,
                    device: str | torch.device = "cpu", batch_size: int = 1, warmup: int = 10,
                    repeats: int = 50, num_threads: int | None = None,
                    clock: Callable[[], int] = time.perf_counter_ns) -> LatencyResult:
    """Wall-clock latency of one forward pass of a batch, in ms.

    The model is put in eval mode and moved to ``device`` if it is elsewhere; its training
    mode, device and torch's intra-op thread count are restored afterwards, even on error.

    Args:
        model: the network (a tuple output such as ``(logits, aux)`` is fine).
        input_shape: shape of one sample without the batch dimension, e.g. ``(3, 32, 32)``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: samples per timed forward pass.
        warmup: untimed forward passes first (>= 0).
        repeats: timed forward passes (>= 1); each is one sample of the statistics.
        num_threads: torch intra-op threads during the measurement (CPU); ``None`` keeps the
            current setting. Use 1 for a stable, comparable single-core number.
        clock: the time source of the timed region, read just before and just after each
            timed forward pass (twice per repeat, never during warm-up), in nanoseconds;
            a fake clock in tests. Default ``time.perf_counter_ns``.

    Returns:
        A :class:`LatencyResult` (ms per batch of ``batch_size``).

    Raises:
        ValueError: bad counts or shape.
        RuntimeError: ``device="cuda"`` without an available CUDA device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure_latency needs an nn.Module, got {type(model).__name__}")
    shape = _check_shape(input_shape)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("warmup", warmup, minimum=0)
    _check_positive_int("repeats", repeats)
    if num_threads is not None:
        _check_positive_int("num_threads", num_threads)
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {str(device)!r}")
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch.cuda.is_available() is False")
    if cuda and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    original_device = model_device(model)
    was_training = model.training
    old_threads = torch.get_num_threads()
    times_ms: list[float] = []
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if original_device != device:
            model.to(device)
        model.eval()
        x = make_input(shape, batch_size, device=device)  # (B, *input_shape)
        sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if cuda else (
            lambda: None)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                sync()
                start = clock()
                model(x)
                sync()  # wait for the kernels, not only their launch
                times_ms.append((clock() - start) / 1e6)  # ns -> ms
        hardware = device_name(device)
    finally:
        model.train(was_training)
        if original_device != device:
            model.to(original_device)
        if num_threads is not None:
            torch.set_num_threads(old_threads)
    return LatencyResult.from_times(times_ms, device=str(device), batch_size=batch_size,
                                    input_shape=shape, hardware=hardware)


class MeasuredLatency:
    """:class:`LatencyModel` that builds each architecture and measures it (cached per arch).

    Args:
        build: ``arch -> nn.Module``, e.g. ``space.build``.
        input_shape: one sample without the batch dimension.
        **kwargs: passed to :func:`measure_latency` (device, batch_size, warmup, repeats,
            num_threads, clock).

    Example:
        >>> lat = MeasuredLatency(space.build, (3, 32, 32), repeats=20, num_threads=1)
        >>> lat.predict(arch)        # median ms; lat.results[arch] keeps the full statistics
    """

    def __init__(self, build: Callable[[Any], nn.Module], input_shape: Sequence[int],
                 **kwargs: Any):
        self.build = build
        self.input_shape = _check_shape(input_shape)
        self.kwargs = kwargs
        self.results: dict[Any, LatencyResult] = {}

    def measure(self, arch: Any) -> LatencyResult:
        if arch not in self.results:
            self.results[arch] = measure_latency(self.build(arch), self.input_shape,
                                                 **self.kwargs)
        return self.results[arch]

    def predict(self, arch: Any) -> float:
        """Median latency of ``arch`` in ms per batch."""
        return self.measure(arch).median_ms
