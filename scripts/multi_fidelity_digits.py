"""Hyperband and BOHB against random search on a real training search: best accuracy vs
cumulative training epochs (issue 13, multi-fidelity).

Every search trains NAS-Bench-201 cells (8 channels, one cell per stage) on scikit-learn's
8x8 digits with :class:`~lightning_nas.search.training.TrainingEvaluator` (SGD 0.05, cosine,
batch 32, 1 thread; validation on 20% held-out training images, test on the digits test
split) under the same budget of cumulative training epochs (``--epochs``; the loop's
``budget_seconds`` with ``time_key="epochs"``): random search trains every cell for
``--max-epochs``; Hyperband and BOHB spend 1 to ``--max-epochs`` epochs per run (eta 3).
For each search the incumbent after every record is the best validation accuracy at the
largest budget reached so far (random: every record); the figure shows its mean over seeds
(band: standard error) against cumulative epochs, the table the final incumbent's
validation and test accuracy and the epochs each sampler needed to reach random search's
final mean incumbent.

Usage::

    python scripts/multi_fidelity_digits.py --seeds 0 1 2 3 4 --epochs 156 \
        --out scripts/results/multi_fidelity_digits

One JSON per (sampler, seed) under ``<out>/runs/`` (a finished one is kept, so an
interrupted experiment continues); ``<out>/results.json``, ``results.md`` and
``best_vs_epochs.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLERS = ("random", "hyperband", "bohb")


def run_one(sampler_name: str, seed: int, epochs_budget: int, max_epochs: int, *,
            eta: float = 3, make_data=None, channels: int = 8,
            continue_training: bool = False, min_epochs: int = 1,
            accelerator: str = "cpu") -> dict[str, Any]:
    """One search; ``make_data()`` gives the data module (default: digits, batch 32, 20%
    validation), ``channels`` the NB201 stem width (one cell per stage);
    ``continue_training``: promotions continue the lower rung's run (the schedule spans
    ``max_epochs`` for every sampler) instead of retraining from scratch. The epoch budget
    counts the epochs each trial really trained (``epochs_trained``); ``min_epochs`` is the
    multi-fidelity samplers' smallest budget; ``accelerator`` the trials' Lightning
    accelerator (``"gpu"`` on a GPU machine)."""
    import torch

    from lightning_nas.data import DigitsDataModule
    from lightning_nas.search import RandomSampler, run_search
    from lightning_nas.search.multi_fidelity import BOHB, Hyperband
    from lightning_nas.search.training import TrainingEvaluator
    from lightning_nas.spaces.nb201 import NB201Space

    torch.set_num_threads(1)
    space = NB201Space(channels=channels, cells_per_stage=1)
    sampler = {"random": lambda: RandomSampler(space, seed=seed),
               "hyperband": lambda: Hyperband(space, min_fidelity=min_epochs,
                                              max_fidelity=max_epochs,
                                              eta=eta, seed=seed),
               "bohb": lambda: BOHB(space, min_fidelity=min_epochs, max_fidelity=max_epochs,
                                    eta=eta, seed=seed)}[sampler_name]()
    data = make_data() if make_data is not None else \
        DigitsDataModule(batch_size=32, val_fraction=0.2, seed=0)
    evaluator = TrainingEvaluator(
        data, space=space,
        epochs=max_epochs,
        weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9,
                                                   weight_decay=3e-4),
        model={"drop_path_prob": 0.0, "grad_clip": 5.0}, trainer={"accelerator": accelerator},
        seed=0, num_threads=1, accuracy_unit="percent", test=True,
        continue_training=continue_training)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_search(space, sampler, evaluator, run_dir=tmp,
                            budget_seconds=epochs_budget, time_key="epochs_trained",
                            progress=False)
    wall = time.perf_counter() - start
    trace, spent, best_key, best = [], 0, None, None
    for r in result.records:
        if r["status"] != "ok":
            continue
        spent += int(r["metrics"].get("epochs_trained", r["metrics"]["epochs"]))
        fidelity = r.get("fidelity", max_epochs)
        key = (fidelity, r["objective"])
        if best_key is None or key > best_key:
            best_key, best = key, r
        trace.append({"epochs": spent, "fidelity": fidelity, "val": best["objective"],
                      "test": best["metrics"].get("test_accuracy"),
                      "incumbent_fidelity": best_key[0]})
    evaluations = [{"arch": r["arch"], "fidelity": r.get("fidelity", max_epochs),
                    "val": r["objective"], "test": r["metrics"].get("test_accuracy"),
                    "epochs_trained": r["metrics"].get("epochs_trained")}
                   for r in result.records if r["status"] == "ok"]
    return {"sampler": sampler_name, "seed": seed, "records": len(result.records),
            "evaluations": evaluations,
            "cells": len({r["arch"] for r in result.records}), "epochs": spent,
            "wall_seconds": wall, "trace": trace,
            "final": {"val": best["objective"], "test": best["metrics"].get("test_accuracy"),
                      "arch": best["arch"], "fidelity": best_key[0]}}


def incumbent_at(trace: list[dict[str, Any]], epochs: float, max_epochs: int,
                 key: str = "val") -> float | None:
    """Validation (``key="val"``) or test accuracy of the incumbent at the full budget after
    ``epochs`` epochs."""
    value = None
    for point in trace:
        if point["epochs"] > epochs:
            break
        if point["incumbent_fidelity"] == max_epochs:
            value = point[key]
    return value


def summarise(runs: list[dict[str, Any]], budget: int, max_epochs: int) -> dict[str, Any]:
    def mean_se(values):
        values = [v for v in values if v is not None]
        if not values:
            return None, None, 0
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        return statistics.fmean(values), se, len(values)

    table = {}
    grid = list(range(max_epochs, budget + 1, max_epochs))
    for name in SAMPLERS:
        mine = [r for r in runs if r["sampler"] == name]
        if not mine:
            continue
        curve = [mean_se([incumbent_at(r["trace"], e, max_epochs) for r in mine]) for e in grid]
        test_curve = [mean_se([incumbent_at(r["trace"], e, max_epochs, "test") for r in mine])
                      for e in grid]
        table[name] = {
            "n": len(mine),
            "final_val": mean_se([r["final"]["val"] for r in mine]),
            "final_test": mean_se([r["final"]["test"] for r in mine]),
            "cells": mean_se([r["cells"] for r in mine]),
            "wall_seconds": mean_se([r["wall_seconds"] for r in mine]),
            "curve": {"epochs": grid, "mean": [c[0] for c in curve],
                      "se": [c[1] for c in curve], "n": [c[2] for c in curve]},
            "test_curve": {"epochs": grid, "mean": [c[0] for c in test_curve],
                           "se": [c[1] for c in test_curve], "n": [c[2] for c in test_curve]},
        }
    if "random" in table:
        for key, curve in (("val", "curve"), ("test", "test_curve")):
            target = table["random"][f"final_{key}"][0]
            for name, row in table.items():
                row["epochs_to_random_final" + ("" if key == "val" else "_test")] = next(
                    (e for e, m in zip(row[curve]["epochs"], row[curve]["mean"])
                     if m is not None and m >= target - 1e-4), None)  # float32 accuracies
    return table


def plot(table: dict[str, Any], path: Path,
         title: str = "NB201 cells on digits: best at the full budget so far") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("curve", "incumbent validation accuracy (%)")]
    if all("test_curve" in row for row in table.values()):
        panels.append(("test_curve", "test accuracy of the incumbent (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for name, row in table.items():
            curve = row[key]
            xs = [e for e, m in zip(curve["epochs"], curve["mean"]) if m is not None]
            ms = [m for m in curve["mean"] if m is not None]
            ses = [s for s, m in zip(curve["se"], curve["mean"]) if m is not None]
            ax.plot(xs, ms, label=f"{name} (n={row['n']})")
            ax.fill_between(xs, [m - s for m, s in zip(ms, ses)],
                            [m + s for m, s in zip(ms, ses)], alpha=0.2)
        ax.set_xlabel("cumulative training epochs")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def summary_rows(table: dict) -> list[str]:
    """The Markdown table of :func:`summarise`'s per-sampler rows."""
    lines = ["| sampler | n | final val % (mean +- se) | final test % | cells trained | "
             "epochs to random's final val | epochs to random's final test | "
             "wall s per search |", "|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        fv, ft, cells, wall = row["final_val"], row["final_test"], row["cells"], \
            row["wall_seconds"]
        lines.append(f"| {name} | {row['n']} | {fv[0]:.2f} +- {fv[1]:.2f} | "
                     f"{ft[0]:.2f} +- {ft[1]:.2f} | {cells[0]:.1f} | "
                     f"{row.get('epochs_to_random_final')} | "
                     f"{row.get('epochs_to_random_final_test')} | {wall[0]:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=156, help="cumulative epoch budget")
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--out", type=Path, default=Path("runs/multi_fidelity_digits"))
    args = parser.parse_args(argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for name in args.samplers:
            path = args.out / "runs" / f"{name}_seed{seed}.json"
            if not path.exists():
                record = run_one(name, seed, args.epochs, args.max_epochs)
                path.write_text(json.dumps(record, indent=1))
                print(f"{name} seed {seed}: final val {record['final']['val']:.2f} test "
                      f"{record['final']['test']:.2f}, {record['cells']} cells, "
                      f"{record['wall_seconds']:.0f} s", flush=True)
            runs.append(json.loads(path.read_text()))
    table = summarise(runs, args.epochs, args.max_epochs)
    out = {"config": {"seeds": args.seeds, "epochs_budget": args.epochs,
                      "max_epochs": args.max_epochs},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load": os.getloadavg()}, "table": table}
    (args.out / "results.json").write_text(json.dumps(out, indent=1))
    lines = summary_rows(table)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(table, args.out / "best_vs_epochs.png")


if __name__ == "__main__":
    main()
