"""How well a short training run ranks cells for a long one: the signal a multi-fidelity
search (Hyperband, BOHB) spends its low rungs on (issue 13, item 4).

Draws ``--cells`` NAS-Bench-201 cells uniformly at random and trains each on the CIFAR-10
subset of ``multi_fidelity_cifar10_subset.py`` (same data, network width, optimiser and
cosine schedule over ``--max-epochs``) with
:class:`~lightning_nas.search.training.TrainingEvaluator` ``(continue_training=True)``:
one run per cell, read at every budget of ``--fidelities`` (the run at 3 epochs is continued
to 9, so each cell costs ``--max-epochs`` epochs). Reports, per pair of budgets, Spearman and
Kendall correlations of validation accuracy over the cells with 95% bootstrap intervals
(2,000 resamples of the cells), and how often the best cell at the full budget is in the
top third at the low one (Hyperband with eta 3 promotes the top third).

Usage::

    OMP_NUM_THREADS=1 python scripts/fidelity_correlation_cifar10_subset.py --cells 60 \\
        --out scripts/results/fidelity_correlation_cifar10_subset

``--shard K/N`` trains every N-th cell from the K-th (run N processes, then once without
``--shard`` to summarise); finished cells are kept in ``<out>/cells.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def train_cells(args, indices: list[int]) -> None:
    import torch

    from lightning_nas.search.training import TrainingEvaluator
    from lightning_nas.spaces.nb201 import NB201Space
    from multi_fidelity_cifar10_subset import make_data_factory

    torch.set_num_threads(1)
    space = NB201Space(channels=args.channels, cells_per_stage=1)
    rng = random.Random(args.seed)
    cells = [space.sample(rng) for _ in range(args.cells)]
    evaluator = TrainingEvaluator(
        make_data_factory(args)(), space=space, epochs=args.max_epochs,
        weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9,
                                                   weight_decay=3e-4),
        model={"drop_path_prob": 0.0, "grad_clip": 5.0}, trainer={"accelerator": args.accelerator},
        seed=0, num_threads=1, accuracy_unit="percent", continue_training=True)
    path = args.out / "cells.jsonl"
    done = {json.loads(line)["index"] for line in path.read_text().splitlines()} \
        if path.exists() else set()
    for i in indices:
        if i in done:
            continue
        start = time.perf_counter()
        val = {}
        for fidelity in args.fidelities:
            val[str(fidelity)] = evaluator(cells[i], fidelity=fidelity)["accuracy"]
        row = {"index": i, "arch": space.to_string(cells[i]), "val": val,
               "seconds": time.perf_counter() - start}
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"cell {i}: {val} ({row['seconds']:.0f} s)", flush=True)


def summarise(args) -> list[str]:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    rows = [json.loads(line) for line in (args.out / "cells.jsonl").read_text().splitlines()]
    full = args.max_epochs
    acc = {f: np.array([r["val"][str(f)] for r in rows]) for f in args.fidelities}
    boot = np.random.default_rng(0)
    lines = [f"{len(rows)} uniform NB201 cells ({args.channels} channels, one cell per stage), "
             f"CIFAR-10 subset ({args.per_class} JPEGs per class, 20% validation, "
             f"{args.resolution}x{args.resolution}), one continued run per cell read at "
             f"{args.fidelities} epochs (cosine over {args.max_epochs}), 1 thread, "
             f"{platform.platform()}.", "",
             f"Mean validation accuracy % (sd) by epochs: " + ", ".join(
                 f"{f}: {acc[f].mean():.2f} ({acc[f].std(ddof=1):.2f})"
                 for f in args.fidelities), "",
             f"| low budget | Spearman vs {full} epochs [95% CI] | Kendall [95% CI] | best "
             f"{full}-epoch cell in the low budget's top third |", "|---|---|---|---|"]
    for f in args.fidelities[:-1]:
        rho, tau = spearmanr(acc[f], acc[full]).statistic, kendalltau(acc[f], acc[full]).statistic
        rhos, taus = [], []
        with warnings.catch_warnings():  # a resample of tied cells has no correlation: NaN
            warnings.simplefilter("ignore")
            for _ in range(2000):
                idx = boot.integers(0, len(rows), len(rows))
                rhos.append(spearmanr(acc[f][idx], acc[full][idx]).statistic)
                taus.append(kendalltau(acc[f][idx], acc[full][idx]).statistic)
        best = int(np.argmax(acc[full]))
        rank = int((acc[f] > acc[f][best]).sum())  # cells ahead of it at the low budget
        lines.append(f"| {f} | {rho:.3f} [{np.nanpercentile(rhos, 2.5):.3f}, "
                     f"{np.nanpercentile(rhos, 97.5):.3f}] | {tau:.3f} "
                     f"[{np.nanpercentile(taus, 2.5):.3f}, {np.nanpercentile(taus, 97.5):.3f}]"
                     f" | {'yes' if rank < len(rows) / 3 else 'no'} (rank {rank + 1} of "
                     f"{len(rows)}) |")
    return lines


def main(argv: list[str] | None = None) -> None:
    from lightning_nas.data.base import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell draw")
    parser.add_argument("--fidelities", type=int, nargs="+", default=[1, 3, 9])
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--shard", default=None, help="K/N: train every N-th cell from K")
    parser.add_argument("--accelerator", default="cpu",
                        help="Lightning accelerator of the runs (gpu on a GPU machine)")
    parser.add_argument("--data", default=str(shared_data_dir() / "cifar10" / "cifar10_jpg.zip"))
    parser.add_argument("--out", type=Path,
                        default=Path("runs/fidelity_correlation_cifar10_subset"))
    args = parser.parse_args(argv)
    args.fidelities = sorted(args.fidelities)
    args.max_epochs = args.fidelities[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        train_cells(args, list(range(k, args.cells, n)))
        return
    train_cells(args, list(range(args.cells)))
    lines = summarise(args)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "config.json").write_text(json.dumps(
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
