#!/usr/bin/env python
"""A short DARTS search on real CIFAR-10 images through the CLI, first and second order.

Runs ``lightning-nas fit --config configs/darts/cifar10_subset.yaml`` for each order and
summarises the run folders: seconds per epoch (from history.jsonl timestamps; the first
epoch includes JPEG decoding and oneDNN warm-up), how far the softmaxed alphas moved from
uniform, the strongest ops, and the derived genotype.

    python scripts/darts_real_data.py [--epochs 5] [--orders 1 2] [--out runs/darts_real_data]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def summarise(run: Path) -> dict:
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    stamps = [h["wall_time"] for h in history]
    epoch_s = [b - a for a, b in zip(stamps, stamps[1:])]
    primitives = history[-1]["primitives"]
    out = {"epochs": len(history), "val_acc": [h.get("val/acc") for h in history],
           "epoch_seconds_after_first": epoch_s,
           "median_epoch_s": statistics.median(epoch_s) if epoch_s else None,
           "genotype": history[-1]["string"], "genotype_changes": sum(
               a["string"] != b["string"] for a, b in zip(history, history[1:]))}
    for cell in ("normal", "reduce"):
        first = torch.tensor(history[0]["alphas"][cell])   # (14, 8) softmax after epoch 0
        last = torch.tensor(history[-1]["alphas"][cell])
        uniform = 1.0 / len(primitives)
        mean_by_op = last.mean(0)
        out[cell] = {
            "max_abs_from_uniform": float((last - uniform).abs().max()),
            "mean_abs_from_uniform": float((last - uniform).abs().mean()),
            "l1_move_first_to_last_epoch": float((last - first).abs().sum()),
            "mean_weight_by_op": dict(zip(primitives, [round(float(v), 4) for v in mean_by_op])),
        }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--config", default="configs/darts/cifar10_subset.yaml")
    parser.add_argument("--out", default="runs/darts_real_data")
    args = parser.parse_args(argv)
    report = {}
    for order in args.orders:
        run = ROOT / args.out / f"order{order}"
        cmd = [sys.executable, "-m", "lightning_nas.cli", "fit", "--config", args.config,
               "--model.init_args.order", str(order), "--trainer.max_epochs", str(args.epochs),
               "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir",
               str(run), "--trainer.enable_progress_bar", "false"]
        start = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        report[f"order{order}"] = {"wall_s": time.time() - start, **summarise(run)}
        print(json.dumps(report[f"order{order}"], indent=2))
    (ROOT / args.out).mkdir(parents=True, exist_ok=True)
    (ROOT / args.out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
