"""EfficientNet's grid search for the compound-scaling coefficients on real data (Tan & Le,
ICML 2019, Sec. 4, step 1): `configs/search/cifar10_compound_grid.yaml` (phi = 1, the 15
(alpha, beta, gamma) grid points with alpha beta^2 gamma^2 within 0.1 of 2; EfficientNet-B0
built for 32x32 images with a stride-1 stem, each point trained from scratch on a CIFAR-10
subset of ../shared/data) through `lightning-nas search`, on a shared CPU: one trial at a
time, one thread, time-boxed with --budget_seconds.

The config trains each point 1 epoch at batch 64 (16 steps): every point then predicts one
class (10.0% validation accuracy, measured), so this script trains 2 epochs at batch 16
(126 SGD steps on 1,000 images) with label smoothing 0.1 instead; the subset is the config's
(125 training JPEGs per class, 20% of them held out: 1,000 train / 250 validation).

``--repeat N`` then trains the chosen point and the paper's (1.2, 1.1, 1.15) again with N
more evaluator seeds (initialisation and data order) in ``<run_dir>_repeat``, for the spread
of one point's accuracy.

    python scripts/compound_grid.py --budget-seconds 1500 --repeat 1
    python scripts/compound_grid.py --skip-grid --repeat 1   # repeats of a finished grid
    python scripts/compound_grid.py --summarise-only          # tables of finished runs

Writes ``scripts/results/compound_grid/{results.json,results.csv,README.md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_results import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/search/cifar10_compound_grid.yaml"
PAPER = (1.2, 1.1, 1.15)
#: what this run changes in the config (see the module docstring)
OVERRIDES = ["--evaluator.init_args.num_threads", "1", "--evaluator.init_args.epochs", "2",
             "--evaluator.init_args.data.init_args.batch_size", "16",
             "--evaluator.init_args.model", "{drop_path_prob: 0.0, grad_clip: 5.0, "
             "auxiliary_weight: 0.0, label_smoothing: 0.1}", "--progress", "false"]


def search(run_dir: Path, extra: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lightning_nas.search.cli", "--config", CONFIG, "--run_dir",
           str(run_dir), *OVERRIDES, *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def records(run_dir: Path) -> list[dict]:
    out = []
    path = ROOT / run_dir / "candidates.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["status"] != "ok":
            continue
        a = rec["arch_json"]["arch"]  # {"space": "compound", "arch": {alpha, beta, gamma}}
        m = rec["metrics"]
        out.append({"alpha": a["alpha"], "beta": a["beta"], "gamma": a["gamma"],
                    "flops_factor": round(a["alpha"] * a["beta"] ** 2 * a["gamma"] ** 2, 4),
                    "val_accuracy": round(m["accuracy"], 2),
                    "best_val_accuracy": round(m.get("best_accuracy", m["accuracy"]), 2),
                    "train_accuracy": round(m.get("train_accuracy", float("nan")), 2),
                    "macs": m.get("macs"), "params": m.get("params"),
                    "train_seconds": round(m.get("train_seconds", float("nan")), 1),
                    "trial": rec["trial"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="runs/compound_grid")
    parser.add_argument("--budget-seconds", type=float, default=1500)
    parser.add_argument("--repeat", type=int, default=0,
                        help="extra evaluator seeds for the chosen and the paper's point")
    parser.add_argument("--repeat-budget-seconds", type=float, default=600)
    parser.add_argument("--skip-grid", action="store_true",
                        help="the grid search in --run-dir is done: only the repeats")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--out", default="scripts/results/compound_grid")
    opts = parser.parse_args()
    run_dir = Path(opts.run_dir)
    repeat_dir = Path(f"{opts.run_dir}_repeat")
    load_before = os.getloadavg()
    t0 = time.time()
    if not (opts.summarise_only or opts.skip_grid):
        search(run_dir, ["--budget_seconds", str(opts.budget_seconds)])
    grid = records(run_dir)
    if not grid:
        raise SystemExit(f"no finished trial in {run_dir}")
    best = max(grid, key=lambda r: (r["val_accuracy"], -r["trial"]))
    chosen = (best["alpha"], best["beta"], best["gamma"])
    if opts.repeat and not opts.summarise_only:
        points = [chosen] + ([PAPER] if chosen != PAPER else [])
        initial = "[" + ", ".join(f"alpha{a:g}|beta{b:g}|gamma{g:g}" for a, b, g in points) + "]"
        for seed in range(1, opts.repeat + 1):
            search(Path(f"{repeat_dir}/seed{seed}"), [
                "--sampler", "lightning_nas.search.seeded.SeededEvolution",
                "--sampler.init_args.initial", initial,
                "--sampler.init_args.population_size", str(len(points) + 1),
                "--sampler.init_args.sample_size", "1",
                "--evaluator.init_args.seed", str(seed), "--budget_trials", str(len(points)),
                "--budget_seconds", str(opts.repeat_budget_seconds)])
    repeats: dict[str, list[float]] = {}
    for point_rec in grid:
        key = f"{point_rec['alpha']:g}/{point_rec['beta']:g}/{point_rec['gamma']:g}"
        repeats.setdefault(key, []).append(point_rec["val_accuracy"])
    for seed_dir in sorted((ROOT / repeat_dir).glob("seed*")) if (ROOT / repeat_dir).is_dir() \
            else []:
        for rec in records(seed_dir.relative_to(ROOT)):
            repeats[f"{rec['alpha']:g}/{rec['beta']:g}/{rec['gamma']:g}"].append(
                rec["val_accuracy"])
    load_after = os.getloadavg()

    grid.sort(key=lambda r: (-r["val_accuracy"], r["trial"]))
    accs = [r["val_accuracy"] for r in grid]
    paper_key = "1.2/1.1/1.15"
    paper = next((r for r in grid if (r["alpha"], r["beta"], r["gamma"]) == PAPER), None)
    out = ROOT / opts.out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(grid[0]))
        writer.writeheader()
        writer.writerows(grid)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    spread = {k: {"n": len(v), "mean": statistics.mean(v),
                  "std": statistics.stdev(v) if len(v) > 1 else None, "values": v}
              for k, v in repeats.items() if len(v) > 1}
    results = {"config": CONFIG, "overrides": OVERRIDES, "points_evaluated": len(grid),
               "points_in_grid": 15, "chosen": dict(zip(("alpha", "beta", "gamma"), chosen)),
               "paper": dict(zip(("alpha", "beta", "gamma"), PAPER)),
               "paper_rank": 1 + [(r["alpha"], r["beta"], r["gamma"]) for r in grid].index(PAPER)
               if paper else None,
               "val_accuracy_range": [min(accs), max(accs)], "repeats": spread,
               "machine": cpu_model(), "cpus": os.cpu_count(), "threads": 1,
               "load_average_before": load_before, "load_average_after": load_after,
               "wall_seconds": round(time.time() - t0, 1), "commit": commit, "grid": grid}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = ["# Compound-scaling grid search on a CIFAR-10 subset", "",
             f"`{CONFIG}` through `lightning-nas search`: phi = 1, EfficientNet-B0 (32x32, "
             "stride-1 stem) scaled by every (alpha, beta, gamma) of the grid with "
             "alpha beta^2 gamma^2 within 0.1 of 2, each trained from scratch on 1,000 CIFAR-10 "
             "JPEGs and scored on 250 held-out ones (validation accuracy %, last epoch).", "",
             "**How it was shrunk.** The config's 1 epoch at batch 64 (16 SGD steps) leaves "
             "every network at chance (10.0%, measured on the first point), so each point here "
             "trains 2 epochs at batch 16 (126 steps) with label smoothing 0.1 "
             f"(`scripts/compound_grid.py`; overrides `{' '.join(OVERRIDES)}`); one thread, one "
             f"trial at a time, time-boxed to {opts.budget_seconds:g} s: "
             f"{len(grid)} of 15 points finished.", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores shared with other engineers' jobs "
             f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after).", "",
             "| rank | alpha | beta | gamma | a b^2 g^2 | MACs (M) | params (M) | val acc % | "
             "train acc % | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(grid, 1):
        mark = " (paper)" if (r["alpha"], r["beta"], r["gamma"]) == PAPER else ""
        lines.append(f"| {i} | {r['alpha']:g} | {r['beta']:g} | {r['gamma']:g}{mark} | "
                     f"{r['flops_factor']:.3f} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e6:.2f} | "
                     f"{r['val_accuracy']:.1f} | {r['train_accuracy']:.1f} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", f"**Chosen** (best validation accuracy): alpha {chosen[0]:g}, beta "
              f"{chosen[1]:g}, gamma {chosen[2]:g}; the paper's 1.2 / 1.1 / 1.15 "
              + (f"ranks {results['paper_rank']} of {len(grid)}." if paper else
                 "was not reached within the time box."),
              f"Validation accuracies span {min(accs):.1f}-{max(accs):.1f}% (n = 1 seed per "
              f"point, 250 images: the binomial standard error alone is "
              f"{100 * (max(accs) / 100 * (1 - max(accs) / 100) / 250) ** 0.5:.1f} points)."]
    for key, s in spread.items():
        lines.append(f"Point {key} over {s['n']} evaluator seeds: "
                     f"{s['mean']:.1f} +- {s['std']:.1f}% ({', '.join(map(str, s['values']))}).")
    lines += ["", f"`python scripts/compound_grid.py` at commit {commit}; "
              f"{results['wall_seconds']:.0f} s wall.", ""]
    text = "\n".join(lines)
    (out / "README.md").write_text(text)
    print(text)
    if paper_key not in repeats:
        print("(the paper's point was not evaluated)")


if __name__ == "__main__":
    main()
