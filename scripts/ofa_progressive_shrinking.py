#!/usr/bin/env python
"""Once-for-All progressive shrinking on a real CIFAR-10 subset, against the smallest subnet
trained alone with the same training compute.

1. ``lightning-nas fit --config configs/ofa/cifar10_subset.yaml`` (in process): the phases
   full -> kernel -> depth -> expand; after every epoch the largest, middle and smallest
   subnets are extracted, batch norm recalibrated on 256 training images, and evaluated on
   the validation split (the 1,000-image test subset) - read back from the CSV log.
2. Training compute of that run in MACs: for every step, every sampled subnet's forward MACs
   x 3 (forward + backward ~ 3 forwards) x the images of the step, plus the teacher's
   forward MACs in the distillation phases.
3. The smallest subnet trained alone from scratch (same data, augmentation, optimiser family,
   label smoothing, cosine schedule) for the number of epochs that spends the same MACs.

    python scripts/ofa_progressive_shrinking.py [--config ...] [--out ...] [--threads 1]

Writes ``results.json`` and ``results.md`` to ``--out``
(default ``scripts/results/ofa_progressive_shrinking``).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def read_epoch_metrics(metrics_csv: Path) -> dict[int, dict[str, float]]:
    """Per-epoch validation metrics from a CSVLogger metrics.csv."""
    out: dict[int, dict[str, float]] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("epoch") in (None, ""):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key.startswith("val/") and value not in ("", None):
                    out.setdefault(epoch, {})[key] = float(value)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/ofa/cifar10_subset.yaml")
    parser.add_argument("--out", default="scripts/results/ofa_progressive_shrinking")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--alone-lr", type=float, default=0.1,
                        help="peak lr of the smallest-alone run (the full phase's lr)")
    parser.add_argument("--alone-dir", default="runs/ofa-smallest-alone",
                        help="run folder of the smallest subnet trained alone")
    parser.add_argument("overrides", nargs="*", help="extra lightning-nas fit arguments (after "
                        "--), e.g. --trainer.logger.init_args.save_dir runs/other")
    args = parser.parse_args(argv)
    os.chdir(ROOT)

    import lightning as L
    import torch
    from script_results import write_results

    from lightning_nas.cli import run_lightning_cli
    from lightning_nas.hardware.latency import device_name
    from lightning_nas.hardware.metrics import count_flops
    from lightning_nas.strategies.fixed import FixedArchitecture

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    # -- 1. progressive shrinking through the CLI -----------------------------------------
    t0 = time.time()
    cli = run_lightning_cli(["fit", "--config", args.config, *args.overrides])
    ps_seconds = time.time() - t0
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    space = model.space
    log_dir = Path(trainer.logger.log_dir)
    per_epoch = read_epoch_metrics(log_dir / "metrics.csv")
    names = list(model.eval_archs)
    phases = []
    for r in model.phases:
        end = r.start_epoch + r.phase.epochs - 1
        m = per_epoch.get(end, {})
        phases.append({"phase": r.phase.name, "epochs": f"{r.start_epoch}-{end}",
                       "lr": r.phase.lr, "subnets_per_step": r.phase.subnets_per_step,
                       "kd_ratio": r.kd_ratio,
                       "choices": {k: list(v) for k, v in r.choices.items()},
                       **{f"acc_{n}": 100 * m.get(f"val/acc_{n}", float("nan")) for n in names}})

    # -- 2. training compute -------------------------------------------------------------------
    macs_cache: dict[str, int] = {}

    def macs(arch) -> int:
        key = space.to_string(space.canonical(arch))
        if key not in macs_cache:
            r = int(arch["resolution"])
            macs_cache[key] = count_flops(space.build(arch), (3, r, r)).macs
        return macs_cache[key]

    n_train = len(data._splits["train"])
    n_val = sum(len(y) for _, y in data.val_dataloader())
    steps = len(model.sampled)
    images_per_step = n_train * model.total_epochs / steps
    ps_macs = 0.0
    largest_macs = macs(space.largest())
    for step, subnets in enumerate(model.sampled):
        phase = model.phase_at(step * model.total_epochs // steps)
        archs = [space.parse(s) for s in subnets]
        ps_macs += 3 * sum(macs(a) for a in archs) * images_per_step
        if phase.kd_ratio > 0:
            ps_macs += largest_macs * images_per_step * len({a["resolution"] for a in archs})

    # -- 3. the smallest subnet alone, same MACs ---------------------------------------------------
    smallest = model.reference_subnet("smallest")
    smallest_macs = macs(smallest)
    alone_epochs = max(1, round(ps_macs / (3 * smallest_macs * n_train)))

    def sgd(params):
        return torch.optim.SGD(params, lr=args.alone_lr, momentum=0.9, nesterov=True,
                               weight_decay=3e-5)

    alone = FixedArchitecture(arch=space.to_string(smallest), space=space,
                              num_classes=model.hparams.num_classes, weight_optimizer=sgd,
                              auxiliary_weight=0.0, drop_path_prob=0.0, grad_clip=0.0,
                              label_smoothing=model.hparams.label_smoothing, seed=0)
    alone_dir = ROOT / args.alone_dir
    alone_trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=alone_epochs,
                              default_root_dir=alone_dir, enable_progress_bar=False,
                              logger=L.pytorch.loggers.CSVLogger(alone_dir, name="", version=""),
                              enable_checkpointing=False, num_sanity_val_steps=0)
    t0 = time.time()
    alone_trainer.fit(alone, data)
    alone_seconds = time.time() - t0
    alone_per_epoch = read_epoch_metrics(alone_dir / "metrics.csv")
    alone_acc = 100 * alone_per_epoch[alone_epochs - 1]["val/acc"]

    results = {
        "machine": device_name("cpu"), "platform": platform.platform(),
        "torch": torch.__version__, "threads": args.threads,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "config": args.config, "overrides": args.overrides,
        "train_images": n_train, "val_images": n_val,
        "phases": phases,
        "per_epoch": {e: {k: 100 * v for k, v in m.items()} for e, m in sorted(per_epoch.items())},
        "progressive_shrinking": {"seconds": ps_seconds, "steps": steps,
                                  "training_macs": ps_macs},
        "smallest_alone": {"arch": space.to_string(smallest), "epochs": alone_epochs,
                           "macs_per_image": smallest_macs, "seconds": alone_seconds,
                           "training_macs": 3 * smallest_macs * n_train * alone_epochs,
                           "val_acc": alone_acc,
                           "per_epoch": {e: 100 * m.get("val/acc", math.nan)
                                         for e, m in sorted(alone_per_epoch.items())}},
        "macs_per_image": {"largest": largest_macs,
                           "middle": macs(model.reference_subnet("middle")),
                           "smallest": smallest_macs},
    }
    lines = [
        f"# Once-for-All progressive shrinking, CIFAR-10 subset ({n_train} train / "
        f"{results['val_images']} val images)", "",
        f"Machine: {results['machine']}, torch {torch.__version__}, {args.threads} thread(s); "
        f"load average before {load_before[0]:.2f}, after {results['load_average_after'][0]:.2f}.",
        "Accuracy (%) of subnets extracted after the phase's last epoch, batch norm "
        "recalibrated on 256 training images.", "",
        "| phase | epochs | lr | subnets/step | kd | " + " | ".join(names) + " |",
        "|---|---|---|---|---|" + "---|" * len(names)]
    for p in phases:
        lines.append(f"| {p['phase']} | {p['epochs']} | {p['lr']} | {p['subnets_per_step']} | "
                     f"{p['kd_ratio']} | " + " | ".join(f"{p[f'acc_{n}']:.1f}" for n in names)
                     + " |")
    lines += ["", f"Smallest subnet trained alone for {alone_epochs} epochs (same training MACs, "
              f"{ps_macs / 1e12:.2f} TMAC): **{alone_acc:.1f}%** "
              f"(progressive shrinking's smallest: {phases[-1]['acc_smallest']:.1f}%).",
              f"Wall time: progressive shrinking {ps_seconds / 60:.1f} min, smallest alone "
              f"{alone_seconds / 60:.1f} min.",
              f"MACs per 32x32 image: largest {largest_macs / 1e6:.1f} M, middle "
              f"{results['macs_per_image']['middle'] / 1e6:.1f} M, smallest "
              f"{smallest_macs / 1e6:.1f} M.", ""]
    write_results(args.out, results, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()
