"""Hyperband and BOHB against random search on a CIFAR-10 subset: best accuracy vs cumulative
training epochs (issue 13, multi-fidelity, item 4).

The digits version (``multi_fidelity_digits.py``) saturates near 99% whatever the cell, so
fidelity carries no signal there. Here every search trains NAS-Bench-201 cells (``--channels``
stem channels, one cell per stage) on a class-balanced CIFAR-10 subset read in place from
``<shared>/cifar10/cifar10_jpg.zip`` (the first ``--per-class`` training JPEGs of each class,
resized to ``--resolution`` pixels; 20% of them held out for validation, the search's
objective; the first 100 test JPEGs per class for the reported test accuracy) with
:class:`~lightning_nas.search.training.TrainingEvaluator` (SGD 0.05 momentum 0.9, cosine over
the run's epochs, batch 32, random crop + flip, 1 thread). At these sizes accuracy still
rises with every epoch up to the full budget, so a 1-epoch run is a noisy, biased estimate of
the full-budget one.

Every sampler gets the same budget of cumulative training epochs (``--epochs``; the loop's
``budget_seconds`` with ``time_key="epochs"``): random search trains every cell for
``--max-epochs``; Hyperband and BOHB spend 1 to ``--max-epochs`` epochs per run (``--eta``;
a promoted cell retrains from scratch). Summaries, the incumbent rule (best validation
accuracy at the largest budget reached so far) and the figure are those of
``multi_fidelity_digits.py``.

Usage::

    OMP_NUM_THREADS=1 python scripts/multi_fidelity_cifar10_subset.py --seeds 0 1 2 3 4 \\
        --out scripts/results/multi_fidelity_cifar10_subset

One JSON per (sampler, seed) under ``<out>/runs/`` (a finished one is kept, so an
interrupted experiment continues); ``<out>/results.json``, ``results.md`` and
``best_vs_epochs.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from multi_fidelity_digits import (  # noqa: E402
    SAMPLERS,
    plot,
    run_one,
    summarise,
    summary_rows,
)


def make_data_factory(args):
    def make():
        from lightning_nas.data import ImageFolderDataModule

        return ImageFolderDataModule(root=args.data, max_per_class_train=args.per_class,
                                     max_per_class_test=args.test_per_class,
                                     resize=args.resolution,
                                     crop_padding=2, hflip=True, val_fraction=0.2,
                                     batch_size=32, seed=0)
    return make


def main(argv: list[str] | None = None) -> None:
    from lightning_nas.data.base import shared_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=68, help="cumulative epoch budget")
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--min-epochs", type=int, default=1,
                        help="smallest budget of Hyperband / BOHB")
    parser.add_argument("--eta", type=float, default=2)
    parser.add_argument("--per-class", type=int, default=200,
                        help="training JPEGs per class (20%% of them validation)")
    parser.add_argument("--test-per-class", type=int, default=100,
                        help="test JPEGs per class (the reported test accuracy)")
    parser.add_argument("--continue-training", action=argparse.BooleanOptionalAction,
                        default=False, help="promotions continue the lower rung's run (the "
                        "schedule spans --max-epochs for every sampler)")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--accelerator", default="cpu",
                        help="Lightning accelerator of the trials (gpu on a GPU machine)")
    parser.add_argument("--data", default=str(shared_data_dir() / "cifar10" / "cifar10_jpg.zip"))
    parser.add_argument("--out", type=Path, default=Path("runs/multi_fidelity_cifar10_subset"))
    args = parser.parse_args(argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    make_data = make_data_factory(args)
    runs, loads = [], []
    for seed in args.seeds:  # seed-major: a run cut short has every sampler on its seeds
        for name in args.samplers:
            path = args.out / "runs" / f"{name}_seed{seed}.json"
            if not path.exists():
                start = time.time()
                record = run_one(name, seed, args.epochs, args.max_epochs, eta=args.eta,
                                 make_data=make_data, channels=args.channels,
                                 continue_training=args.continue_training,
                                 min_epochs=args.min_epochs, accelerator=args.accelerator)
                record["load_after"] = os.getloadavg()
                path.write_text(json.dumps(record, indent=1))
                print(f"{name} seed {seed}: final val {record['final']['val']:.2f} test "
                      f"{record['final']['test']:.2f}, {record['cells']} cells, "
                      f"{record['epochs']} epochs, {time.time() - start:.0f} s, load "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
            run = json.loads(path.read_text())
            runs.append(run)
            loads.append(run.get("load_after", [None])[0])
    table = summarise(runs, args.epochs, args.max_epochs)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out = {"config": config,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "threads": 1, "accelerator": args.accelerator, "load_1min_after_each_search": loads},
           "table": table}
    (args.out / "results.json").write_text(json.dumps(out, indent=1))
    n_train = int(args.per_class * 10 * 0.8)
    lines = [f"NAS-Bench-201 cells ({args.channels} channels, one cell per stage) trained on a "
             f"CIFAR-10 subset ({n_train} training / {args.per_class * 10 - n_train} validation "
             f"images at {args.resolution}x{args.resolution}, test: "
             f"{args.test_per_class * 10:,} test images), "
             f"{args.epochs} cumulative training epochs per search, full budget "
             f"{args.max_epochs} epochs (random search), Hyperband / BOHB "
             f"{args.min_epochs}..{args.max_epochs} "
             f"epochs with eta {args.eta:g}, promoted cells "
             f"{'continue the lower rung' if args.continue_training else 'retrain from scratch'}"
             f"; mean +- standard error over seeds "
             f"{args.seeds}, 1 thread.", "", *summary_rows(table)]
    for key, what in (("curve", "Incumbent validation accuracy"),
                      ("test_curve", "Test accuracy of the incumbent")):
        lines += ["", f"{what} (%) at the full budget, mean +- se, by cumulative epochs:", "",
                  "| epochs | " + " | ".join(table) + " |", "|---|" + "---|" * len(table)]
        grid = next(iter(table.values()))[key]["epochs"]
        for k, e in enumerate(grid):
            cells = []
            for row in table.values():
                m, s, n = (row[key][col][k] for col in ("mean", "se", "n"))
                cells.append("-" if m is None else f"{m:.2f} +- {s:.2f} (n={n})")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(table, args.out / "best_vs_epochs.png",
         title="NB201 cells on a CIFAR-10 subset: best at the full budget so far")


if __name__ == "__main__":
    main()
