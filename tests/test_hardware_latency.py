"""Latency measurement: sane fields, restored state, exact statistics under a fake clock.

No test depends on wall-clock timing (real timings only need to be positive); speed
comparisons belong in ``scripts/`` benchmarks."""

from __future__ import annotations

import inspect
import time

import pytest
import torch
from torch import nn

from lightning_nas.hardware import LatencyModel, LatencyResult, MeasuredLatency, measure_latency


def test_fields_and_restored_state():
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).train()
    threads = torch.get_num_threads()
    res = measure_latency(net, (8,), batch_size=2, warmup=1, repeats=7, num_threads=1)
    assert isinstance(res, LatencyResult)
    assert res.repeats == 7 and res.batch_size == 2 and res.input_shape == (8,)
    assert res.device == "cpu" and res.hardware
    assert 0 < res.p10_ms <= res.median_ms <= res.p90_ms
    assert res.mean_ms > 0 and res.std_ms >= 0 and res.iqr_ms >= 0
    assert net.training and torch.get_num_threads() == threads
    assert res.to_dict()["input_shape"] == [8]


def test_restores_state_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    net = Boom().train()
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(net, (4,), warmup=0, repeats=1, num_threads=1)
    assert net.training and torch.get_num_threads() == threads


def test_statistics_from_known_times():
    res = LatencyResult.from_times([1.0, 2.0, 3.0, 4.0, 5.0], device="cpu", batch_size=1,
                                   input_shape=(3,))
    # numpy linear percentiles of 1..5: p10 = 1.4, p25 = 2, p50 = 3, p75 = 4, p90 = 4.6
    assert res.median_ms == 3.0 and res.mean_ms == 3.0
    assert res.p10_ms == pytest.approx(1.4) and res.p90_ms == pytest.approx(4.6)
    assert res.iqr_ms == pytest.approx(2.0)
    assert res.std_ms == pytest.approx(1.5811388, rel=1e-6)  # sqrt(2.5), ddof=1


class FakeClock:
    """A nanosecond clock that only moves when told to; counts how often it is read."""

    def __init__(self):
        self.now_ns = 0
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now_ns


class Ticking(nn.Module):
    """Identity whose n-th forward pass advances ``clock`` by ``durations_ns[n]``."""

    def __init__(self, clock: FakeClock, durations_ns: list[int]):
        super().__init__()
        self.clock, self.durations_ns, self.calls = clock, durations_ns, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now_ns += self.durations_ns[self.calls]
        self.calls += 1
        return x


def test_statistics_of_a_fake_clock_and_warmup_is_not_timed():
    clock = FakeClock()
    ms = 1_000_000  # ns
    warmup = [10**12, 10**12]  # 1000 s each: any warm-up pass in the statistics shows
    timed = [3 * ms, 1 * ms, 4 * ms, 1 * ms, 5 * ms]
    net = Ticking(clock, warmup + timed)
    res = measure_latency(net, (4,), warmup=2, repeats=5, clock=clock)
    assert net.calls == 7 and clock.reads == 2 * 5  # read around the timed passes only
    assert res.repeats == 5
    # sorted 1, 1, 3, 4, 5 ms; numpy linear percentiles: p10 = 1, p25 = 1, p75 = 4, p90 = 4.6
    assert res.median_ms == 3.0 and res.mean_ms == 2.8
    assert res.p10_ms == 1.0 and res.iqr_ms == 3.0
    assert res.p90_ms == pytest.approx(4.6, abs=1e-12)
    assert res.std_ms == pytest.approx(3.2 ** 0.5, abs=1e-12)  # sum of squares 12.8 / 4


def test_a_slower_pass_gives_a_proportionally_larger_latency():
    """What "a bigger model is slower" checked, without wall-clock timing: the reported
    number is the time between the clock reads around the forward pass, in ms."""
    results = []
    for per_pass_ns in (250_000, 2_500_000):
        clock = FakeClock()
        results.append(measure_latency(Ticking(clock, [per_pass_ns] * 4), (2,), warmup=1,
                                       repeats=3, clock=clock))
    fast, slow = results
    assert (fast.median_ms, fast.p10_ms, fast.p90_ms, fast.iqr_ms) == (0.25, 0.25, 0.25, 0.0)
    assert slow.median_ms == 2.5 and slow.std_ms == 0.0


def test_default_clock_is_perf_counter_ns():
    clock = inspect.signature(measure_latency).parameters["clock"].default
    assert clock is time.perf_counter_ns


def test_measured_latency_passes_the_clock_through():
    clock = FakeClock()
    lat = MeasuredLatency(lambda n: Ticking(clock, [7_000_000] * n), (3,), warmup=1,
                          repeats=2, clock=clock)
    assert lat.predict(3) == 7.0 and lat.results[3].repeats == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"), ({"batch_size": 0}, "batch_size"),
    ({"num_threads": 0}, "num_threads"), ({"device": "mps"}, "device"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure_latency(nn.Linear(2, 2), (2,), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_missing_is_clear():
    with pytest.raises(RuntimeError, match="cuda"):
        measure_latency(nn.Linear(2, 2), (2,), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_and_model_returns_to_cpu():
    net = nn.Linear(64, 64)
    res = measure_latency(net, (64,), device="cuda", warmup=2, repeats=5)
    assert res.device.startswith("cuda") and res.median_ms > 0
    assert next(net.parameters()).device.type == "cpu"


def test_measured_latency_is_a_latency_model_and_caches():
    built = []

    def build(arch):
        built.append(arch)
        return nn.Linear(arch, arch)

    lat = MeasuredLatency(build, (4,), warmup=0, repeats=2, num_threads=1)
    assert isinstance(lat, LatencyModel)
    assert lat.predict(4) > 0
    lat.predict(4)
    assert built == [4] and lat.results[4].repeats == 2
