"""Zero-cost proxies on NAS-Bench-201: rank correlation with CIFAR-10 test accuracy.

Reproduces the NB201 / CIFAR-10 column of Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS" (ICLR 2021, Table 2: Spearman rho over all 15,625 cells) and Mellor et al.,
"NAS without training" (ICML 2021: NASWOT) on a seeded uniform sample of cells:

* every proxy of :mod:`lightning_nas.estimation.zero_cost` on one CIFAR-10 training
  minibatch of 64 images (the same batch for every cell) read in place from
  ``<shared>/cifar10/cifar10_jpg.zip``, each network freshly initialised with a seed derived
  from its benchmark index (PyTorch default init, as in the papers' code);
* Spearman rho against ``cifar10_test_200ep`` of ``<shared>/nb201/nb201_accuracy.csv``
  (95% bootstrap interval over cells), beside the published values;
* per-cell agreement with NASLib's published scores (``zero_cost_scores.csv``, cifar10 rows):
  Spearman between our score and theirs on the shared cells, and NASLib's own rho there;
* rank-sum combinations of proxies: a pre-declared one (synflow + naswot + jacob_cov) and the
  best subset chosen on one half of the cells and evaluated on the other half;
* a zero-cost pre-filter (Abdelfattah et al. Sec. 5): from pools of 100 scored cells,
  "train" the top 10 by the combined proxy (look up their validation accuracy), keep the best,
  report its test accuracy against 10 random cells of the same pool;
* seconds per cell: the shared pass of all proxies on every cell, and each proxy run
  standalone (its own copy and passes) on the first ``--time-standalone`` cells.

Order of the cells (``--order naslib-first``, default): the 725 cells NASLib scored (a
uniform sample of the space, shuffled with the seed) come first, then distinct uniform draws
from the rest, so a run cut short still has the largest overlap with NASLib. ``--order
uniform`` draws all ``--n`` cells uniformly.

Results are appended to ``<out>/scores.jsonl`` as they come (the run resumes from it when
restarted with the same arguments); ``<out>/results.json`` and ``<out>/results.md`` are
rewritten at the end (``--report-only`` rewrites them from the journal).

Usage::

    python scripts/zero_cost_nb201.py --n 1000 --threads 1 --out runs/zero_cost_nb201
    python scripts/zero_cost_nb201.py --n 20 --out /tmp/zc20     # timing pilot
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import platform
import random
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from script_results import write_results  # scripts/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Published Spearman rho on NB201 CIFAR-10 (Abdelfattah et al. 2021, Table 2, all 15,625
#: cells; NASWOT: Mellor et al. 2021, ~0.78 reported for N=128 on CIFAR-10).
PUBLISHED = {"grad_norm": 0.59, "snip": 0.60, "grasp": 0.51, "fisher": 0.36, "synflow": 0.74,
             "jacob_cov": 0.73, "naswot": 0.78, "params": None, "flops": None}
#: Our proxy -> NASLib's column in zero_cost_scores.csv.
NASLIB_COLUMN = {"grad_norm": "grad_norm", "snip": "snip", "grasp": "grasp", "fisher": "fisher",
                 "synflow": "synflow", "jacob_cov": "jacov", "naswot": "nwot",
                 "params": "params", "flops": "flops"}
COMBINATION = ("synflow", "naswot", "jacob_cov")  # pre-declared rank-sum combination
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
TARGET = "cifar10_test_200ep"
VALIDATION = "cifar10valid_val_200ep"


def parse_args(argv=None) -> argparse.Namespace:
    from lightning_nas.data.base import shared_data_dir

    shared = shared_data_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="number of cells to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--order", choices=("naslib-first", "uniform"), default="naslib-first")
    p.add_argument("--time-standalone", type=int, default=20,
                   help="time every proxy standalone on this many of the cells")
    p.add_argument("--data", default=str(shared / "cifar10" / "cifar10_jpg.zip"))
    p.add_argument("--table", default=str(shared / "nb201" / "nb201_accuracy.csv"))
    p.add_argument("--naslib", default=str(shared / "nb201" / "zero_cost_scores.csv"))
    p.add_argument("--out", default="runs/zero_cost_nb201")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
def load_table(path: str) -> dict[str, dict[str, float]]:
    with open(path, newline="") as f:
        return {row["arch_str"]: {"index": int(row["index"]), TARGET: float(row[TARGET]),
                                  VALIDATION: float(row[VALIDATION])}
                for row in csv.DictReader(f)}


def load_naslib(path: str) -> dict[str, dict[str, float]]:
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["dataset"] != "cifar10":
                continue
            out[row["arch_str"]] = {k: (float(v) if v not in ("", None) else math.nan)
                                    for k, v in row.items() if k not in ("dataset", "arch_str")}
    return out


def scored_cells(journal: Path) -> set[str]:
    """Arch strings already scored in a ``scores.jsonl`` journal (a line cut by a kill is
    skipped, so that cell is scored again)."""
    done: set[str] = set()
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                done.add(json.loads(line)["arch_str"])
            except (json.JSONDecodeError, KeyError):
                pass
    return done


def cifar_batch(path: str, batch_size: int, seed: int):
    """``batch_size`` training images drawn with ``seed`` from the zip: x (B, 3, 32, 32)
    normalised float32, y (B,) int64 (classes in sorted folder order)."""
    import torch
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist()
                       if n.lower().endswith((".jpg", ".png")) and n.split("/")[-3:-2] == ["train"])
        classes = sorted({n.split("/")[-2] for n in names})
        chosen = random.Random(seed).sample(names, batch_size)
        images, labels = [], []
        for name in chosen:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(classes.index(name.split("/")[-2]))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, 32, 32) in [0, 1]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.tensor(labels, dtype=torch.int64), chosen


def cell_order(args, table, naslib) -> list[str]:
    rng = random.Random(args.seed)
    everything = sorted(table, key=lambda s: table[s]["index"])
    if args.order == "uniform":
        return rng.sample(everything, args.n)
    first = sorted(s for s in naslib if s in table)
    rng.shuffle(first)
    first_set = set(first)
    rest = [s for s in everything if s not in first_set]
    rng.shuffle(rest)
    return (first + rest)[: args.n]


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores_visible": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# ---------------------------------------------------------------------------------------
def score_cells(args, cells, table) -> None:
    import torch

    from lightning_nas.estimation import zero_cost as zc
    from lightning_nas.spaces.nb201 import NB201Space

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "scores.jsonl"
    done = scored_cells(journal)
    x, y, files = cifar_batch(args.data, args.batch_size, args.seed)
    (out / "batch.json").write_text(json.dumps({"files": files, "seed": args.seed}, indent=1))
    x, y = x.to(args.device), y.to(args.device)
    space = NB201Space()
    names = [p for p in zc.PROXIES]
    standalone = {
        "grad_norm": lambda n: zc.grad_norm(n, x, y), "snip": lambda n: zc.snip(n, x, y),
        "grasp": lambda n: zc.grasp(n, x, y), "fisher": lambda n: zc.fisher(n, x, y),
        "synflow": lambda n: zc.synflow(n, x), "jacob_cov": lambda n: zc.jacob_cov(n, x),
        "naswot": lambda n: zc.naswot(n, x), "params": lambda n: zc.params(n),
        "flops": lambda n: zc.flops(n, x)}
    start = time.time()
    with journal.open("a") as f:
        for position, arch_str in enumerate(cells):
            if arch_str in done:
                continue
            index = table[arch_str]["index"]
            arch = space.parse(arch_str)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed * 1_000_003 + index)  # per-cell init, any order
                net = space.build(arch).to(args.device)
            t0 = time.perf_counter()
            scores = zc.compute_proxies(net, x, y, proxies=names)
            shared_s = time.perf_counter() - t0
            record = {"position": position, "index": index, "arch_str": arch_str,
                      "scores": scores, "seconds_shared": shared_s,
                      TARGET: table[arch_str][TARGET], VALIDATION: table[arch_str][VALIDATION]}
            if position < args.time_standalone:
                record["seconds_standalone"] = {}
                for name in names:
                    t0 = time.perf_counter()
                    standalone[name](net)
                    record["seconds_standalone"][name] = time.perf_counter() - t0
            f.write(json.dumps(record) + "\n")
            f.flush()
            if position % 25 == 0:
                print(f"[{position + 1}/{len(cells)}] {time.time() - start:.0f}s "
                      f"{shared_s:.2f}s/cell", flush=True)


# ---------------------------------------------------------------------------------------
def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a = np.where(np.isnan(np.asarray(a, float)), -np.inf, np.asarray(a, float))
    return float(spearmanr(a, b).statistic)


def _bootstrap(a, b, reps: int, seed: int) -> tuple[float, float]:
    from scipy.stats import rankdata

    a = np.where(np.isnan(np.asarray(a, float)), -np.inf, np.asarray(a, float))
    b = np.asarray(b, float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        ra, rb = rankdata(a[idx]), rankdata(b[idx])
        if ra.std() == 0 or rb.std() == 0:
            continue
        values.append(np.corrcoef(ra, rb)[0, 1])
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def analyse(args, naslib) -> dict:
    from lightning_nas.estimation.zero_cost import PROXIES, rank_combination

    records = [json.loads(line) for line in (Path(args.out) / "scores.jsonl").read_text()
               .splitlines() if line.strip()]
    records.sort(key=lambda r: r["position"])
    seen, unique = set(), []
    for r in records:
        if r["arch_str"] not in seen:
            seen.add(r["arch_str"])
            unique.append(r)
    records = unique
    n = len(records)
    acc = np.array([r[TARGET] for r in records])
    val = np.array([r[VALIDATION] for r in records])
    scores = {p: np.array([r["scores"][p] for r in records], float) for p in PROXIES}
    times = np.array([r["seconds_shared"] for r in records])
    timed = [r for r in records if "seconds_standalone" in r]
    rows = []
    for p in PROXIES:
        lo, hi = _bootstrap(scores[p], acc, args.bootstrap, args.seed)
        st = [r["seconds_standalone"][p] for r in timed]
        rows.append({"proxy": p, "spearman": _spearman(scores[p], acc), "ci95": [lo, hi],
                     "published": PUBLISHED[p], "nan": int(np.isnan(scores[p]).sum()),
                     "-inf": int(np.isneginf(scores[p]).sum()),
                     "seconds_standalone_mean": float(np.mean(st)) if st else None,
                     "seconds_standalone_std": float(np.std(st)) if st else None})
    # -- combinations --------------------------------------------------------------------
    singles = [p for p in PROXIES if p not in ("params", "flops")]
    combo = rank_combination(scores, COMBINATION)
    lo, hi = _bootstrap(combo, acc, args.bootstrap, args.seed)
    combos = {"predeclared": {"proxies": list(COMBINATION), "spearman": _spearman(combo, acc),
                              "ci95": [lo, hi]}}
    # best subset chosen on one half (by validation accuracy), evaluated on the other half
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(n)
    half_a, half_b = perm[: n // 2], perm[n // 2:]
    best, best_rho = None, -2.0
    for size in range(2, 5):
        for subset in itertools.combinations(singles + ["params", "flops"], size):
            sub = {p: scores[p][half_a] for p in subset}
            rho = _spearman(rank_combination(sub, subset), val[half_a])
            if rho > best_rho:
                best, best_rho = subset, rho
    held = {p: scores[p][half_b] for p in best}
    single_held = {p: _spearman(scores[p][half_b], acc[half_b]) for p in PROXIES}
    combos["selected_on_half"] = {
        "proxies": list(best), "selection_spearman_val": best_rho,
        "heldout_spearman": _spearman(rank_combination(held, best), acc[half_b]),
        "heldout_best_single": max(single_held.items(), key=lambda kv: kv[1]),
        "heldout_n": int(len(half_b))}
    # -- NASLib per cell -----------------------------------------------------------------
    shared = [i for i, r in enumerate(records) if r["arch_str"] in naslib]
    naslib_rows = []
    for p in PROXIES:
        col = NASLIB_COLUMN[p]
        idx = [i for i in shared if not math.isnan(naslib[records[i]["arch_str"]][col])]
        if len(idx) < 3:
            naslib_rows.append({"proxy": p, "n": len(idx)})
            continue
        theirs = np.array([naslib[records[i]["arch_str"]][col] for i in idx])
        ours = scores[p][idx]
        naslib_rows.append({
            "proxy": p, "n": len(idx), "ours_vs_naslib": _spearman(ours, theirs),
            "ours_vs_acc": _spearman(ours, acc[idx]),
            "naslib_vs_acc": _spearman(theirs, acc[idx])})
    # -- zero-cost pre-filter (Abdelfattah et al. Sec. 5) ---------------------------------
    prefilter = {}
    trials, pool_size, keep = 500, min(100, n), 10
    if n >= pool_size and pool_size > keep:
        rng = np.random.default_rng(args.seed + 1)
        picked_zc, picked_rand = [], []
        for _ in range(trials):
            pool = rng.choice(n, pool_size, replace=False)
            ranks = rank_combination({p: scores[p][pool] for p in COMBINATION}, COMBINATION)
            top = pool[np.argsort(-ranks, kind="stable")[:keep]]
            rand = rng.choice(pool, keep, replace=False)
            picked_zc.append(acc[top[np.argmax(val[top])]])
            picked_rand.append(acc[rand[np.argmax(val[rand])]])
        prefilter = {"trials": trials, "pool": pool_size, "trained": keep,
                     "proxy": "+".join(COMBINATION),
                     "zero_cost_top": [float(np.mean(picked_zc)), float(np.std(picked_zc))],
                     "random": [float(np.mean(picked_rand)), float(np.std(picked_rand))]}
    return {"n": n, "target": TARGET, "rows": rows, "combinations": combos,
            "naslib": naslib_rows, "prefilter": prefilter,
            "seconds_shared_per_cell": [float(times.mean()), float(times.std())],
            "seconds_total": float(times.sum()), "timed_standalone_cells": len(timed),
            "naslib_overlap": len(shared), "order": args.order, "seed": args.seed,
            "batch_size": args.batch_size, "machine": machine()}


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# Zero-cost proxies on NAS-Bench-201 (CIFAR-10), n = {res['n']} cells",
             "",
             f"Spearman rho against `{res['target']}` (95% bootstrap interval over cells); one "
             f"CIFAR-10 training batch of {res['batch_size']} images; seed {res['seed']}; "
             f"order {res['order']}. Time: one proxy run standalone (own copy and passes), "
             f"mean +- std over {res['timed_standalone_cells']} cells; all proxies in one "
             f"shared pass: {res['seconds_shared_per_cell'][0]:.2f} +- "
             f"{res['seconds_shared_per_cell'][1]:.2f} s/cell. Machine: {m['cpu']}, "
             f"{m['threads']} torch thread(s), torch {m['torch']}.", "",
             "| proxy | rho (ours) | 95% CI | published rho | s/cell standalone | NaN/-inf |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        pub = "-" if r["published"] is None else f"{r['published']:.2f}"
        sec = "-" if r["seconds_standalone_mean"] is None else \
            f"{r['seconds_standalone_mean']:.3f} +- {r['seconds_standalone_std']:.3f}"
        lines.append(f"| {r['proxy']} | {r['spearman']:.3f} | {r['ci95'][0]:.3f} .. "
                     f"{r['ci95'][1]:.3f} | {pub} | {sec} | {r['nan']}/{r['-inf']} |")
    c = res["combinations"]
    pre = c["predeclared"]
    lines += ["", "## Combinations (rank sum)", "",
              f"* pre-declared {' + '.join(pre['proxies'])}: rho = {pre['spearman']:.3f} "
              f"({pre['ci95'][0]:.3f} .. {pre['ci95'][1]:.3f}); best single proxy: "
              f"{max(r['spearman'] for r in res['rows']):.3f}",
              f"* best subset of size 2-4 chosen on a random half by validation accuracy: "
              f"{' + '.join(c['selected_on_half']['proxies'])}; on the other half "
              f"(n = {c['selected_on_half']['heldout_n']}) rho = "
              f"{c['selected_on_half']['heldout_spearman']:.3f} vs best single there "
              f"{c['selected_on_half']['heldout_best_single'][0]} "
              f"{c['selected_on_half']['heldout_best_single'][1]:.3f}"]
    lines += ["", f"## Per cell against NASLib's published scores ({res['naslib_overlap']} "
              "shared cells)", "",
              "| proxy | n | rho(ours, NASLib) | rho(ours, acc) | rho(NASLib, acc) |",
              "|---|---|---|---|---|"]
    for r in res["naslib"]:
        if "ours_vs_naslib" not in r:
            lines.append(f"| {r['proxy']} | {r['n']} | - | - | - |")
            continue
        lines.append(f"| {r['proxy']} | {r['n']} | {r['ours_vs_naslib']:.3f} | "
                     f"{r['ours_vs_acc']:.3f} | {r['naslib_vs_acc']:.3f} |")
    if res["prefilter"]:
        p = res["prefilter"]
        lines += ["", "## Zero-cost pre-filter", "",
                  f"{p['trials']} pools of {p['pool']} cells; train (look up validation "
                  f"accuracy of) {p['trained']} cells and keep the best; its CIFAR-10 test "
                  f"accuracy, mean +- std: top-{p['trained']} by {p['proxy']}: "
                  f"{p['zero_cost_top'][0]:.2f} +- {p['zero_cost_top'][1]:.2f}; "
                  f"{p['trained']} random: {p['random'][0]:.2f} +- {p['random'][1]:.2f}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    table = load_table(args.table)
    naslib = load_naslib(args.naslib)
    if not args.report_only:
        cells = cell_order(args, table, naslib)
        score_cells(args, cells, table)
    res = analyse(args, naslib)
    out = Path(args.out)
    res["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    write_results(out, res, markdown(res))
    return res


if __name__ == "__main__":
    main()
