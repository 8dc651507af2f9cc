#!/usr/bin/env python
"""The LatencyProfiler callback against the ``scripts/bench_export.py`` benchmark, same
networks, same machine, CPU (PyTorch eager) and ONNX Runtime side by side.

For each network (the NB201 network of the best CIFAR-10 cell, the Once-for-All CIFAR middle
subnet, DARTS_V2 at CIFAR size) the script runs, in ``--rounds`` rounds:

1. the benchmark: ``bench_export.bench_one`` (PyTorch eager and ONNX Runtime interleaved,
   median and quartiles of ``--repeats`` runs of batch 1);
2. the callback inside a real ``Trainer.fit`` of ``FixedArchitecture`` on that
   architecture (one short epoch on synthetic 3x32x32 images), with two profilers
   (``target: cpu`` and ``target: onnxruntime``, batch 1, the same repeats and threads);
   its medians come from ``latency.json`` / ``latency_onnxruntime.json`` of the run folder.

It reports whether each callback median lies within the benchmark's spread (its p10..p90
over the rounds' runs) and the ratio callback / benchmark median.

    python scripts/latency_callback_check.py [--threads 2] [--repeats 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench_export import BEST_NB201, bench_one  # noqa: E402
from script_results import cpu_model, write_results  # noqa: E402

from lightning_nas.checkpoint_networks import middle_subnet  # noqa: E402
from lightning_nas.hardware.onnx_export import export_onnx  # noqa: E402
from lightning_nas.spaces.darts import DartsSpace  # noqa: E402
from lightning_nas.spaces.mobilenet import MobileNetV3Space  # noqa: E402
from lightning_nas.spaces.nb201 import NB201Space  # noqa: E402


def cases() -> dict[str, tuple[Any, str]]:
    """name -> (space, architecture string)."""
    ofa = MobileNetV3Space.cifar()
    return {"NB201 best CIFAR-10 cell": (NB201Space(), BEST_NB201),
            "OFA CIFAR middle subnet": (ofa, ofa.to_string(middle_subnet(ofa))),
            "DARTS_V2 (CIFAR, 36 ch, 20 cells)": (
                DartsSpace(channels=36, layers=20, auxiliary=False), "DARTS_V2")}


def callback_run(space: Any, arch: str, folder: Path, threads: int, repeats: int
                 ) -> dict[str, dict[str, float]]:
    """Medians and quartiles the two profilers wrote for ``arch`` after a short fit."""
    import lightning as L

    from lightning_nas.callbacks.latency import LatencyProfiler
    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.strategies.fixed import FixedArchitecture

    data = SyntheticDataModule(num_classes=10, in_channels=3, image_size=32, train_size=32,
                               test_size=16, batch_size=16, seed=0)
    model = FixedArchitecture(arch=arch, space=space, num_classes=10, in_channels=3)
    profilers = [LatencyProfiler(target, num_threads=threads, batch_size=1, warmup=5,
                                 repeats=repeats) for target in ("cpu", "onnxruntime")]
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        callbacks=profilers, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=folder)
    torch.set_num_threads(threads)
    trainer.fit(model, data)
    out = {}
    for target, name in (("pytorch", "latency.json"), ("onnxruntime", "latency_onnxruntime.json")):
        record = json.loads((folder / name).read_text())["records"][-1]
        out[target] = {k: record[k] for k in ("median_ms", "q1_ms", "q3_ms", "runs")}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "scripts/results/latency_callback_check"))
    opts = parser.parse_args(argv)
    import onnxruntime

    torch.set_num_threads(opts.threads)
    start, load_before = time.time(), os.getloadavg()[0]
    results: dict[str, Any] = {"networks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (space, arch)) in enumerate(cases().items()):
            net = space.build(space.load(arch)).eval()
            path = export_onnx(net, torch.randn(2, 3, 32, 32), Path(tmp) / f"net{i}.onnx")
            bench_times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
            callback: dict[str, list[dict]] = {"pytorch": [], "onnxruntime": []}
            for r in range(opts.rounds):
                bench = bench_one(net, (3, 32, 32), 1, path, opts.threads, 5, opts.repeats)
                for target in bench_times:
                    bench_times[target] += bench["times_ms"][target]
                got = callback_run(space, arch, Path(tmp) / f"run{i}_{r}", opts.threads,
                                   opts.repeats)
                for target in callback:
                    callback[target].append(got[target])
                print(f"{name} round {r + 1}: bench PyTorch "
                      f"{bench['pytorch']['median_ms']:.2f} / ORT "
                      f"{bench['onnxruntime']['median_ms']:.2f} ms; callback PyTorch "
                      f"{got['pytorch']['median_ms']:.2f} / ORT "
                      f"{got['onnxruntime']['median_ms']:.2f} ms", file=sys.stderr)
            entry = {"arch": arch}
            for target, times in bench_times.items():
                p10, p25, p50, p75, p90 = np.percentile(times, [10, 25, 50, 75, 90])
                medians = [c["median_ms"] for c in callback[target]]
                entry[target] = {
                    "bench": {"median_ms": p50, "p10_ms": p10, "p25_ms": p25, "p75_ms": p75,
                              "p90_ms": p90, "n": len(times)},
                    "callback_medians_ms": medians,
                    "callback_quartiles_ms": [[c["q1_ms"], c["q3_ms"]] for c in callback[target]],
                    "within_p10_p90": all(p10 <= m <= p90 for m in medians),
                    "ratio_to_bench": [m / p50 for m in medians]}
            results["networks"][name] = entry
    results["meta"] = {"machine": cpu_model(), "cpus": os.cpu_count(), "threads": opts.threads,
                       "repeats": opts.repeats, "rounds": opts.rounds,
                       "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                       "load_before": load_before, "load_after": os.getloadavg()[0],
                       "wall_s": time.time() - start}
    write_results(opts.out, results, table(results))
    return results


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = ["# LatencyProfiler callback vs the bench_export benchmark (batch 1)", "",
             f"Machine: {meta['machine']}, {meta['threads']} threads, {meta['rounds']} rounds "
             f"of {meta['repeats']} timed runs each side (benchmark, then the callback in a "
             f"real fit); 1-minute load average {meta['load_before']:.2f} before, "
             f"{meta['load_after']:.2f} after; wall {meta['wall_s']:.0f} s.", "",
             "| network | runtime | benchmark median (p10-p90) ms | callback medians ms | "
             "callback / benchmark | within p10-p90 |", "|---|---|---:|---:|---:|---|"]
    for name, entry in results["networks"].items():
        for target, label in (("pytorch", "PyTorch CPU"), ("onnxruntime", "ONNX Runtime")):
            e = entry[target]
            b = e["bench"]
            lines.append(f"| {name} | {label} | {b['median_ms']:.2f} ({b['p10_ms']:.2f}-"
                         f"{b['p90_ms']:.2f}) | "
                         f"{', '.join(f'{m:.2f}' for m in e['callback_medians_ms'])} | "
                         f"{', '.join(f'{r:.2f}' for r in e['ratio_to_bench'])} | "
                         f"{'yes' if e['within_p10_p90'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
