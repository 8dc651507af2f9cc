"""ONNX Runtime (CPU execution provider) vs PyTorch eager CPU latency of exported networks.

Networks (random weights, eval mode; latency does not depend on the values):

* DARTS_V2, CIFAR evaluation network (36 channels, 20 cells, 3x32x32);
* the NAS-Bench-201 network of the best CIFAR-10 cell (16 channels, 5 cells per stage,
  3x32x32);
* the middle subnet of Once-for-All's CIFAR MobileNetV3 space (``MobileNetV3Space.cifar()``,
  the median choice of every dimension), extracted from the supernet (3x32x32).

For each network and batch size (1 and 16) both runtimes use ``--threads`` intra-op threads
(PyTorch: ``torch.set_num_threads``; ONNX Runtime: ``intra_op_num_threads``). The
``--repeats`` timed runs of each come in alternating blocks of 10, each block after
``--warmup`` untimed runs, so a change in the machine's load hits both alike (single calls
must not alternate: each runtime's thread pool spin-waits after a call and slows the other). Reported: the
median and the inter-quartile range (ms per batch) and ONNX Runtime's speed-up (PyTorch
median / ORT median). The 1-minute load average before and after is recorded: on a shared
machine the spread is the figure to read alongside the median.

    python scripts/bench_export.py [--threads 2] [--repeats 30] [--out scripts/results/bench_export]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_results import cpu_model, write_results  # noqa: E402

from lightning_nas.checkpoint_networks import middle_subnet  # noqa: E402
from lightning_nas.hardware.onnx_export import (  # noqa: E402
    INPUT_NAME,
    OPSET,
    LogitsOnly,
    check_onnx,
    export_onnx,
    ort_session,
)
from lightning_nas.spaces.darts import DartsSpace  # noqa: E402
from lightning_nas.spaces.mobilenet import MobileNetV3Space  # noqa: E402
from lightning_nas.spaces.nb201 import NB201Space  # noqa: E402

BEST_NB201 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
              "nor_conv_3x3~1|nor_conv_3x3~2|")


def networks() -> dict[str, tuple[torch.nn.Module, str, tuple[int, int, int]]]:
    """name -> (network in eval mode, architecture string, input (C, H, W))."""
    torch.manual_seed(0)
    darts = DartsSpace(channels=36, layers=20, auxiliary=False)
    nb201 = NB201Space()
    ofa_space = MobileNetV3Space.cifar()
    ofa_arch = middle_subnet(ofa_space)
    ofa_net = ofa_space.supernet().extract(ofa_arch)
    return {
        "DARTS_V2 (CIFAR, 36 ch, 20 cells)": (
            darts.build(darts.presets["DARTS_V2"]).eval(), "DARTS_V2", (3, 32, 32)),
        "NB201 best CIFAR-10 cell": (
            nb201.build(nb201.parse(BEST_NB201)).eval(), BEST_NB201, (3, 32, 32)),
        "OFA CIFAR middle subnet": (
            ofa_net.eval(), ofa_space.to_string(ofa_arch), (3, ofa_net.resolution,
                                                            ofa_net.resolution)),
    }


def time_once(fn, x) -> float:
    """Wall time of one call in ms."""
    start = time.perf_counter_ns()
    fn(x)
    return (time.perf_counter_ns() - start) / 1e6


def summary(times: list[float]) -> dict[str, float]:
    """median, IQR (p75 - p25), p10, p90 of per-batch times (ms)."""
    p10, p25, p50, p75, p90 = np.percentile(np.asarray(times), [10, 25, 50, 75, 90])
    return {"median_ms": float(p50), "iqr_ms": float(p75 - p25), "p10_ms": float(p10),
            "p90_ms": float(p90), "n": len(times)}


def bench_one(net: torch.nn.Module, shape: tuple[int, int, int], batch: int, path: Path,
              threads: int, warmup: int, repeats: int, block: int = 10,
              warmup_s: float = 2.0) -> dict[str, Any]:
    """Timing of PyTorch eager and ONNX Runtime for one network and batch: ``warmup_s``
    seconds of untimed calls of each, then alternating blocks of ``block`` timed runs (each
    after ``warmup`` untimed runs)."""
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *shape, generator=g)
    x_np = x.numpy()
    session = ort_session(path, threads=threads)
    model = LogitsOnly(net).eval()

    def pytorch(inp):
        with torch.inference_mode():
            return model(inp)

    def onnxruntime(inp):
        return session.run(None, {INPUT_NAME: inp})[0]

    times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    # Blocks, not alternate calls: both runtimes' thread pools spin-wait after a call
    # (OpenMP's block time, ONNX Runtime's allow_spinning), so a call right after the other
    # runtime's competes with its spinning threads. Alternating single calls made PyTorch
    # look 2-4x slower than it is on its own (scripts/results/latency_callback_check).
    # Each block starts with `warmup` untimed calls; blocks alternate so drift hits both.
    runtimes = (("pytorch", pytorch, x), ("onnxruntime", onnxruntime, x_np))
    # First a warm-up of at least `warmup_s` seconds per runtime: a network's first tens of
    # calls are slow (oneDNN builds its kernels per shape, allocators grow); with only 5
    # warm-up calls the first block of DARTS_V2 ran at 95 ms against 62 ms later.
    for _, fn, inp in runtimes:
        deadline = time.perf_counter() + warmup_s
        while time.perf_counter() < deadline:
            fn(inp)
    for i, start in enumerate(range(0, repeats, block)):
        for name, fn, inp in (runtimes if i % 2 == 0 else runtimes[::-1]):
            for _ in range(warmup):
                fn(inp)
            for _ in range(min(block, repeats - start)):
                times[name].append(time_once(fn, inp))
    result = {name: summary(t) for name, t in times.items()}
    result["speedup"] = result["pytorch"]["median_ms"] / result["onnxruntime"]["median_ms"]
    result["times_ms"] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
    return result


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# ONNX Runtime vs PyTorch eager, CPU latency",
        "",
        f"Machine: {meta['machine']}; {meta['threads']} intra-op threads for both runtimes; "
        f"torch {meta['torch']}, onnxruntime {meta['onnxruntime']} (CPU EP, opset "
        f"{meta['opset']}). Median and IQR (p75 - p25) of {meta['repeats']} block-alternated "
        f"runs per runtime after {meta['warmup']} warm-up runs, ms per batch. 1-minute load "
        f"average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after "
        f"({meta['cpus']} CPUs, shared with other jobs); wall time {meta['wall_s']:.0f} s.",
        "",
        "| network | params (M) | batch | PyTorch median (IQR) ms | ORT median (IQR) ms | "
        "ORT speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["networks"].items():
        for batch, r in entry["batches"].items():
            pt, ort = r["pytorch"], r["onnxruntime"]
            lines.append(f"| {name} | {entry['params_m']:.2f} | {batch} | "
                         f"{pt['median_ms']:.2f} ({pt['iqr_ms']:.2f}) | "
                         f"{ort['median_ms']:.2f} ({ort['iqr_ms']:.2f}) | "
                         f"{r['speedup']:.2f}x | {entry['max_abs_diff']:.1e} |")
    lines += ["", "Speed-up = PyTorch median / ONNX Runtime median (> 1: ORT is faster). Max "
              "abs diff: ONNX Runtime vs PyTorch logits on a batch of 2 (`check_onnx`, "
              "tolerance 1e-4).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--out", default=str(ROOT / "scripts/results/bench_export"))
    opts = parser.parse_args(argv)
    if opts.repeats < 30:
        print(f"note: {opts.repeats} repeats (< 30): the IQR is rough", file=sys.stderr)
    import onnxruntime

    torch.set_num_threads(opts.threads)
    start, load_before = time.time(), os.getloadavg()[0]
    results: dict[str, Any] = {"networks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (net, arch, shape)) in enumerate(networks().items()):
            path = export_onnx(net, torch.randn(2, *shape), Path(tmp) / f"net{i}.onnx")
            diff = check_onnx(net, path, torch.randn(2, *shape), atol=1e-4)
            entry = {"arch": arch, "input_shape": list(shape), "max_abs_diff": diff,
                     "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
                     "batches": {}}
            for batch in (int(b) for b in opts.batches.split(",")):
                entry["batches"][batch] = bench_one(net, shape, batch, path, opts.threads,
                                                    opts.warmup, opts.repeats)
                r = entry["batches"][batch]
                print(f"{name} batch {batch}: PyTorch {r['pytorch']['median_ms']:.2f} ms, "
                      f"ORT {r['onnxruntime']['median_ms']:.2f} ms", file=sys.stderr)
            results["networks"][name] = entry
    results["meta"] = {
        "machine": f"{platform.processor() or platform.machine()}, {cpu_model()}",
        "cpus": os.cpu_count(), "threads": opts.threads, "warmup": opts.warmup,
        "repeats": opts.repeats, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "opset": OPSET,
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "wall_s": time.time() - start, "python": platform.python_version(),
    }
    write_results(opts.out, results, table(results))
    return results


if __name__ == "__main__":
    main()
