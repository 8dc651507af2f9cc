"""Latency measurement: sane fields, restored state, sensible ordering (no flaky timings)."""

from __future__ import annotations

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


def test_bigger_model_is_slower():
    torch.manual_seed(0)
    small = nn.Linear(16, 16)
    # ~1000x the MACs of `small` (256 vs 4 * 512 * 512 per sample): no machine noise can
    # reorder medians of 5 runs with a margin like that, and it still runs in milliseconds.
    big = nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)])
    fast = measure_latency(small, (16,), batch_size=8, warmup=2, repeats=5, num_threads=1)
    slow = measure_latency(nn.Sequential(nn.Linear(16, 512), big), (16,), batch_size=8,
                           warmup=2, repeats=5, num_threads=1)
    assert slow.median_ms > fast.median_ms


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
