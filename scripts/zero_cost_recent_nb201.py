"""ZiCo, SWAP, Zen-score and AZ-NAS on NAS-Bench-201: rank correlation with CIFAR-10 test
accuracy, beside the published values.

For a seeded uniform order of all 15,625 NB201 cells (a run cut short is a uniform sample),
every cell is built fresh (PyTorch default init seeded by its benchmark index) and scored by
:mod:`lightning_nas.estimation.zero_cost_recent` on one fixed CIFAR-10 training batch of
``--batch-size`` images (read in place from ``<shared>/cifar10/cifar10_jpg.zip``):

* ``zico`` on two halves of the batch (N = 2 batches);
* ``swap`` on the batch (one activation pattern per ReLU unit over its images);
* ``zen`` on a Gaussian batch of the same shape (data-free, seeded by the cell index);
* ``az_expressivity``, ``az_progressivity``, ``az_trainability``, ``az_complexity`` on
  the batch, then the AZ-NAS aggregate over the scored cells (it is a ranking of a
  population), and the same aggregate over the four AZ-NAS proxies + ZiCo + SWAP
  (declared before any result was seen).

Spearman rho and Kendall tau against ``cifar10_test_200ep`` with 95% bootstrap intervals
(``--bootstrap`` resamples of the cells). Scores are appended to ``<out>/scores.jsonl`` as
they come (rerun with the same arguments to resume); ``--report-only`` writes
``results.json`` / ``results.md`` from the journal.

Usage::

    OMP_NUM_THREADS=1 python scripts/zero_cost_recent_nb201.py --n 3000 --out runs/zc_recent
    python scripts/zero_cost_recent_nb201.py --report-only --out runs/zc_recent
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from script_results import write_results  # noqa: E402
from zero_cost_nb201 import (  # noqa: E402
    TARGET,
    cifar_batch,
    load_table,
    machine,
    scored_cells,
)

PROXIES = ("zico", "swap", "zen", "az_expressivity", "az_progressivity", "az_trainability",
           "az_complexity")
#: Published Spearman rho vs NB201 CIFAR-10 test accuracy over all cells, as quoted in issue
#: 13 (AZ-NAS 0.913, SWAP 0.81, ZiCo 0.78; Zen-score: none quoted).
PUBLISHED = {"zico": 0.78, "swap": 0.81, "zen": None, "az_nas": 0.913}
ENSEMBLES = {"az_nas": ("az_expressivity", "az_progressivity", "az_trainability",
                        "az_complexity"),
             "az_nas+zico+swap": ("az_expressivity", "az_progressivity", "az_trainability",
                                  "az_complexity", "zico", "swap")}


def parse_args(argv=None) -> argparse.Namespace:
    from lightning_nas.data.base import shared_data_dir

    shared = shared_data_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="cells to score (of 15,625)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(shared / "cifar10" / "cifar10_jpg.zip"))
    p.add_argument("--table", default=str(shared / "nb201" / "nb201_accuracy.csv"))
    p.add_argument("--out", default="runs/zero_cost_recent_nb201")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000)
    return p.parse_args(argv)


def score_cells(args, cells: list[str], table) -> None:
    import torch

    from lightning_nas.estimation import zero_cost_recent as zr
    from lightning_nas.spaces.nb201 import NB201Space

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "scores.jsonl"
    done = scored_cells(journal)
    x, y, files = cifar_batch(args.data, args.batch_size, args.seed)
    (out / "batch.json").write_text(json.dumps({"files": files, "seed": args.seed}, indent=1))
    space = NB201Space()
    start, n_new = time.time(), 0
    with journal.open("a") as f:
        for position, arch_str in enumerate(cells):
            if arch_str in done:
                continue
            index = table[arch_str]["index"]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed * 1_000_003 + index)  # per-cell init, any order
                net = space.build(space.parse(arch_str))
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
            seconds, scores = {}, {}
            t0 = time.perf_counter()
            scores["zico"] = zr.zico(net, x, y)
            seconds["zico"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            scores["swap"] = zr.swap(net, x)
            seconds["swap"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            gauss = torch.randn(x.shape, generator=gen)
            scores["zen"] = zr.zen_score(net, gauss, generator=gen)
            seconds["zen"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            scores.update(zr.az_nas(net, x, generator=gen))
            seconds["az_nas"] = time.perf_counter() - t0
            f.write(json.dumps({"position": position, "index": index, "arch_str": arch_str,
                                "scores": scores, "seconds": seconds,
                                TARGET: table[arch_str][TARGET]}) + "\n")
            f.flush()
            n_new += 1
            if n_new % 25 == 1:
                print(f"[{position + 1}/{len(cells)}] {time.time() - start:.0f}s, "
                      f"{sum(seconds.values()):.2f}s/cell", flush=True)


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return np.where(np.isnan(a), -np.inf, a)


def correlations(score, target, reps: int, seed: int) -> dict[str, float]:
    """Spearman rho and Kendall tau (tau-b) with 95% percentile bootstrap intervals."""
    from scipy.stats import kendalltau, rankdata, spearmanr

    a, b = _clean(score), np.asarray(target, float)
    rho = float(spearmanr(a, b).statistic)
    tau = float(kendalltau(a, b).statistic)
    rng = np.random.default_rng(seed)
    rhos, taus = [], []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        ra, rb = rankdata(a[idx]), rankdata(b[idx])
        if ra.std() == 0 or rb.std() == 0:
            continue
        rhos.append(np.corrcoef(ra, rb)[0, 1])
        taus.append(kendalltau(a[idx], b[idx]).statistic)
    return {"spearman": rho, "spearman_ci95": [float(np.percentile(rhos, 2.5)),
                                               float(np.percentile(rhos, 97.5))],
            "kendall": tau, "kendall_ci95": [float(np.percentile(taus, 2.5)),
                                             float(np.percentile(taus, 97.5))]}


def analyse(args) -> dict:
    from lightning_nas.estimation.zero_cost_recent import az_nas_aggregate

    records = [json.loads(line) for line in (Path(args.out) / "scores.jsonl").read_text()
               .splitlines() if line.strip()]
    unique: dict[str, dict] = {}
    for r in records:
        unique.setdefault(r["arch_str"], r)
    records = sorted(unique.values(), key=lambda r: r["position"])
    target = [r[TARGET] for r in records]
    scores = {p: [r["scores"][p] for r in records] for p in PROXIES}
    for name, members in ENSEMBLES.items():
        scores[name] = list(az_nas_aggregate(scores, members))
    rows = {}
    for k, (name, values) in enumerate(scores.items()):
        rows[name] = correlations(values, target, args.bootstrap, args.seed + k)
        rows[name]["published_spearman"] = PUBLISHED.get(name)
        finite = np.isfinite(np.asarray(values, float))
        rows[name]["non_finite"] = int((~finite).sum())
    seconds = {k: float(np.mean([r["seconds"][k] for r in records]))
               for k in records[0]["seconds"]} if records else {}
    return {"n_cells": len(records), "rows": rows, "seconds_per_cell": seconds}


def markdown(res: dict, args) -> str:
    lines = [f"Zero-cost proxies on {res['n_cells']} NB201 cells (seeded uniform sample), "
             f"CIFAR-10 batch of {args.batch_size}, rank correlation with CIFAR-10 test "
             "accuracy (200 epochs), 95% bootstrap intervals over cells "
             f"({args.bootstrap} resamples).", "",
             "| proxy | Spearman rho [95% CI] | Kendall tau [95% CI] | published rho | "
             "non-finite |", "|---|---:|---:|---:|---:|"]
    for name, r in res["rows"].items():
        pub = r["published_spearman"]
        lines.append(f"| {name} | {r['spearman']:.3f} [{r['spearman_ci95'][0]:.3f}, "
                     f"{r['spearman_ci95'][1]:.3f}] | {r['kendall']:.3f} "
                     f"[{r['kendall_ci95'][0]:.3f}, {r['kendall_ci95'][1]:.3f}] | "
                     f"{'-' if pub is None else f'{pub:.3f}'} | {r['non_finite']} |")
    secs = ", ".join(f"{k} {v:.2f}" for k, v in res["seconds_per_cell"].items())
    lines += ["", f"Seconds per cell (mean, 1 thread): {secs}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not args.report_only:
        table = load_table(args.table)
        everything = sorted(table, key=lambda s: table[s]["index"])
        cells = random.Random(args.seed).sample(everything, min(args.n, len(everything)))
        score_cells(args, cells, table)
    res = analyse(args)
    res.update({"config": vars(args), "machine": machine(),
                "published_note": "published rho as quoted in issue 13 / the papers' NB201 "
                                  "CIFAR-10 tables (all 15,625 cells)"})
    write_results(args.out, res, markdown(res, args))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
