"""ZiCo, SWAP, Zen-score and AZ-NAS on NAS-Bench-201: rank correlation with CIFAR-10 test
accuracy, beside the published values.

For a seeded uniform order of all 15,625 NB201 cells (a run cut short is a uniform sample),
every cell is built fresh (PyTorch default init seeded by its benchmark index) and scored by
:mod:`lightning_nas.estimation.zero_cost_recent` on one fixed CIFAR-10 training batch of
``--batch-size`` images (read in place from ``<shared>/cifar10/cifar10_jpg.zip``):

* ``zico`` on two halves of the batch (N = 2 batches);
* ``swap`` on the batch (one activation pattern per ReLU unit over its images);
* ``zen`` on a Gaussian batch of the same shape (data-free, seeded by the cell index);
* ``az_*_cifar`` (in the report): the four AZ-NAS proxies on that CIFAR-10 batch.

A second pass (``--passes protocol``, journal ``aznas_protocol_b<B>.jsonl``) scores the same
networks with the AZ-NAS authors' NB201 protocol, which feeds AZ-NAS a Gaussian N(0, 1) batch
(``--az-batch-size``; they use 64, the default here is 16 for CPU time), plus data-free
SynFlow. The report gives every proxy, the AZ-NAS aggregate over the scored cells (a ranking
of a population: sum of log(rank/N)) for both inputs, log-rank ensembles of AZ-NAS + ZiCo +
SWAP (+ SynFlow), and a weighted log-rank sum whose weights are chosen on one seeded half of
the cells and reported on the other half (and cross-fitted over all cells).

Spearman rho and Kendall tau against ``cifar10_test_200ep`` with 95% bootstrap intervals
(``--bootstrap`` resamples of the cells). Scores are appended to ``<out>/scores.jsonl`` as
they come (rerun with the same arguments to resume); ``--report-only`` writes
``results.json`` / ``results.md`` from the journal.

Usage::

    OMP_NUM_THREADS=1 python scripts/zero_cost_recent_nb201.py --n 3000 --out runs/zc_recent
    OMP_NUM_THREADS=1 python scripts/zero_cost_recent_nb201.py --n 3000 --passes protocol \
        --az-batch-size 64 --out runs/zc_recent     # the authors' batch
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
AZ = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
#: Published Spearman rho vs NB201 CIFAR-10 test accuracy over all cells, as quoted in issue
#: 13 (AZ-NAS 0.913, SWAP 0.81, ZiCo 0.78; Zen-score: none quoted; SynFlow 0.74, Abdelfattah
#: et al. 2021, Table 2).
PUBLISHED = {"zico": 0.78, "swap": 0.81, "zen": None, "synflow": 0.74, "az_nas": 0.913}
#: Log-rank ensembles; ``az_nas`` is the paper's, the others were declared after a 62-cell
#: pilot (scores.jsonl's first cells) showed the per-proxy correlations.
ENSEMBLES = {"az_nas": AZ,
             "az_nas_cifar": tuple(f"{p}_cifar" for p in AZ),
             "az_nas+zico+swap": (*AZ, "zico", "swap"),
             "az_nas+zico+swap+synflow": (*AZ, "zico", "swap", "synflow")}
#: Members of the weighted log-rank sum (weights chosen on a labelled half of the cells).
WEIGHTED_MEMBERS = (*AZ, "zico", "swap", "synflow", "zen")
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


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
    p.add_argument("--az-batch-size", type=int, default=16,
                   help="Gaussian batch of the AZ-NAS protocol pass (the authors use 64; 16 "
                        "here, as the main pass, for CPU time)")
    p.add_argument("--passes", nargs="+", default=["main", "protocol"],
                   choices=["main", "protocol"],
                   help="main: every proxy on the CIFAR batch (scores.jsonl); protocol: AZ-NAS "
                        "on a Gaussian batch + SynFlow (aznas_protocol_b<batch>.jsonl)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--report-out", default=None,
                   help="folder for results.json / results.md (default: --out, where the "
                        "journals are)")
    p.add_argument("--bootstrap", type=int, default=1000)
    return p.parse_args(argv)


def _timed(seconds: dict, key: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall time added to ``seconds[key]``."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds[key] = time.perf_counter() - t0
    return result


def _journal_pass(journal: Path, cells: list[str], table, seed: int, label: str,
                  score, extra: dict | None = None) -> None:
    """Score every cell of ``cells`` not yet in ``journal`` (resumable): its network built
    with the per-cell seed ``seed * 1_000_003 + index`` (the same network in every pass, in
    any order), then ``score(net, index) -> (scores, seconds)``; one JSON line per cell."""
    import torch

    from lightning_nas.spaces.nb201 import NB201Space

    done = scored_cells(journal)
    space = NB201Space()
    start, n_new = time.time(), 0
    with journal.open("a") as f:
        for position, arch_str in enumerate(cells):
            if arch_str in done:
                continue
            index = table[arch_str]["index"]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1_000_003 + index)  # per-cell init, any order
                net = space.build(space.parse(arch_str))
            scores, seconds = score(net, index)
            f.write(json.dumps({"position": position, "index": index, "arch_str": arch_str,
                                "scores": scores, "seconds": seconds, **(extra or {}),
                                TARGET: table[arch_str][TARGET]}) + "\n")
            f.flush()
            n_new += 1
            if n_new % 25 == 1:
                print(f"[{label}{position + 1}/{len(cells)}] {time.time() - start:.0f}s, "
                      f"{sum(seconds.values()):.2f}s/cell", flush=True)


def score_cells(args, cells: list[str], table) -> None:
    import torch

    from lightning_nas.estimation import zero_cost_recent as zr

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, files = cifar_batch(args.data, args.batch_size, args.seed)
    (out / "batch.json").write_text(json.dumps({"files": files, "seed": args.seed}, indent=1))

    def score(net, index):
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        seconds, scores = {}, {}
        scores["zico"] = _timed(seconds, "zico", zr.zico, net, x, y)
        scores["swap"] = _timed(seconds, "swap", zr.swap, net, x)
        t0 = time.perf_counter()
        gauss = torch.randn(x.shape, generator=gen)
        scores["zen"] = zr.zen_score(net, gauss, generator=gen)
        seconds["zen"] = time.perf_counter() - t0
        scores.update(_timed(seconds, "az_nas", zr.az_nas, net, x, generator=gen))
        return scores, seconds

    _journal_pass(out / "scores.jsonl", cells, table, args.seed, "", score)


def score_protocol(args, cells: list[str], table) -> None:
    """The AZ-NAS protocol pass (``<out>/aznas_protocol.jsonl``): the four AZ-NAS proxies on
    a Gaussian N(0, 1) batch of ``--az-batch-size`` images (the authors' NB201 code feeds
    random inputs to AZ-NAS, batch 64; real images only to ZiCo, SNIP, GraSP, TE-NAS and
    GradSign), Kaiming fan-in init, and data-free SynFlow, for the same cells, networks and
    seeds as the main pass."""
    import torch

    from lightning_nas.estimation import zero_cost as z
    from lightning_nas.estimation import zero_cost_recent as zr

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def score(net, index):
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + index + 7)
        seconds, scores = {}, {}
        t0 = time.perf_counter()
        gauss = torch.randn((args.az_batch_size, 3, 32, 32), generator=gen)
        scores.update(zr.az_nas(net, gauss, generator=gen))
        seconds["az_nas"] = time.perf_counter() - t0
        scores["synflow"] = _timed(seconds, "synflow", z.synflow, net, (3, 32, 32))
        return scores, seconds

    _journal_pass(out / f"aznas_protocol_b{args.az_batch_size}.jsonl", cells, table,
                  args.seed, "protocol ", score, {"az_batch_size": args.az_batch_size})


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


def _journal(path: Path) -> dict[str, dict]:
    """arch_str -> first complete record of a JSON-lines journal (empty if absent)."""
    unique: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            unique.setdefault(r["arch_str"], r)
    return unique


def _spearman(score, target) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(_clean(score), np.asarray(target, float)).statistic)


def fit_weights(logranks: dict[str, np.ndarray], target: np.ndarray, idx: np.ndarray,
                grid=WEIGHT_GRID, sweeps: int = 3) -> dict[str, float]:
    """Weights of the weighted log-rank sum chosen on the cells ``idx`` only: coordinate
    ascent of Spearman rho over ``grid`` per proxy, from all weights 1, ``sweeps`` passes in
    a fixed order (deterministic)."""
    names = list(logranks)
    mat = np.stack([logranks[n][idx] for n in names], axis=1)
    w = np.ones(len(names))
    best = _spearman(mat @ w, target[idx])
    for _ in range(sweeps):
        changed = False
        for k in range(len(names)):
            for value in grid:
                trial = w.copy()
                trial[k] = value
                if not trial.any():
                    continue
                rho = _spearman(mat @ trial, target[idx])
                if rho > best + 1e-9:
                    best, w, changed = rho, trial, True
        if not changed:
            break
    return {n: float(v) for n, v in zip(names, w)}


def analyse(args) -> dict:
    from lightning_nas.estimation.zero_cost_recent import az_nas_aggregate

    out = Path(args.out)
    main_pass = _journal(out / "scores.jsonl")
    protocol = _journal(out / f"aznas_protocol_b{args.az_batch_size}.jsonl")
    cells = sorted(main_pass, key=lambda a: main_pass[a]["position"])
    if protocol:
        cells = [a for a in cells if a in protocol]
    target = np.asarray([main_pass[a][TARGET] for a in cells], float)
    scores: dict[str, list[float]] = {p: [main_pass[a]["scores"][p] for a in cells]
                                      for p in ("zico", "swap", "zen")}
    for p in AZ:  # the main pass's AZ-NAS: CIFAR-10 images as input
        scores[f"{p}_cifar"] = [main_pass[a]["scores"][p] for a in cells]
    if protocol:
        for p in (*AZ, "synflow"):
            scores[p] = [protocol[a]["scores"][p] for a in cells]
    ensembles = {name: members for name, members in ENSEMBLES.items()
                 if all(m in scores for m in members)}
    for name, members in ensembles.items():
        scores[name] = list(az_nas_aggregate(scores, members))
    rows = {}
    for k, (name, values) in enumerate(scores.items()):
        rows[name] = correlations(values, target, args.bootstrap, args.seed + k)
        rows[name]["published_spearman"] = PUBLISHED.get(name)
        rows[name]["non_finite"] = int((~np.isfinite(np.asarray(values, float))).sum())
    res = {"n_cells": len(cells), "rows": rows, "ensembles": ensembles}
    if protocol and len(cells) >= 20:
        # Weighted log-rank sum of every proxy: weights chosen on one half of the cells
        # (seeded split), Spearman on the other half; and cross-fitted (each half scored
        # with the weights chosen on the other half) over all cells. Ranks need no labels,
        # so they are taken over all cells; only the weights see accuracies.
        members = WEIGHTED_MEMBERS
        n = len(cells)
        logranks = {m: az_nas_aggregate(scores, [m]) for m in members}
        order = np.random.default_rng(args.seed).permutation(n)
        halves = (np.sort(order[: n // 2]), np.sort(order[n // 2:]))
        fitted = [fit_weights(logranks, target, h) for h in halves]
        crossfit = np.zeros(n)
        for (train, test), w in zip((halves, halves[::-1]), fitted):
            crossfit[test] = sum(w[m] * logranks[m][test] for m in members)
        heldout = halves[1]
        held_scores = sum(fitted[0][m] * logranks[m][heldout] for m in members)
        res["weighted"] = {
            "members": list(members), "grid": list(WEIGHT_GRID),
            "weights_fit_on_half_a": fitted[0], "weights_fit_on_half_b": fitted[1],
            "half_a_spearman_in_sample": _spearman(
                sum(fitted[0][m] * logranks[m][halves[0]] for m in members),
                target[halves[0]]),
            "held_out_half_b": correlations(held_scores, target[heldout], args.bootstrap,
                                            args.seed + 101) | {"n_cells": len(heldout)},
            "cross_fitted_all": correlations(crossfit, target, args.bootstrap,
                                             args.seed + 102) | {"n_cells": n},
        }
    secs: dict[str, list[float]] = {}
    for a in cells:
        for k, v in main_pass[a]["seconds"].items():
            secs.setdefault(k if k != "az_nas" else "az_nas (cifar)", []).append(v)
        for k, v in (protocol.get(a, {}).get("seconds") or {}).items():
            secs.setdefault(k, []).append(v)
    res["seconds_per_cell"] = {k: float(np.mean(v)) for k, v in secs.items()}
    return res


def _fmt(r: dict) -> str:
    return (f"{r['spearman']:.3f} [{r['spearman_ci95'][0]:.3f}, {r['spearman_ci95'][1]:.3f}] | "
            f"{r['kendall']:.3f} [{r['kendall_ci95'][0]:.3f}, {r['kendall_ci95'][1]:.3f}]")


def markdown(res: dict, args) -> str:
    lines = [f"Zero-cost proxies on {res['n_cells']} NB201 cells (seeded uniform sample), "
             "rank correlation with CIFAR-10 test accuracy (200 epochs), 95% bootstrap "
             f"intervals over cells ({args.bootstrap} resamples). ZiCo, SWAP, Zen and the "
             f"`_cifar` AZ-NAS rows: one CIFAR-10 training batch of {args.batch_size} "
             "(normalised); AZ-NAS rows without suffix: the authors' NB201 protocol, a "
             f"Gaussian N(0, 1) batch (here of {args.az_batch_size}; they use 64), Kaiming "
             "fan-in init, BN in train mode; SynFlow: all-ones input, BN removed, float64.",
             "", "| proxy | Spearman rho [95% CI] | Kendall tau [95% CI] | published rho | "
             "non-finite |", "|---|---:|---:|---:|---:|"]
    for name, r in res["rows"].items():
        pub = r["published_spearman"]
        lines.append(f"| {name} | {_fmt(r)} | {'-' if pub is None else f'{pub:.3f}'} | "
                     f"{r['non_finite']} |")
    lines += ["", "Ensembles (sum of log(rank/N) over the members, AZ-NAS's aggregation): "
              + "; ".join(f"`{k}` = {' + '.join(v)}" for k, v in res["ensembles"].items())
              + "."]
    if "weighted" in res:
        w = res["weighted"]
        lines += ["", "Weighted log-rank sum `sum_m w_m log(rank_m/N)` over "
                  f"{', '.join(w['members'])}; weights from the grid {w['grid']} by coordinate "
                  "ascent of Spearman rho on one seeded half of the cells, reported on the "
                  "other half (and cross-fitted: each half scored with the weights chosen on "
                  "the other half, all cells):", "",
                  "| weighted log-rank | n cells | Spearman rho [95% CI] | Kendall tau [95% CI] |",
                  "|---|---:|---:|---:|",
                  f"| held-out half (weights from the other half) | "
                  f"{w['held_out_half_b']['n_cells']} | {_fmt(w['held_out_half_b'])} |",
                  f"| cross-fitted, all cells | {w['cross_fitted_all']['n_cells']} | "
                  f"{_fmt(w['cross_fitted_all'])} |", "",
                  f"Weights chosen on half A: {w['weights_fit_on_half_a']} (in-sample rho "
                  f"{w['half_a_spearman_in_sample']:.3f}); on half B: "
                  f"{w['weights_fit_on_half_b']}. The intervals resample cells with the "
                  "weights fixed (they leave out the variance of the weight choice)."]
    secs = ", ".join(f"{k} {v:.2f}" for k, v in res["seconds_per_cell"].items())
    lines += ["", f"Seconds per cell (mean, 1 thread, shared 2-core machine): {secs}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not args.report_only:
        table = load_table(args.table)
        everything = sorted(table, key=lambda s: table[s]["index"])
        cells = random.Random(args.seed).sample(everything, min(args.n, len(everything)))
        if "main" in args.passes:
            score_cells(args, cells, table)
        if "protocol" in args.passes:
            score_protocol(args, cells, table)
    res = analyse(args)
    res.update({"config": vars(args), "machine": machine(),
                "published_note": "published rho as quoted in issue 13 / the papers' NB201 "
                                  "CIFAR-10 tables (all 15,625 cells)"})
    write_results(args.report_out or args.out, res, markdown(res, args))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
