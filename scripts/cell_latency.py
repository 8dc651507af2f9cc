#!/usr/bin/env python
"""Latency tables of the cell spaces on this machine, and latency-aware DARTS.

1. **Table vs measured**: build the per-op table of the DARTS evaluation network and of the
   NAS-Bench-201 network (CIFAR 32x32 inputs, batch 1, 1 thread), calibrated on 10 random
   networks, then measure 50 *other* random architectures of each space whole and report how
   many predictions fall within +-10% (and the mean absolute percentage error).
2. **Latency weight sweep**: first-order DARTS on the digits (the DARTS space; the table of
   the network `configs/train/digits.yaml` trains: 16 channels, 5 cells, 8x8 grey inputs)
   with three weights of the latency term (``CE * (LAT/T)^w``); each derived genotype's table
   and measured latency, and its test accuracy after training it with
   ``configs/train/digits.yaml``.

Usage::

    python scripts/cell_latency.py --out scripts/results/cell_latency
    python scripts/cell_latency.py --skip-sweep --archs 10    # the table check only

Writes ``<out>/results.json``, ``<out>/results.md`` and the tables. Run it on an idle machine:
latency measured while other processes compete for the cores is noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from script_results import write_results  # noqa: E402

from lightning_nas.hardware.cell_latency import (  # noqa: E402
    CellLatencyTable,
    calibration_archs,
)
from lightning_nas.spaces.base import Arch  # noqa: E402
from lightning_nas.spaces.darts import DartsSpace  # noqa: E402
from lightning_nas.spaces.nb201 import NB201Space  # noqa: E402


def _errors(table: CellLatencyTable, archs, measured) -> dict[str, Any]:
    predicted = [table.predict(a) for a in archs]
    errors = [(p - m) / m for p, m in zip(predicted, measured)]
    return {"scale": table.scale, "overhead_ms": table.overhead_ms,
            "op_scales": dict(table.op_scales), "calibration": table.calibration,
            "within_10pct": sum(abs(e) <= 0.10 for e in errors) / len(errors),
            "mape_pct": 100 * statistics.fmean(abs(e) for e in errors),
            "max_abs_error_pct": 100 * max(abs(e) for e in errors), "predicted": predicted}


def check_table(name: str, space, shape, n: int, out: Path, seed: int,
                batch_size: int = 1, fits: tuple[str, ...] = ("linear", "per_op")
                ) -> dict[str, Any]:
    """Time the parts once, measure the calibration networks once (the single-op networks
    plus 10 random ones: ``linear`` fits on the random ones, as before, ``per_op`` on all),
    then ``n`` other random networks twice (the second pass: the measurement's own
    repeatability); every fit is scored on the same measurements."""
    table = CellLatencyTable.build(space, shape, warmup=10, repeats=30, rounds=3,
                                   num_threads=1, calibrate=0, batch_size=batch_size)
    calib = calibration_archs(space, 10, random.Random(seed))
    calib_ms = table.measure_archs(calib)
    n_uniform = len(calib) - 10
    rng = random.Random(seed + 1000)  # other architectures than the calibration's
    archs = [space.sample(rng) for _ in range(n)]
    measured = table.measure_archs(archs)
    again = table.measure_archs(archs)
    repeat = [(b - a) / a for a, b in zip(measured, again)]
    results: dict[str, Any] = {}
    for fit in fits:
        if fit == "per_op":
            table.calibrate(calib, calib_ms, fit="per_op")
        else:
            table.calibrate(calib[n_uniform:], calib_ms[n_uniform:], fit=fit)
        table.save(out / f"{name}_table_{fit}.json")
        results[fit] = _errors(table, archs, measured)
    return {"entries": len(table.entries), "n": n, "fits": results,
            "repeat_within_10pct": sum(abs(e) <= 0.10 for e in repeat) / n,
            "repeat_mape_pct": 100 * statistics.fmean(abs(e) for e in repeat),
            "measured_ms": {"min": min(measured), "median": statistics.median(measured),
                            "max": max(measured)},
            "archs": [space.to_string(a) for a in archs], "measured": measured,
            "measured_again": again}


def cli(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "lightning_nas.cli", *args], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])


def sweep(out: Path, weights: list[float], epochs: int, train_epochs: int) -> dict[str, Any]:
    space = DartsSpace(channels=16, layers=5, num_classes=10, in_channels=1)
    table = CellLatencyTable.build(space, (1, 8, 8), warmup=10, repeats=30, rounds=3,
                                   num_threads=1, calibrate=10)
    path = table.save(out / "darts_digits_table.json")
    rng = random.Random(0)
    target = statistics.median(table.predict(space.sample(rng)) for _ in range(200))
    rows = {}
    for w in weights:
        run = out / f"search_w{w:g}"
        cli(["fit", "--config", str(ROOT / "configs/darts/digits_latency.yaml"),
             "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
             str(run), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs",
             str(epochs), "--model.init_args.latency.table", str(path),
             "--model.init_args.latency.target_ms", f"{target:.6f}",
             "--model.init_args.latency.weight", str(w)])
        arch_path = run / "checkpoints" / "last.arch.json"  # the last epoch's genotype
        cli(["export", "--ckpt", str(run / "checkpoints" / "last.ckpt")])
        genotype = json.loads(arch_path.read_text())
        train = out / f"train_w{w:g}"
        train_args = ["--config", str(ROOT / "configs/train/digits.yaml"),
                      "--trainer.default_root_dir", str(train),
                      "--trainer.logger.init_args.save_dir", str(train),
                      "--trainer.enable_progress_bar", "false", "--trainer.max_epochs",
                      str(train_epochs), "--model.arch", str(arch_path)]
        cli(["fit", *train_args])
        cli(["test", *train_args, "--ckpt_path", str(train / "checkpoints" / "last.ckpt")])
        metrics = [line for line in (train / "metrics.csv").read_text().splitlines()]
        header = metrics[0].split(",")
        test_acc = [float(r.split(",")[header.index("test/acc")]) for r in metrics[1:]
                    if r.split(",")[header.index("test/acc")]]
        arch = Arch.from_dict(genotype)
        measured = table.measure_archs([arch])[0]
        rows[w] = {"genotype": genotype["string"], "table_ms": table.predict(arch),
                   "measured_ms": measured, "test_acc_pct": 100 * test_acc[-1]}
    return {"target_ms": target, "weights": rows, "table": str(path)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="scripts/results/cell_latency")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 2.0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward pass of the tables and the networks")
    parser.add_argument("--fits", nargs="+", choices=["linear", "scale", "per_op"],
                        default=["linear", "per_op"],
                        help="calibrations compared on the same measurements (per_op: a "
                             "factor per op as well)")
    parser.add_argument("--spaces", nargs="+", default=["darts", "nb201"],
                        choices=["darts", "nb201"])
    opts = parser.parse_args(argv)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"config": vars(opts), "machine": {
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg()}}
    spaces = {"darts": DartsSpace(), "nb201": NB201Space()}
    for name in opts.spaces:
        results[name] = check_table(name, spaces[name], (3, 32, 32), opts.archs, out, 0,
                                    opts.batch_size, tuple(opts.fits))
    rows = ["| space (network) | fit | entries | calibrated on | within +-10% | MAPE | "
            "max error | measured range (ms) | remeasured within +-10% (MAPE) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("darts", "DARTS (36 ch, 20 cells)"), ("nb201", "NB201 (16 ch, 5/stage)")):
        if name not in results:
            continue
        r = results[name]
        for fit, f in r["fits"].items():
            rows.append(f"| {label} | {fit} | {r['entries']} | {f['calibration']['n']} "
                        f"networks | {100 * f['within_10pct']:.0f}% of {r['n']} | "
                        f"{f['mape_pct']:.1f}% | {f['max_abs_error_pct']:.1f}% | "
                        f"{r['measured_ms']['min']:.1f}-{r['measured_ms']['max']:.1f} | "
                        f"{100 * r['repeat_within_10pct']:.0f}% ({r['repeat_mape_pct']:.1f}%) |")
    if not opts.skip_sweep:
        results["sweep"] = sweep(out, opts.weights, opts.epochs, opts.train_epochs)
        rows += ["", f"Latency-aware first-order DARTS on digits, target "
                 f"{results['sweep']['target_ms']:.3f} ms (median of random genotypes):", "",
                 "| weight w | table ms | measured ms | test accuracy | genotype |",
                 "|---|---|---|---|---|"]
        for w, r in results["sweep"]["weights"].items():
            rows.append(f"| {w:g} | {r['table_ms']:.3f} | {r['measured_ms']:.3f} | "
                        f"{r['test_acc_pct']:.1f}% | `{r['genotype']}` |")
    results["machine"]["load_average_end"] = os.getloadavg()
    rows.append(f"\n1 thread, batch {opts.batch_size}; load average "
                f"{results['machine']['load_average_start']} "
                f"-> {results['machine']['load_average_end']}.")
    write_results(out, results, "\n".join(rows) + "\n")
    return results


if __name__ == "__main__":
    main()
