#!/usr/bin/env python
"""One-shot search on NAS-Bench-201 with real CIFAR-10 images on a CPU: ENAS, SPOS (+
regularized evolution over inherited accuracy), first-order DARTS, PC-DARTS and GDAS (with
``--methods``), each through the
`lightning-nas` command, for several seeds; random search with a training evaluator at the
same wall time; every found cell's CIFAR-10 (and CIFAR-100, ImageNet16-120) test accuracy
looked up in the benchmark table (``../shared/data/nb201/nb201_accuracy.csv``).

The budget is far below the paper's, and the script says so in its table: a CIFAR-10 subset
from ``../shared/data/cifar10/cifar10_jpg.zip`` (``--per-class`` training images per class;
DARTS and ENAS split it into a weights half and an architecture half, SPOS and random
search hold out 20% for validation), a smaller supernet (``--channels``, ``--cells`` per
stage; the benchmark's is 16 and 5) and a few epochs, with the configs' settings otherwise.

Usage::

    python scripts/nb201_one_shot.py --seeds 0 1 2 --out scripts/results/nb201_one_shot
    python scripts/nb201_one_shot.py --seeds 0 --per-class 50 --darts-epochs 1 \\
        --enas-epochs 1 --spos-epochs 1 --spos-candidates 10 --out runs/nb201-smoke

Writes ``<out>/results.json`` and ``<out>/results.md``; each run's folder is under
``<out>/runs``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_results import write_results  # noqa: E402

from lightning_nas.data import shared_data_dir  # noqa: E402

TABLE_METRICS = {"cifar10": "cifar10_test_200ep", "cifar100": "cifar100_test_200ep",
                 "imagenet16": "imagenet16_test_200ep", "cifar10_val": "cifar10valid_val_200ep"}
#: NAS-Bench-201 paper (Dong & Yang, ICLR 2020), Table 5, CIFAR-10 test accuracy of the
#: found cell (mean, std over runs).
PUBLISHED = {"DARTS-V1": (54.30, 0.00), "DARTS-V2": (54.30, 0.00), "ENAS": (54.30, 0.00),
             "GDAS": (93.61, 0.09), "SETN": (87.64, 0.00), "RSPS": (87.66, 1.69),
             "random (multi-trial)": (93.70, 0.36)}


def cli(args: list[str], log: Path) -> float:
    """Run `lightning-nas ARGS` in a fresh process (1 thread); its wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "WANDB_MODE": "offline"}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "lightning_nas.cli", *args], env=env,
                              stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"lightning-nas {' '.join(args[:3])} failed ({proc.returncode}); "
                           f"see {log}")
    return seconds


def data_args(opts: argparse.Namespace, *, search: bool, prefix: str = "--data") -> list[str]:
    zip_path = str(shared_data_dir() / "cifar10" / "cifar10_jpg.zip")
    args = [prefix, "lightning_nas.data.ImageFolderDataModule", f"{prefix}.root", zip_path,
            f"{prefix}.max_per_class_train", str(opts.per_class),
            f"{prefix}.max_per_class_test", "10", f"{prefix}.batch_size", "64",
            f"{prefix}.seed", "0"]
    if search:
        return args + [f"{prefix}.search", "true"]
    return args + [f"{prefix}.val_fraction", "0.2"]


def fit_args(config: str, run: Path, seed: int, epochs: int, opts: argparse.Namespace,
             *, search: bool) -> list[str]:
    return ["fit", "--config", str(ROOT / config), "--seed_everything", str(seed),
            "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(run),
            "--trainer.logger.init_args.save_dir", str(run), "--trainer.enable_progress_bar",
            "false", "--model.init_args.seed", str(seed),
            "--model.init_args.space.init_args.channels", str(opts.channels),
            "--model.init_args.space.init_args.cells_per_stage", str(opts.cells),
            *data_args(opts, search=search)]


def space_args(opts: argparse.Namespace) -> list[str]:
    return ["--space.init_args.channels", str(opts.channels),
            "--space.init_args.cells_per_stage", str(opts.cells)]


#: methods that are one `lightning-nas fit` on the search halves: (config, epochs option)
FIT_ONLY = {"darts": ("configs/darts/nb201_cifar10.yaml", "darts_epochs"),
            "enas": ("configs/enas/nb201_cifar10.yaml", "enas_epochs"),
            "pc_darts": ("configs/pc_darts/nb201_cifar10.yaml", "pc_darts_epochs"),
            "gdas": ("configs/gdas/nb201_cifar10.yaml", "gdas_epochs")}


def cached(fn):
    """Keep a finished run's result in ``<run>/result.json`` and reuse it (an interrupted
    experiment continues with the runs it has not finished)."""
    def wrapper(method: str, seed: int, *args: Any) -> dict[str, Any]:
        out = args[-1]
        path = out / "runs" / f"{method}_seed{seed}" / "result.json"
        if path.is_file():
            return json.loads(path.read_text())
        result = fn(method, seed, *args)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        return result
    return wrapper


@cached
def run_method(method: str, seed: int, opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    run = out / "runs" / f"{method}_seed{seed}"
    logs = out / "logs"
    if method in FIT_ONLY:
        config, epochs_attr = FIT_ONLY[method]
        args = fit_args(config, run, seed, getattr(opts, epochs_attr), opts, search=True)
        if method == "pc_darts":
            args += ["--model.init_args.warmup_epochs", str(opts.pc_darts_warmup)]
        seconds = cli(args, logs / f"{method}_{seed}.log")
        return {"arch": json.loads((run / "arch.json").read_text())["string"],
                "seconds": seconds}
    if method == "spos":
        fit = cli(fit_args("configs/spos/nb201_cifar10.yaml", run, seed, opts.spos_epochs,
                           opts, search=False), logs / f"{method}_fit_{seed}.log")
        search_dir = run / "search"
        search = cli(["search", "--config", str(ROOT / "configs/search/spos_nb201_cifar10.yaml"),
                      *space_args(opts), "--evaluator.init_args.checkpoint",
                      str(run / "checkpoints" / "last.ckpt"),
                      *data_args(opts, search=False, prefix="--evaluator.init_args.data"),
                      "--evaluator.init_args.calibration_images", "512",
                      "--evaluator.init_args.max_eval_images", "null",
                      "--evaluator.init_args.batch_size", "128",
                      "--evaluator.init_args.num_threads", "1",
                      "--sampler.init_args.population_size", str(opts.spos_population),
                      "--sampler.init_args.sample_size", str(min(5, opts.spos_population)),
                      "--sampler.init_args.seed",
                      str(seed), "--budget_trials", str(opts.spos_candidates), "--run_dir",
                      str(search_dir), "--progress", "false"], logs / f"{method}_search_{seed}.log")
        records = [json.loads(line) for line in
                   (search_dir / "candidates.jsonl").read_text().splitlines()]
        ok = [r for r in records if r["status"] == "ok"]
        initial = [r["metrics"]["accuracy"] for r in ok[:opts.spos_population]]
        best = max(ok, key=lambda r: r["objective"])
        return {"arch": best["arch"], "seconds": fit + search, "fit_seconds": fit,
                "search_seconds": search, "inherited_best": best["metrics"]["accuracy"],
                "inherited_random_mean": statistics.fmean(initial),
                "inherited_random_std": statistics.stdev(initial) if len(initial) > 1 else 0.0,
                "inherited_random_n": len(initial), "candidates": len(ok)}
    raise ValueError(method)


def run_random(seed: int, seconds: float, opts: argparse.Namespace, out: Path
               ) -> dict[str, Any]:
    return cached(_run_random)("random", seed, seconds, opts, out)


def _run_random(method: str, seed: int, seconds: float, opts: argparse.Namespace, out: Path
                ) -> dict[str, Any]:
    """Random search training each cell (NB201 network of the same size) for a few epochs on
    the same subset, for ``seconds`` of wall time; the best by validation accuracy."""
    run = out / "runs" / f"random_seed{seed}"
    start = time.perf_counter()
    cli(["search", "--config", str(ROOT / "configs/search/digits_random.yaml"), *space_args(opts),
         "--sampler.init_args.seed", str(seed), "--run_dir", str(run),
         *data_args(opts, search=False, prefix="--evaluator.init_args.data"),
         "--evaluator.init_args.epochs", str(opts.random_epochs),
         "--metric_hooks", "[]", "--pareto.enabled", "false", "--wandb", "false",
         "--budget_trials", "null", "--budget_seconds", f"{seconds:.0f}", "--progress",
         "false"], out / "logs" / f"random_{seed}.log")
    summary = json.loads((run / "summary.json").read_text())
    return {"arch": summary["best"]["arch"], "seconds": time.perf_counter() - start,
            "budget_seconds": seconds, "trials": summary["counts"]["ok"]}


def lookup(table: dict[str, dict[str, float]], arch: str) -> dict[str, float]:
    return {k: table[arch][col] for k, col in TABLE_METRICS.items()}


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["darts", "enas", "spos"])
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--darts-epochs", type=int, default=10)
    parser.add_argument("--enas-epochs", type=int, default=20)
    parser.add_argument("--spos-epochs", type=int, default=30)
    parser.add_argument("--pc-darts-epochs", type=int, default=10)
    parser.add_argument("--pc-darts-warmup", type=int, default=3,
                        help="weight-only epochs (the paper: 15 of 50)")
    parser.add_argument("--gdas-epochs", type=int, default=40)
    parser.add_argument("--random-match", nargs="+", default=["darts", "enas", "spos"],
                        help="random search gets the mean wall time of these methods")
    parser.add_argument("--spos-population", type=int, default=20)
    parser.add_argument("--spos-candidates", type=int, default=100)
    parser.add_argument("--random-epochs", type=int, default=3)
    parser.add_argument("--no-random", action="store_true")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (1 thread each)")
    parser.add_argument("--out", default="scripts/results/nb201_one_shot")
    opts = parser.parse_args(argv)
    out = Path(opts.out)
    table_path = shared_data_dir() / "nb201" / "nb201_accuracy.csv"
    with table_path.open(newline="") as f:
        table = {row["arch_str"]: {k: float(v) for k, v in row.items()
                                   if k not in ("index", "arch_str")}
                 for row in csv.DictReader(f)}

    jobs = [(m, s) for s in opts.seeds for m in opts.methods]
    results: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in opts.methods}
    with ThreadPoolExecutor(opts.parallel) as pool:
        futures = {job: pool.submit(run_method, *job, opts, out) for job in jobs}
        for (method, seed), future in futures.items():
            res = future.result()
            res.update(lookup(table, res["arch"]))
            results[method][seed] = res
            print(f"{method} seed {seed}: {res['cifar10']:.2f} ({res['seconds']:.0f} s) "
                  f"{res['arch']}", flush=True)
        if not opts.no_random:
            results["random"] = {}
            match = [m for m in opts.random_match if m in results] or opts.methods
            matched = {s: statistics.fmean(results[m][s]["seconds"] for m in match)
                       for s in opts.seeds}
            rfutures = {s: pool.submit(run_random, s, matched[s], opts, out) for s in opts.seeds}
            for seed, future in rfutures.items():
                res = future.result()
                res.update(lookup(table, res["arch"]))
                results["random"][seed] = res
                print(f"random seed {seed}: {res['cifar10']:.2f} ({res['trials']} trials)",
                      flush=True)

    rows = ["| method | CIFAR-10 test | CIFAR-100 test | ImageNet16-120 test | wall time per "
            "search (min) | found cells |", "|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for method, per_seed in results.items():
        c10 = [r["cifar10"] for r in per_seed.values()]
        summary[method] = {"cifar10": c10, "cifar100": [r["cifar100"] for r in per_seed.values()],
                           "imagenet16": [r["imagenet16"] for r in per_seed.values()],
                           "minutes": [r["seconds"] / 60 for r in per_seed.values()]}
        cells = "; ".join(f"s{s}: `{r['arch']}`" for s, r in per_seed.items())
        rows.append(f"| {method} | {mean_std(c10)} | {mean_std(summary[method]['cifar100'])} | "
                    f"{mean_std(summary[method]['imagenet16'])} | "
                    f"{mean_std(summary[method]['minutes'])} | {cells} |")
    rows.append("")
    rows.append("Published (NAS-Bench-201 paper, Table 5, CIFAR-10 test, the benchmark's full "
                "budget): " + ", ".join(f"{k} {m:.2f} +- {s:.2f}" for k, (m, s)
                                        in PUBLISHED.items()))
    rows.append("")
    rows.append(f"Budget here: {opts.per_class} training images per class of CIFAR-10 "
                f"({10 * opts.per_class} images; DARTS/ENAS halves of {5 * opts.per_class}, "
                f"SPOS/random {8 * opts.per_class} train + {2 * opts.per_class} validation), "
                f"supernet {opts.channels} channels x {opts.cells} cell(s) per stage (benchmark: "
                f"16 x 5), DARTS {opts.darts_epochs} / ENAS {opts.enas_epochs} / SPOS "
                f"{opts.spos_epochs} / PC-DARTS {opts.pc_darts_epochs} (K=4, "
                f"{opts.pc_darts_warmup} warm-up) / GDAS {opts.gdas_epochs} epochs (benchmark: "
                "50 / 250 / 250 / - / 250 on 25,000 + 25,000 images), SPOS evolution "
                f"{opts.spos_candidates} candidates; random search trains each cell "
                f"{opts.random_epochs} epochs for the mean wall time of the "
                f"{'/'.join(opts.random_match)} searches of its seed. 1 thread per run, "
                f"{opts.parallel} runs at once.")
    if "spos" in results:
        spos = results["spos"].values()
        rows.append("")
        rows.append("SPOS inherited accuracy on the held-out images (%): evolution's best "
                    f"{mean_std([r['inherited_best'] for r in spos])} vs the mean of its "
                    f"{opts.spos_population} random initial cells "
                    f"{mean_std([r['inherited_random_mean'] for r in spos])}")
    text = "\n".join(rows) + "\n"
    payload = {"config": vars(opts), "results": {m: {str(s): r for s, r in v.items()}
                                                 for m, v in results.items()},
               "summary": summary, "published": PUBLISHED,
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "load_average": os.getloadavg()}}
    write_results(out, payload, text)
    return payload


if __name__ == "__main__":
    main()
