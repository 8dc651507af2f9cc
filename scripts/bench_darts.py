#!/usr/bin/env python
"""Time and memory of one DARTS search step, ours against Microsoft NNI 3.0, in one run.

The DARTS paper's search configuration: CIFAR-sized input (3x32x32), batch 64 for the
weight batch and for the architecture batch, 16 initial channels, 8 cells, 4 nodes, the 8
DARTS ops, 10 classes. One *step* is one architecture update plus one weight update.

Every configuration runs in its own fresh process (so its peak RSS is its own) through
the real Lightning Trainer with the real data module hook (augmentation on the batch), on
synthetic images (content does not change the cost). NNI runs as a subprocess of the
Python given with ``--nni-python`` (a venv with nni==3.0, see scripts/README.md).

    python scripts/bench_darts.py --nni-python /work/nni-venv/bin/python --steps 5
    python scripts/bench_darts.py --configs first second --steps 3   # ours only
    python scripts/bench_darts.py --configs first pc-darts gdas --steps 3

Prints a Markdown table and writes JSON (``--out``): median seconds per step over the
steps after warm-up with min/max, peak RSS in GB, and the ratios NNI / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> keyword arguments of the strategy (DartsSearch unless "strategy" names another)
CONFIGS = {
    "first": {"order": 1},
    "second": {"order": 2},
    "second-forward": {"order": 2, "hessian_difference": "forward"},
    "first-no-recompute": {"order": 1, "checkpoint_cells": 0},
    "first-recompute-all": {"order": 1, "checkpoint_cells": 8},
    "first-recompute-2": {"order": 1, "checkpoint_cells": 2},
    "first-recompute-3": {"order": 1, "checkpoint_cells": 3},
    "first-recompute-5": {"order": 1, "checkpoint_cells": 5},  # the default before 2026-12
    "first-nchw": {"order": 1, "channels_last": False, "checkpoint_cells": 0},
    "pc-darts": {"strategy": "pc_darts", "partial_channels": 4},  # the paper's K on CIFAR
    "gdas": {"strategy": "gdas"},
}


def _summary(times: list[float]) -> dict:
    times = sorted(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"median_s": statistics.median(times), "min_s": times[0], "max_s": times[-1],
            "iqr_s": q3 - q1, "n": len(times), "times_s": times}


def worker(name: str, steps: int, warmup: int, threads: int, batch: int) -> dict:
    """Run ``warmup + steps`` search steps of configuration ``name`` in this process."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback

    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.strategies.darts import DartsSearch
    from lightning_nas.strategies.gdas import GDAS
    from lightning_nas.strategies.pc_darts import PCDarts

    torch.set_num_threads(threads)
    times: list[float] = []

    class StepTimer(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch_, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx):
            times.append(time.perf_counter() - self.start)
            print(f"  {name}: step {batch_idx} {times[-1]:.2f} s", file=sys.stderr, flush=True)

    total = steps + warmup
    data = SyntheticDataModule(num_classes=10, in_channels=3, image_size=32,
                               train_size=2 * batch * total, test_size=batch, batch_size=batch,
                               search=True, crop_padding=4, hflip=True, seed=0)
    kwargs = dict(CONFIGS[name])
    strategy = {"pc_darts": PCDarts, "gdas": GDAS}.get(kwargs.pop("strategy", None),
                                                       DartsSearch)
    model = strategy(num_classes=10, in_channels=3, channels=16, layers=8, **kwargs)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=total,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[StepTimer()],
                        default_root_dir=os.environ.get("TMPDIR", "/tmp") + "/bench_darts")
    trainer.fit(model, data)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB (approx.)
    return {"name": name, **_summary(times[warmup:]), "warmup_s": times[:warmup],
            "peak_rss_gb": peak_gb, "threads": threads, "batch_size": batch,
            "kwargs": CONFIGS[name]}


def _run(cmd: list[str], timeout: int) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["first", "second"],
                        choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nni-python", default=None,
                        help="python of a venv with nni==3.0; runs NNI's first-order DARTS too")
    parser.add_argument("--nni-steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat everything this many times, back to back; ratios are "
                        "taken within a round (the machine's speed drifts between rounds)")
    parser.add_argument("--out", default="runs/bench_darts.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args.worker, args.steps, args.warmup, args.threads, args.batch_size)
        print("RESULT " + json.dumps(result), flush=True)
        return result

    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
              str(args.threads), "--batch-size", str(args.batch_size)]
    rounds: list[dict[str, dict]] = []
    for r in range(args.rounds):  # every round runs everything once, back to back
        results = {}
        for name in args.configs:
            print(f"round {r + 1}/{args.rounds}: ours {name} ...", flush=True)
            results[name] = _run([sys.executable, __file__, "--worker", name, *common], 7200)
        if args.nni_python:
            print(f"round {r + 1}/{args.rounds}: NNI 3.0 first-order DARTS ...", flush=True)
            results["nni"] = _run([args.nni_python, str(ROOT / "scripts" / "nni_darts_step.py"),
                                   "--steps", str(args.nni_steps), "--warmup", "1", "--threads",
                                   str(args.threads), "--batch-size", str(args.batch_size)],
                                  7200)
        rounds.append(results)

    def median_s(r: dict) -> float:
        return r.get("median_s", r.get("median_step_s"))

    rows = ["| run | median s/step (per round) | min-max s | n | peak RSS GB |",
            "|---|---|---|---|---|"]
    for name in rounds[0]:
        lows = [res[name].get("min_s", res[name].get("min_step_s")) for res in rounds]
        highs = [res[name].get("max_s", res[name].get("max_step_s")) for res in rounds]
        n = sum(res[name].get("n", res[name].get("timed_steps")) or 0 for res in rounds)
        per_round = ", ".join(f"{median_s(res[name]):.2f}" for res in rounds)
        rows.append(f"| {name} | {per_round} | {min(lows):.2f}-{max(highs):.2f} | {n} | "
                    f"{max(res[name]['peak_rss_gb'] for res in rounds):.2f} |")
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "rounds": rounds,
              "load_average_end": os.getloadavg()}

    def ratio(numerator: str, denominator: str) -> dict | None:
        """numerator / denominator of the medians, per round (both ran in that round)."""
        if numerator not in rounds[0] or denominator not in rounds[0]:
            return None
        values = [median_s(res[numerator]) / median_s(res[denominator]) for res in rounds]
        return {"median": statistics.median(values), "min": min(values), "max": max(values),
                "per_round": values}

    rows.append("")
    speedup = ratio("nni", "first")
    if speedup:
        memory = [res["first"]["peak_rss_gb"] / res["nni"]["peak_rss_gb"] for res in rounds]
        report["speedup_first_order"] = speedup
        report["memory_ratio_first_order"] = max(memory)
        rows.append(f"First order, NNI / ours: **{speedup['median']:.2f}x** faster (median of "
                    f"{len(rounds)} rounds, range {speedup['min']:.2f}-{speedup['max']:.2f}x), "
                    f"peak memory at most {100 * max(memory):.0f}% of NNI's.")
    for name, label in (("second", "second order / first order"),
                        ("second-forward", "second order, forward difference / first order"),
                        ("pc-darts", "PC-DARTS (K=4) / DARTS first order"),
                        ("gdas", "GDAS / DARTS first order"),
                        ("first-no-recompute", "no recomputation / default"),
                        ("first-recompute-5", "5 recomputed cells (the old default) / default")):
        value = ratio(name, "first")
        if value:
            report[f"ratio_{name}_to_first"] = value
            rows.append(f"Step time, {label}: {value['median']:.2f}x (range "
                        f"{value['min']:.2f}-{value['max']:.2f}x over {len(rounds)} rounds).")
    table = "\n".join(rows)
    print(table)
    report["table"] = table
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
