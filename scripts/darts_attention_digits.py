#!/usr/bin/env python
"""DARTS on digits with attention ops added vs plain DARTS: alphas, derived cells, and the
found cells trained with configs/train/digits.yaml, over several seeds.

For each seed and variant (``plain``: configs/darts/digits.yaml; ``attention``:
configs/darts/digits_attention.yaml, the paper's 8 ops plus self_attention,
local_attention_3x3 and squeeze_excite) it runs a first-order search through the CLI at a
reduced scale (``--channels`` / ``--layers`` / ``--search-epochs``), then trains the derived
cell with configs/train/digits.yaml (its 16 channels, 5 cells, ``--train-epochs``) and tests
the best-validation checkpoint. One process at a time, one thread each (a shared machine).

    python scripts/darts_attention_digits.py [--seeds 0 1 2] [--out runs/darts_attention_digits]
        [--results scripts/results/darts_attention_digits]

Runs that finished (a test metric in their folder) are not repeated, so it resumes.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_results import cpu_model, write_results  # noqa: E402

VARIANTS = {"plain": "configs/darts/digits.yaml",
            "attention": "configs/darts/digits_attention.yaml"}
NEW_OPS = ("self_attention", "local_attention_3x3", "squeeze_excite")


def cli(args: list[str], log: Path) -> float:
    """Run ``lightning-nas`` in a child process with one thread; seconds it took."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "lightning_nas.cli", *args], cwd=ROOT,
                              env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"lightning-nas {' '.join(args[:3])} failed; see {log}")
    return time.perf_counter() - start


def run_args(run: Path) -> list[str]:
    return ["--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
            str(run), "--trainer.enable_progress_bar", "false"]


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


def one(seed: int, variant: str, args: argparse.Namespace) -> dict:
    from lightning_nas.spaces.base import Arch
    from lightning_nas.spaces.darts import DartsSpace

    out = ROOT / args.out / f"{variant}_seed{seed}"
    search, train = out / "search", out / "train"
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    if not (search / "arch.json").is_file():
        seconds["search"] = cli(["fit", "--config", VARIANTS[variant], *run_args(search),
                                 "--seed_everything", str(seed), "--model.init_args.seed",
                                 str(seed), "--model.init_args.channels", str(args.channels),
                                 "--model.init_args.layers", str(args.layers),
                                 "--trainer.max_epochs", str(args.search_epochs)],
                                out / "search.log")
    arch = Arch.load(search / "arch.json")
    tested = (train / "metrics.csv").is_file() and column(metrics(train), "test/acc")
    if not tested:
        common = ["--config", "configs/train/digits.yaml", *run_args(train),
                  "--model.init_args.arch", str(search / "arch.json"),
                  "--seed_everything", str(seed), "--model.init_args.seed", str(seed)]
        seconds["train"] = cli(["fit", *common, "--trainer.max_epochs", str(args.train_epochs)],
                               out / "train.log")
        best = sorted((train / "checkpoints").glob("epoch=*.ckpt"))[-1]
        cli(["test", *common, "--ckpt_path", str(best)], out / "test.log")
    history = [json.loads(line) for line in (search / "history.jsonl").read_text().splitlines()]
    rows = metrics(train)
    space = DartsSpace(channels=16, layers=5, auxiliary=False, in_channels=1, num_classes=10)
    ops = [op for cell in ("normal", "reduce") for op, _ in arch[cell]]
    return {
        "seed": seed, "variant": variant, "genotype": history[-1]["string"],
        "search_val_acc": history[-1].get("val/acc"),
        "primitives": history[-1]["primitives"], "alphas": history[-1]["alphas"],
        "new_ops_in_cell": sum(op in NEW_OPS for op in ops),
        "params": space.count_params(arch),
        "train_best_val_acc": max(column(rows, "val/acc")),
        "test_acc": column(rows, "test/acc")[-1],
        "seconds": seconds,
    }


def figure(records: list[dict], path: Path) -> None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    for variant, colour in (("plain", "tab:blue"), ("attention", "tab:orange")):
        rs = [r for r in records if r["variant"] == variant]
        ax.scatter([r["params"] / 1e3 for r in rs], [100 * r["test_acc"] for r in rs],
                   color=colour, label=f"{variant} (n={len(rs)})")
        for r in rs:
            ax.annotate(f"s{r['seed']}" + (f"/{r['new_ops_in_cell']}a" if r["new_ops_in_cell"]
                                          else ""), (r["params"] / 1e3, 100 * r["test_acc"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters of the trained network (thousands)")
    ax.set_ylabel("digits test accuracy (%)")
    ax.set_title("found cells, configs/train/digits.yaml")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    rs = [r for r in records if r["variant"] == "attention"]
    if rs:
        names = rs[0]["primitives"]
        width = 0.4
        for k, cell in enumerate(("normal", "reduce")):
            mean = np.mean([np.asarray(r["alphas"][cell]).mean(0) for r in rs], axis=0)
            ax.bar(np.arange(len(names)) + (k - 0.5) * width, mean, width, label=cell)
        ax.axhline(1 / len(names), color="grey", lw=0.8, ls="--", label="uniform")
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("softmaxed alpha, mean over edges and seeds")
        ax.set_title("attention search: final alphas")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--search-epochs", type=int, default=10)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/darts_attention_digits")
    parser.add_argument("--results", default="scripts/results/darts_attention_digits")
    args = parser.parse_args(argv)
    records = []
    for seed in args.seeds:
        for variant in VARIANTS:
            records.append(one(seed, variant, args))
            print(json.dumps({k: v for k, v in records[-1].items() if k != "alphas"}),
                  flush=True)
    summary = {}
    for variant in VARIANTS:
        rs = [r for r in records if r["variant"] == variant]
        acc = [100 * r["test_acc"] for r in rs]
        summary[variant] = {"n": len(rs), "test_acc_mean": statistics.mean(acc),
                            "test_acc_sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                            "params_mean": statistics.mean(r["params"] for r in rs)}
    results = {"machine": f"{cpu_model()}, {os.cpu_count()} cores shared, 1 thread per run",
               "settings": vars(args), "summary": summary, "runs": records}
    lines = ["# DARTS on digits: attention ops added vs plain", "",
             f"Machine: {results['machine']}. Search: first-order DARTS, {args.channels} "
             f"channels, {args.layers} cells, {args.search_epochs} epochs; found cell trained "
             f"with configs/train/digits.yaml ({args.train_epochs} epochs), test accuracy of "
             "the best-validation checkpoint.", "",
             "| variant | seed | params | attention ops in cell | test acc (%) | genotype |",
             "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['params']:,} | {r['new_ops_in_cell']}"
                     f" | {100 * r['test_acc']:.2f} | `{r['genotype']}` |")
    lines += ["", "| variant | n | test acc mean +- sd (%) | mean params |", "|---|---|---|---|"]
    for variant, s in summary.items():
        lines.append(f"| {variant} | {s['n']} | {s['test_acc_mean']:.2f} +- "
                     f"{s['test_acc_sd']:.2f} | {s['params_mean']:,.0f} |")
    out = ROOT / args.results
    out.mkdir(parents=True, exist_ok=True)
    figure(records, out / "darts_attention_digits.png")
    write_results(out, results, "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
