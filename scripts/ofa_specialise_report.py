#!/usr/bin/env python
"""Summarise a Once-for-All specialisation: for the best subnet of every latency budget, the
table's latency against a fresh whole-network measurement, the inherited accuracy on the
validation split the search used and on the untouched test split, and (when
``configs/train/cifar10_ofa_subnet.yaml`` fine-tuned one) its test accuracy after fine-tuning.

    lightning-nas fit --config configs/ofa/cifar10_subset.yaml
    lightning-nas search --config configs/search/ofa_cifar10_specialise.yaml
    lightning-nas fit --config configs/train/cifar10_ofa_subnet.yaml --model.arch ... --model.init_from ...
    lightning-nas test --config configs/train/cifar10_ofa_subnet.yaml --model.arch ... --ckpt_path ...
    python scripts/ofa_specialise_report.py [--search runs/search/ofa-cifar10]

With the accuracy-predictor config
(``--config configs/search/ofa_cifar10_specialise_predictor.yaml``) the table shows the
predicted validation accuracy beside the measured one ("verified").
``--checkpoint`` reports a search over another supernet than the config's.

Writes ``results.json`` / ``results.md`` to ``--out``
(default ``scripts/results/ofa_specialise``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def last_metric(metrics_csv: Path, key: str) -> float | None:
    if not metrics_csv.is_file():
        return None
    values = [float(r[key]) for r in csv.DictReader(open(metrics_csv)) if r.get(key)]
    return values[-1] if values else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", default="runs/search/ofa-cifar10")
    parser.add_argument("--config", default="configs/search/ofa_cifar10_specialise.yaml")
    parser.add_argument("--finetune", default="runs/train-ofa-subnet",
                        help="run folder of the fine-tuning (its metrics.csv)")
    parser.add_argument("--out", default="scripts/results/ofa_specialise")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--checkpoint", default=None,
                        help="the supernet the search used, when not the config's")
    args = parser.parse_args(argv)
    os.chdir(ROOT)

    import torch
    import yaml
    from script_results import write_results

    from lightning_nas.data import ImageFolderDataModule
    from lightning_nas.hardware.latency import device_name, measure_latency
    from lightning_nas.search.supernet_evaluator import SupernetEvaluator

    torch.set_num_threads(1)
    search = Path(args.search)
    budgets = json.loads((search / "budgets.json").read_text())
    cfg = yaml.safe_load(Path(args.config).read_text())["evaluator"]["init_args"]
    if "evaluator" in cfg:  # PredictorEvaluator: the supernet evaluator it wraps
        cfg = cfg["evaluator"]["init_args"]
    checkpoint = args.checkpoint or cfg["checkpoint"]
    data = ImageFolderDataModule(**cfg["data"]["init_args"])
    test_eval = SupernetEvaluator(checkpoint, data, split="test", num_threads=1,
                                  calibration_images=cfg["calibration_images"])
    test_eval.prepare()  # loads the checkpoint; test_eval.space is the supernet's space
    finetuned_test = last_metric(Path(args.finetune) / "metrics.csv", "test/acc")
    finetuned_val = last_metric(Path(args.finetune) / "metrics.csv", "val/acc")
    rows = []
    for entry in budgets["budgets"]:
        if entry["arch"] is None:
            continue
        sp = test_eval.space
        arch = sp.parse(entry["arch"])
        measured = measure_latency(sp.build(arch), (3, 32, 32), repeats=args.repeats,
                                   warmup=20, num_threads=1)
        test = test_eval(arch)
        rows.append({"budget_ms": entry["budget_ms"], "arch": entry["arch"],
                     "table_latency_ms": entry["latency_ms"],
                     "measured_latency_ms": measured.median_ms,
                     "measured_p10_p90_ms": [measured.p10_ms, measured.p90_ms],
                     "predicted_val_acc": entry.get("accuracy") if "verified" in entry
                     else None,
                     "inherited_val_acc": (entry.get("verified") or entry).get("accuracy"),
                     "inherited_test_acc": test["accuracy"],
                     "subnet": (entry.get("subnet") or {}).get("weights")})
    results = {"machine": device_name("cpu"), "torch": torch.__version__,
               "search": str(search), "checkpoint": checkpoint,
               "load_average": os.getloadavg(), "latency_source": budgets["latency_source"],
               "fastest_subnet": budgets["fastest_subnet"], "rows": rows,
               "finetuned": {"run": args.finetune, "test_acc": finetuned_test,
                             "val_acc": finetuned_val}}
    lines = ["# Once-for-All specialisation for this CPU (1 thread, batch 1)", "",
             f"Machine: {results['machine']}, torch {torch.__version__}; latency source: "
             f"{budgets['latency_source']}; fastest subnet {budgets['fastest_subnet']['latency_ms']:.2f} ms.",
             "Inherited accuracy: subnet extracted from the supernet, batch norm recalibrated on "
             f"{cfg['calibration_images']} training images, no training. Measured latency: "
             f"median of {args.repeats} runs (p10-p90).", "",
             f"Search: {search}; supernet: {checkpoint}.", "",
             "| budget ms | table ms | measured ms | predicted val acc % | inherited val acc % "
             "| inherited test acc % |", "|---|---|---|---|---|---|"]
    for r in rows:
        predicted = "-" if r["predicted_val_acc"] is None else f"{r['predicted_val_acc']:.1f}"
        lines.append(f"| {r['budget_ms']:g} | {r['table_latency_ms']:.2f} | "
                     f"{r['measured_latency_ms']:.2f} ({r['measured_p10_p90_ms'][0]:.2f}-"
                     f"{r['measured_p10_p90_ms'][1]:.2f}) | {predicted} | "
                     f"{r['inherited_val_acc']:.1f} | {r['inherited_test_acc']:.1f} |")
    if finetuned_test is not None:
        lines += ["", f"Fine-tuned through the CLI ({args.finetune}): test accuracy "
                  f"{100 * finetuned_test:.1f}%"
                  + (f" (last val {100 * finetuned_val:.1f}%)." if finetuned_val is not None
                     else ".")]
    write_results(args.out, results, "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
