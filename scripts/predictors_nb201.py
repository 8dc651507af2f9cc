"""Accuracy predictors on NAS-Bench-201: rank correlation on held-out cells vs training size.

For every seed, ``max(--sizes)`` training cells and ``--test`` held-out cells are drawn
uniformly without overlap from the 15,625 cells of ``<shared>/nb201/nb201_accuracy.csv``;
each predictor of :mod:`lightning_nas.estimation.predictors` is trained on the first n
training cells (n in ``--sizes``; nested, so a larger n adds cells) to predict ``--target``
(default the benchmark's CIFAR-10 validation accuracy, the search metric) and scored on the
held-out cells by Kendall tau and Spearman rho (mean +- std over seeds), beside the
parameter-count baseline (rank by the number of parameters of the built network, no
training). Also reported: the fraction of held-out cells inside the predicted 95% interval
(mean +- 1.96 std) and the fit time.

Usage::

    python scripts/predictors_nb201.py --seeds 5 --out runs/predictors_nb201
    python scripts/predictors_nb201.py --seeds 2 --sizes 50 100 --models mlp/one_hot
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from script_results import cpu_model, write_results  # scripts/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = {
    "mlp/one_hot": ("mlp_ensemble", "one_hot"),
    "mlp/one_hot+path": ("mlp_ensemble", "one_hot+path"),
    "gbm/one_hot": ("gradient_boosting", "one_hot"),
    "gbm/one_hot+path": ("gradient_boosting", "one_hot+path"),
    "gp/one_hot": ("gaussian_process", "one_hot"),
    "gp/one_hot+path": ("gaussian_process", "one_hot+path"),
}


def parse_args(argv=None) -> argparse.Namespace:
    from lightning_nas.data.base import shared_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--test", type=int, default=1000, help="held-out cells per seed")
    p.add_argument("--target", default="cifar10valid_val_200ep")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--zc", default=None,
                   help="zero-cost scores (scores.jsonl of scripts/zero_cost_recent_nb201.py): "
                        "cells are drawn among the scored ones, and every model also runs "
                        "with the scores appended to its encoding (label +zc)")
    p.add_argument("--zc-proxies", nargs="+", default=None,
                   help="the proxies used as features (default: all in the file)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_accuracy.csv"))
    p.add_argument("--out", default="runs/predictors_nb201")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import torch
    from scipy.stats import kendalltau, spearmanr

    from lightning_nas.estimation.predictors import ArchPredictor, encode, make_predictor
    from lightning_nas.spaces.nb201 import NB201Space

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with open(args.table, newline="") as f:
        rows = list(csv.DictReader(f))
    space = NB201Space()
    zc_table = None
    if args.zc:
        from lightning_nas.search.zero_cost_evaluator import ScoreTable

        zc_table = ScoreTable(space, args.zc, proxies=args.zc_proxies)
        scored = {a.digest for a in zc_table.candidates()}
        rows = [r for r in rows if space.parse(r["arch_str"]).digest in scored]
        if len(rows) < max(args.sizes) + args.test:
            raise SystemExit(f"{args.zc} scores {len(rows)} cells; need max(--sizes) + --test "
                             f"= {max(args.sizes) + args.test}")
    strings = [r["arch_str"] for r in rows]
    target = np.array([float(r[args.target]) for r in rows])
    params_cache: dict[int, int] = {}

    def n_params(i: int) -> int:
        if i not in params_cache:
            params_cache[i] = space.count_params(space.parse(strings[i]))
        return params_cache[i]

    results: dict[str, dict[int, dict[str, list[float]]]] = {}
    features: dict[tuple[int, str], np.ndarray] = {}
    start = time.time()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(rows))
        train_idx, test_idx = perm[: max(args.sizes)], perm[max(args.sizes):
                                                           max(args.sizes) + args.test]
        test_y = target[test_idx]
        archs = {i: space.parse(strings[i]) for i in np.concatenate([train_idx, test_idx])}

        def feats(idx, encoding):
            missing = [i for i in idx if (i, encoding) not in features]
            if missing:
                enc = encode(space, [archs[i] for i in missing], encoding)
                for i, row in zip(missing, enc):
                    features[i, encoding] = row
            return np.stack([features[i, encoding] for i in idx])

        base = np.array([n_params(i) for i in test_idx], float)
        entry = results.setdefault("params (baseline)", {})
        for n in args.sizes:
            e = entry.setdefault(n, {"kendall": [], "spearman": [], "coverage95": [],
                                     "fit_seconds": []})
            e["kendall"].append(float(kendalltau(base, test_y).statistic))
            e["spearman"].append(float(spearmanr(base, test_y).statistic))
        runs = [(label, False) for label in args.models]
        if zc_table is not None:
            runs += [(label, True) for label in args.models]
            runs.append(("zc only (gbm)", True))
        for label, with_zc in runs:
            kind, encoding = MODELS.get(label, ("gradient_boosting", None))
            for n in args.sizes:
                idx = train_idx[:n]
                model = make_predictor(kind, seed=seed)
                t0 = time.perf_counter()
                if with_zc:  # ArchPredictor: encoding + zero-cost scores scaled on the train set
                    pred_model = ArchPredictor(space, model, encoding=encoding or "one_hot",
                                               zero_cost=zc_table)
                    train_x = pred_model.features([archs[i] for i in idx], fit_scaling=True)
                    test_x = pred_model.features([archs[i] for i in test_idx])
                    if encoding is None:  # the scores alone
                        width = train_x.shape[1] - len(pred_model.zero_cost_proxies)
                        train_x, test_x = train_x[:, width:], test_x[:, width:]
                    model.fit(train_x, target[idx])
                else:
                    test_x = feats(test_idx, encoding)
                    model.fit(feats(idx, encoding), target[idx])
                fit_s = time.perf_counter() - t0
                pred = model.predict(test_x)
                if with_zc and encoding is not None:
                    label_n = label + "+zc"
                else:
                    label_n = label
                e = results.setdefault(label_n, {}).setdefault(
                    n, {"kendall": [], "spearman": [], "coverage95": [], "fit_seconds": []})
                e["kendall"].append(float(kendalltau(pred.mean, test_y).statistic))
                e["spearman"].append(float(spearmanr(pred.mean, test_y).statistic))
                e["coverage95"].append(float(np.mean(np.abs(pred.mean - test_y)
                                                     <= 1.96 * pred.std)))
                e["fit_seconds"].append(fit_s)
                print(f"seed {seed} {label_n} n={n}: tau {e['kendall'][-1]:.3f} rho "
                      f"{e['spearman'][-1]:.3f} ({fit_s:.1f}s, {time.time() - start:.0f}s)",
                      flush=True)
    summary = {label: {str(n): {k: [float(np.mean(v)), float(np.std(v))] if v else None
                                for k, v in e.items()} for n, e in by_n.items()}
               for label, by_n in results.items()}
    res = {"target": args.target, "sizes": args.sizes, "zc": args.zc,
           "zc_proxies": None if zc_table is None else list(zc_table.proxies),
           "cells_drawn_from": len(rows), "seeds": args.seeds,
           "test_cells": args.test, "summary": summary, "raw": {
               label: {str(n): e for n, e in by_n.items()} for label, by_n in results.items()},
           "machine": {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                       "cores_visible": os.cpu_count()},
           "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}
    write_results(args.out, res, markdown(res))
    return res



def markdown(res: dict) -> str:
    sizes = res["sizes"]
    head = " | ".join(f"n={n}" for n in sizes)
    lines = [f"# Accuracy predictors on NAS-Bench-201 ({res['target']})", "",
             f"Held-out cells: {res['test_cells']} per seed; mean +- std over {res['seeds']} "
             f"seeds; machine {res['machine']['cpu']}, {res['machine']['threads']} thread.", ""]
    if res.get("zc"):
        lines += [f"Cells drawn among the {res['cells_drawn_from']} with zero-cost scores in "
                  f"{res['zc']}; +zc: the encoding plus the scores {res['zc_proxies']} "
                  "(signed log, standardised on the training cells); 'zc only (gbm)': "
                  "gradient boosting on the scores alone.", ""]
    for metric, title in (("kendall", "Kendall tau"), ("spearman", "Spearman rho"),
                          ("coverage95", "95% interval coverage"),
                          ("fit_seconds", "fit seconds")):
        lines += [f"## {title}", "", f"| predictor | {head} |",
                  "|---|" + "---|" * len(sizes)]
        for label, by_n in res["summary"].items():
            cells = []
            for n in sizes:
                v = by_n[str(n)][metric]
                cells.append("-" if v is None else f"{v[0]:.3f} +- {v[1]:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
