"""Published mobile networks trained from random initialisation on a CIFAR-10 subset through
`lightning-nas fit`, against a DARTS cell network of similar multiply-adds (issue 12, item 4).

Every network trains with the same recipe, `configs/train/cifar10_mobile_preset.yaml`: the
CIFAR-10 subset of ../shared/data (``--per-class`` training JPEGs per class, 250 by default,
of which 20% are held out for validation; 1,000 test JPEGs; crop + flip), SGD 0.05 Nesterov with a cosine schedule, label smoothing 0.1, no
drop-path, no auxiliary head, batch 64, ``--epochs`` epochs; then `lightning-nas test` on the
last checkpoint. Networks (multiply-adds at 32x32, batch 1):

* MnasNet-A1 and EfficientNet-B0: the mobile presets built for 32x32 inputs (stride-1 stem;
  25.6 M and 32.0 M MACs);
* DARTS_V2 in a DARTS network of 16 channels and 6 cells (32.3 M MACs, the same recipe).

``--seeds`` seeds each (initialisation and data order); each run is one process on one
thread, ``--jobs`` at a time. Writes ``scripts/results/mobile_finetune/results.json`` /
``results.md`` and ``docs/mobile_finetune.png`` (test accuracy vs multiply-adds, every seed
and the mean +- standard deviation).

    python scripts/mobile_finetune.py --epochs 3 --per-class 100 --seeds 0 1 2 --jobs 2
    # ~30 min on 2 shared cores; the config's 2,000 images x 10 epochs take ~2 h per seed
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_results import cpu_model, write_results  # noqa: E402

from lightning_nas.hardware.metrics import count_flops, count_parameters  # noqa: E402
from lightning_nas.spaces.darts import DartsSpace  # noqa: E402
from lightning_nas.spaces.mobile_blocks import PRESETS, MobileBlockSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/train/cifar10_mobile_preset.yaml"
DARTS = {"channels": 16, "layers": 6}
MODELS = {
    "MnasNet-A1": ["--model.init_args.arch", "MnasNet-A1"],
    "EfficientNet-B0": ["--model.init_args.arch", "EfficientNet-B0"],
    "DARTS_V2 (16 ch, 6 cells)": [
        "--model.init_args.arch", "DARTS_V2",
        "--model.init_args.space", "lightning_nas.spaces.darts.DartsSpace",
        "--model.init_args.space.init_args.channels", str(DARTS["channels"]),
        "--model.init_args.space.init_args.layers", str(DARTS["layers"]),
        "--model.init_args.space.init_args.auxiliary", "false"],
}


def costs(name: str) -> tuple[int, int]:
    if name.startswith("DARTS"):
        space = DartsSpace(**DARTS)
        arch = space.load("DARTS_V2")
    else:
        space = MobileBlockSpace(num_classes=10, input_size=32, stem_stride=1)
        arch = PRESETS[name]
    with torch.device("meta"):
        net = space.build(arch, num_classes=10)
    return count_parameters(net), count_flops(net, (3, 32, 32)).macs


def cli(args: list[str], log: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "lightning_nas.cli", *args], env=env,
                              stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"lightning-nas {args[0]} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - start


def last(metrics: Path, key: str) -> float | None:
    values = [float(r[key]) for r in csv.DictReader(metrics.open()) if r.get(key)]
    return values[-1] if values else None


def run(name: str, seed: int, opts: argparse.Namespace) -> dict:
    folder = Path(opts.runs) / f"{name.split(' ')[0]}_seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    common = ["--config", str(ROOT / CONFIG), "--seed_everything", str(seed),
              "--model.init_args.seed", str(seed), "--trainer.default_root_dir", str(folder),
              "--trainer.logger.init_args.save_dir", str(folder),
              "--trainer.enable_progress_bar", "false", "--trainer.max_epochs",
              str(opts.epochs), "--data.init_args.max_per_class_train", str(opts.per_class),
              *MODELS[name]]
    fit_s = cli(["fit", *common], folder / "fit.log")
    cli(["test", *common, "--ckpt_path", str(folder / "checkpoints" / "last.ckpt")],
        folder / "test.log")
    metrics = folder / "metrics.csv"
    result = {"name": name, "seed": seed, "epochs": opts.epochs, "fit_seconds": fit_s,
              "test_acc": 100 * last(metrics, "test/acc"),
              "val_acc": 100 * last(metrics, "val/acc")}
    done.write_text(json.dumps(result, indent=2) + "\n")
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=250,
                        help="training images per class (20%% of them held out for "
                        "validation); the test split is always 100 per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="scripts/results/mobile_finetune")
    parser.add_argument("--runs", default="runs/mobile_finetune",
                        help="run folders (checkpoints, logs; a finished run is reused)")
    parser.add_argument("--figure", default="docs/mobile_finetune.png")
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]
    jobs = [(name, seed) for seed in opts.seeds for name in MODELS]
    with ThreadPoolExecutor(opts.jobs) as pool:
        results = list(pool.map(lambda job: run(*job, opts), jobs))
    load_after = os.getloadavg()[0]
    rows = []
    for name in MODELS:
        params, macs = costs(name)
        accs = [r["test_acc"] for r in results if r["name"] == name]
        secs = [r["fit_seconds"] for r in results if r["name"] == name]
        rows.append({"name": name, "params": params, "macs": macs, "test_acc": accs,
                     "mean": statistics.mean(accs),
                     "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "fit_seconds": secs})
    machine = f"{cpu_model()}, {os.cpu_count()} cores; 1 thread per run, {opts.jobs} at a time"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    lines = ["# Trained from scratch on a CIFAR-10 subset: mobile presets vs a DARTS network",
             "", f"`{CONFIG}` for every network: {8 * opts.per_class:,} train / "
             f"{2 * opts.per_class:,} val / 1,000 test images "
             f"at 32x32, {opts.epochs} epochs, SGD 0.05 Nesterov + cosine, label smoothing 0.1, "
             f"batch 64; test accuracy of the last epoch; n = {len(opts.seeds)} seeds "
             f"({', '.join(map(str, opts.seeds))}). Machine: {machine}; load average "
             f"{load_before:.2f} before, {load_after:.2f} after.", "",
             "| network | params | MACs (32x32) | test accuracy % (mean +- std) | per seed | "
             "fit time per run (s) |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['params'] / 1e6:.2f} M | {row['macs'] / 1e6:.1f} M"
                     f" | {row['mean']:.2f} +- {row['std']:.2f} | "
                     f"{', '.join(f'{a:.1f}' for a in row['test_acc'])} | "
                     f"{statistics.median(row['fit_seconds']):.0f} |")
    lines += ["", f"`python scripts/mobile_finetune.py --epochs {opts.epochs} --per-class "
              f"{opts.per_class} --seeds "
              f"{' '.join(map(str, opts.seeds))} --jobs {opts.jobs}` at commit {commit}.", ""]

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, row in enumerate(rows):
        x = row["macs"] / 1e6
        ax.scatter([x] * len(row["test_acc"]), row["test_acc"], s=14, c=f"C{k}", alpha=0.6)
        ax.errorbar([x], [row["mean"]], yerr=[row["std"]], fmt="D", c=f"C{k}", capsize=4,
                    label=f"{row['name']} ({row['params'] / 1e6:.2f} M params): "
                    f"{row['mean']:.1f} +- {row['std']:.1f}")
    ax.set_xlabel("multiply-adds at 32x32 (M)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"CIFAR-10 subset ({8 * opts.per_class:,} train / 1,000 test), {opts.epochs} "
                 f"epochs from "
                 f"scratch, n={len(opts.seeds)} seeds", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    Path(opts.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(opts.figure)
    write_results(opts.out, {"rows": rows, "runs": results, "epochs": opts.epochs,
                             "seeds": opts.seeds, "machine": machine, "commit": commit,
                             "load_before": load_before, "load_after": load_after},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
