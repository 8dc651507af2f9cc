"""Record real learning curves, then test learning-curve extrapolation and early stopping.

1. **Record** (skipped when the data file already holds every curve): ``--archs`` NB201
   cells drawn uniformly with ``--seed`` are trained on a CIFAR-10 subset read in place from
   ``<shared>/cifar10/cifar10_jpg.zip`` through :class:`ImageFolderDataModule`: 300 training
   images per class resized to 16x16, a stratified third of them held out for validation
   (2,000 train / 1,000 validation), 100 test images per class. Tiny networks
   (``NB201Space(channels=8, cells_per_stage=1)``), SGD lr 0.05 momentum 0.9 weight decay
   5e-4 at a constant learning rate, batch 64, random crop (padding 2) and flips, ``--epochs``
   epochs, one CPU thread. The validation accuracy after every epoch and the final test
   accuracy are saved to ``scripts/data/learning_curves_nb201_cifar16.json`` (small; written
   after every network so an interrupted run continues).
2. **Extrapolate**: from the first quarter of each curve (5 of 20 epochs) predict the final
   validation accuracy with :func:`lightning_nas.estimation.learning_curve.extrapolate`;
   report the error, the rank correlation with the true final accuracy, the coverage of the
   95% interval, against the naive predictor "the accuracy at the last observed epoch".
3. **Early stopping in a simulated random search** over the recorded curves (``--orders``
   random orders): each network is "trained" epoch by epoch; from epoch 5 on, the run is
   stopped when P(final > best final so far) < threshold (Domhan et al. 2015, Sec. 3.2), and
   the search records the predicted final accuracy for a stopped run. Reported per threshold:
   the fraction of epochs saved and the loss in the final validation accuracy of the selected
   network against training everything.

Usage::

    python scripts/learning_curves.py --archs 36 --epochs 20 --out runs/learning_curves
    python scripts/learning_curves.py --analyse-only      # re-analyse the recorded curves
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from script_results import write_results  # scripts/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_FILE = ROOT / "scripts" / "data" / "learning_curves_nb201_cifar16.json"


def parse_args(argv=None) -> argparse.Namespace:
    from lightning_nas.data.base import shared_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=36)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=200)
    p.add_argument("--data", default=str(shared_data_dir() / "cifar10" / "cifar10_jpg.zip"))
    p.add_argument("--curves", default=str(DATA_FILE), help="the recorded-curves JSON")
    p.add_argument("--out", default="runs/learning_curves")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--orders", type=int, default=200, help="random search orders simulated")
    p.add_argument("--fraction", type=float, default=0.25,
                   help="fraction of the epochs observed before the first prediction")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2])
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# 1. record
# ---------------------------------------------------------------------------------------
def make_config(args) -> dict:
    return {"space": {"channels": 8, "cells_per_stage": 1}, "image_size": 16,
            "train_per_class": args.train_per_class, "val_per_class": args.val_per_class,
            "test_per_class": 100,
            "optimizer": (f"SGD(lr={args.lr}, momentum=0.9, nesterov, weight_decay=5e-4)"
                          if args.optimizer == "sgd" else
                          f"Adam(lr={args.lr}, weight_decay=5e-4)") + ", constant lr",
            "batch_size": 64, "augment": "random crop (padding 2) + horizontal flip"}


def _load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {}


def record(args) -> dict:
    import torch
    import torch.nn.functional as F

    from lightning_nas.data.image_folder import ImageFolderDataModule
    from lightning_nas.spaces.nb201 import NB201Space

    torch.set_num_threads(args.threads)
    path = Path(args.curves)
    saved = _load(path)
    CONFIG = make_config(args)
    config = {**CONFIG, "epochs": args.epochs, "seed": args.seed,
              "data": "cifar10_jpg.zip (train/test folders)"}
    if saved and saved.get("config") != config:
        raise SystemExit(f"{path} was recorded with another configuration; pass --curves "
                         "<new file> or delete it")
    runs = saved.get("runs", [])
    space = NB201Space(num_classes=10, **CONFIG["space"])
    rng = random.Random(args.seed)
    archs = []
    while len(archs) < args.archs:  # distinct uniform draws
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    done = {r["arch"] for r in runs}
    todo = [a for a in archs if space.to_string(a) not in done]
    if not todo:
        return {"config": config, "runs": runs}
    per_class = CONFIG["train_per_class"] + CONFIG["val_per_class"]
    dm = ImageFolderDataModule(root=args.data, max_per_class_train=per_class,
                               max_per_class_test=CONFIG["test_per_class"], resize=16,
                               val_fraction=CONFIG["val_per_class"] / per_class, batch_size=64,
                               eval_batch_size=500, crop_padding=2, hflip=True, seed=args.seed)
    dm.setup("fit")
    val_loader, test_loader = dm.val_dataloader(), dm.test_dataloader()

    def accuracy(net, loader) -> float:
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in loader:
                x, y = dm.transform_batch(batch, train=False)
                correct += int((net(x).argmax(1) == y).sum())
                total += len(y)
        return correct / total

    for arch in todo:
        index = space.index(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed * 1_000_003 + index)
            net = space.build(arch)
        if args.optimizer == "sgd":
            opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                  weight_decay=5e-4)
        else:
            opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=5e-4)
        loader = dm.train_dataloader()
        curve, losses, seconds = [], [], []
        for epoch in range(args.epochs):
            start = time.perf_counter()
            loader.sampler.set_epoch(epoch)
            gen = torch.Generator().manual_seed(args.seed * 7919 + index * 101 + epoch)
            net.train()
            total = 0.0
            for batch in loader:
                x, y = dm.transform_batch(batch, train=True, generator=gen)
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(y)
            curve.append(accuracy(net, val_loader))
            losses.append(total / len(loader.sampler))
            seconds.append(time.perf_counter() - start)
        test = accuracy(net, test_loader)
        runs.append({"arch": space.to_string(arch), "index": index, "val_acc": curve,
                     "train_loss": losses, "test_acc": test, "epoch_seconds": seconds,
                     "params": sum(p.numel() for p in net.parameters())})
        payload = {"config": config, "machine": _machine(args.threads), "runs": runs}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=0, separators=(",", ":")) + "\n")
        tmp.replace(path)
        print(f"[{len(runs)}/{args.archs}] {space.to_string(arch)} val {curve[-1]:.3f} "
              f"test {test:.3f} {np.mean(seconds):.2f}s/epoch", flush=True)
    return {"config": config, "runs": runs}


def _machine(threads: int) -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": threads, "torch": torch.__version__,
            "cores_visible": os.cpu_count()}


# ---------------------------------------------------------------------------------------
# 2. + 3. analyse
# ---------------------------------------------------------------------------------------
def analyse(args, data: dict) -> dict:
    from scipy.stats import kendalltau, spearmanr

    from lightning_nas.estimation.learning_curve import extrapolate

    runs = data["runs"]
    T = data["config"]["epochs"]
    first = max(3, math.ceil(args.fraction * T))
    curves = [np.asarray(r["val_acc"], float) for r in runs]
    finals = np.array([c[-1] for c in curves])
    # every prediction the simulation can ask for: (curve, observed epochs k) for k >= first
    t0 = time.perf_counter()
    preds = {}
    for i, c in enumerate(curves):
        for k in range(first, T):
            preds[i, k] = extrapolate(c[:k], T)
    fit_seconds = (time.perf_counter() - t0) / max(len(preds), 1)

    def prediction_report(k: int) -> dict:
        mean = np.array([preds[i, k].mean for i in range(len(curves))])
        std = np.array([preds[i, k].std for i in range(len(curves))])
        last = np.array([c[k - 1] for c in curves])
        err = mean - finals
        return {
            "observed_epochs": k,
            "mae_points": float(100 * np.mean(np.abs(err))),
            "rmse_points": float(100 * np.sqrt(np.mean(err ** 2))),
            "bias_points": float(100 * np.mean(err)),
            "spearman": float(spearmanr(mean, finals).statistic),
            "kendall": float(kendalltau(mean, finals).statistic),
            "coverage95": float(np.mean(np.abs(err) <= 1.96 * std)),
            "mean_std_points": float(100 * np.mean(std)),
            "naive_last_value": {"mae_points": float(100 * np.mean(np.abs(last - finals))),
                                 "spearman": float(spearmanr(last, finals).statistic),
                                 "kendall": float(kendalltau(last, finals).statistic)}}

    prediction = [prediction_report(k) for k in sorted({first, max(first, T // 2)}) if k < T]

    # simulated random search with early stopping
    rng = np.random.default_rng(args.seed)
    orders = [rng.permutation(len(curves)) for _ in range(args.orders)]
    best_true = float(finals.max())
    sim = []
    for threshold in args.thresholds:
        saved, loss, hit, stops = [], [], [], []
        for order in orders:
            best = None
            epochs_used = 0
            results = {}
            n_stopped = 0
            for i in order:
                stopped_at = None
                if best is not None:
                    for k in range(first, T):
                        if preds[i, k].prob_greater(best) < threshold:
                            stopped_at = k
                            break
                if stopped_at is None:
                    epochs_used += T
                    results[i] = finals[i]
                    best = finals[i] if best is None else max(best, finals[i])
                else:
                    epochs_used += stopped_at
                    results[i] = preds[i, stopped_at].mean  # what the search sees
                    n_stopped += 1
            chosen = max(results, key=results.get)
            saved.append(1 - epochs_used / (len(curves) * T))
            loss.append(100 * (best_true - finals[chosen]))
            hit.append(finals[chosen] == best_true)
            stops.append(n_stopped)
        sim.append({"threshold": threshold,
                    "epochs_saved": [float(np.mean(saved)), float(np.std(saved))],
                    "loss_points": [float(np.mean(loss)), float(np.std(loss))],
                    "loss_max_points": float(np.max(loss)),
                    "found_best": float(np.mean(hit)),
                    "stopped_runs": [float(np.mean(stops)), float(np.std(stops))]})
    # baseline without extrapolation (curve comparison, as in Vizier's "performance curve"
    # rule, Golovin et al. 2017): stop at the first check when the run is below the
    # accuracy the best finished run had after the same number of epochs
    saved, loss, hit = [], [], []
    for order in orders:
        best_i, epochs_used, results = None, 0, {}
        for i in order:
            if best_i is not None and curves[i][first - 1] < curves[best_i][first - 1]:
                epochs_used += first
                results[i] = curves[i][first - 1]
                continue
            epochs_used += T
            results[i] = finals[i]
            if best_i is None or finals[i] > finals[best_i]:
                best_i = i
        chosen = max(results, key=results.get)
        saved.append(1 - epochs_used / (len(curves) * T))
        loss.append(100 * (best_true - finals[chosen]))
        hit.append(finals[chosen] == best_true)
    baseline = {"rule": f"stop after {first} epochs if below the best finished run then",
                "epochs_saved": [float(np.mean(saved)), float(np.std(saved))],
                "loss_points": [float(np.mean(loss)), float(np.std(loss))],
                "loss_max_points": float(np.max(loss)), "found_best": float(np.mean(hit))}
    epoch_seconds = [s for r in runs for s in r["epoch_seconds"]]
    return {"n_curves": len(curves), "epochs": T, "first_prediction_epoch": first,
            "final_val_acc": {"min": float(finals.min()), "max": best_true,
                              "mean": float(finals.mean()), "std": float(finals.std())},
            "test_vs_val_spearman": float(spearmanr([r["test_acc"] for r in runs],
                                                    finals).statistic),
            "prediction": prediction, "early_stopping": sim, "orders": args.orders,
            "curve_comparison_baseline": baseline,
            "seconds_per_extrapolation": fit_seconds,
            "epoch_seconds": [float(np.mean(epoch_seconds)), float(np.std(epoch_seconds))],
            "config": data["config"], "machine": data.get("machine")}


def _sizes(cfg: dict) -> str:
    if "val_per_class" in cfg:
        train, val = 10 * cfg["train_per_class"], 10 * cfg["val_per_class"]
    else:  # the first pilot: a held-out fraction of train_per_class
        val = int(10 * cfg["train_per_class"] * cfg["val_fraction"])
        train = 10 * cfg["train_per_class"] - val
    return f"{train:,} train / {val:,} validation images"


def markdown(res: dict) -> str:
    cfg = res["config"]
    m = res.get("machine") or {}
    f = res["final_val_acc"]
    lines = [f"# Learning-curve extrapolation on {res['n_curves']} recorded curves",
             "",
             f"NB201 cells (channels {cfg['space']['channels']}, {cfg['space']['cells_per_stage']}"
             f" cell/stage) trained {res['epochs']} epochs on CIFAR-10 at "
             f"{cfg['image_size']}x{cfg['image_size']} ({_sizes(cfg)}, {cfg['optimizer']}); "
             f"{res['epoch_seconds'][0]:.2f} +- {res['epoch_seconds'][1]:.2f} s per epoch on "
             f"{m.get('cpu', '?')} ({m.get('threads', '?')} thread). Final validation accuracy "
             f"{100 * f['min']:.1f}..{100 * f['max']:.1f}% (mean {100 * f['mean']:.1f}, std "
             f"{100 * f['std']:.1f}). One extrapolation (10 curve families): "
             f"{1000 * res['seconds_per_extrapolation']:.0f} ms.", "",
             "## Predicting the final validation accuracy", "",
             "| observed epochs | MAE (points) | RMSE | bias | Spearman | Kendall | 95% coverage |"
             " mean std | naive last value: MAE / Spearman / Kendall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in res["prediction"]:
        n = p["naive_last_value"]
        lines.append(f"| {p['observed_epochs']} of {res['epochs']} | {p['mae_points']:.2f} | "
                     f"{p['rmse_points']:.2f} | {p['bias_points']:+.2f} | {p['spearman']:.3f} | "
                     f"{p['kendall']:.3f} | {p['coverage95']:.2f} | {p['mean_std_points']:.2f} | "
                     f"{n['mae_points']:.2f} / {n['spearman']:.3f} / {n['kendall']:.3f} |")
    lines += ["", f"## Early stopping in a simulated random search ({res['orders']} random "
              f"orders of the {res['n_curves']} networks, first check after "
              f"{res['first_prediction_epoch']} epochs)", "",
              "| threshold P(beat best) | epochs saved | loss in selected final acc (points) |"
              " worst loss | found the best | runs stopped |",
              "|---|---|---|---|---|---|"]
    for s in res["early_stopping"]:
        lines.append(f"| {s['threshold']:.2f} | {100 * s['epochs_saved'][0]:.1f}% +- "
                     f"{100 * s['epochs_saved'][1]:.1f} | {s['loss_points'][0]:.2f} +- "
                     f"{s['loss_points'][1]:.2f} | {s['loss_max_points']:.2f} | "
                     f"{100 * s['found_best']:.0f}% | {s['stopped_runs'][0]:.1f} +- "
                     f"{s['stopped_runs'][1]:.1f} |")
    b = res["curve_comparison_baseline"]
    lines += [f"| baseline: {b['rule']} | {100 * b['epochs_saved'][0]:.1f}% +- "
              f"{100 * b['epochs_saved'][1]:.1f} | {b['loss_points'][0]:.2f} +- "
              f"{b['loss_points'][1]:.2f} | {b['loss_max_points']:.2f} | "
              f"{100 * b['found_best']:.0f}% | - |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    data = _load(Path(args.curves)) if args.analyse_only else record(args)
    if not data:
        raise SystemExit(f"no recorded curves at {args.curves}; run without --analyse-only")
    data.setdefault("machine", _load(Path(args.curves)).get("machine"))
    res = analyse(args, data)
    write_results(args.out, res, markdown(res))
    return res


if __name__ == "__main__":
    main()
