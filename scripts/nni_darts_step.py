#!/usr/bin/env python
"""Peer baseline: time Microsoft NNI 3.0's own first-order DARTS search step.

Run this with the python of a separate virtual environment that has NNI 3.0
installed (see ``scripts/README.md``), not with the project's environment::

    /path/nni-venv/bin/python scripts/nni_darts_step.py --warmup 1 --steps 3

It builds NNI's DARTS model space (``nni.nas.hub.pytorch.DARTS``) at the DARTS
paper's CIFAR-10 search configuration (16 initial channels, 8 cells, 4 nodes per
cell, 10 classes), wraps it in NNI's ``Classification`` evaluator and runs
NNI's one-shot ``nni.nas.strategy.DARTS`` through ``NasExperiment`` -- the real
NNI code path -- on synthetic CIFAR-shaped data.  A Lightning callback attached
to the trainer that NNI drives times every training step (one architecture
update on the ``val`` batch plus one weight update on the ``train`` batch).

The last line printed is ``RESULT {json}`` with the median step time over the
steps after warm-up, its spread and the process's peak RSS.  Only NNI's public
API is used; nothing of NNI is re-implemented here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps after warm-up (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (default 1)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="batch size of both the weight and the architecture batch (default 64)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--width", type=int, default=16, help="initial channels (default 16)")
    p.add_argument("--num-cells", type=int, default=8, help="cells (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="keep NNI/Lightning logging and warnings")
    return p.parse_args(argv)


def _quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated quantile (same as numpy's default) of sorted data."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        kb /= 1024
    return kb * 1024 / 1e9


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")

    if not args.verbose:
        # NNI 3.0 predates torch 2.13: importing it warns about every torch.nn class
        # it does not know (e.g. torch.nn.Buffer). Harmless, but very noisy.
        warnings.filterwarnings("ignore")
        for name in ("nni", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)

    # Keep NNI's experiment directory and its manifest (~/nni-experiments/.experiment,
    # resolved from $HOME when nni is imported) out of the user's home; removed at exit.
    workdir = tempfile.mkdtemp(prefix="nni_darts_bench_")
    os.environ["HOME"] = workdir
    os.environ["NNI_OUTPUT_DIR"] = workdir
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: str) -> int:

    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    import nni
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.hub.pytorch import DARTS as DartsSpace
    from nni.nas.strategy import DARTS as DartsStrategy
    from nni.runtime.log import silence_stdout

    if not args.verbose:
        silence_stdout()  # NNI logs INFO to stdout by default; keep stdout for RESULT.

    total_steps = args.warmup + args.steps
    bs = args.batch_size
    n = bs * total_steps

    class Synthetic(torch.utils.data.Dataset):
        """CIFAR-shaped images (random uint8 pixels, CIFAR-10-normalised), random labels.

        ``n`` samples served from a pool of two batches, so host memory for the
        data stays constant however many steps are run (content does not affect speed).
        """

        def __init__(self, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            pool = 2 * bs
            x = torch.randint(0, 256, (pool, 3, 32, 32), generator=g, dtype=torch.uint8).float().div_(255)
            mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
            std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
            self.x = (x - mean) / std
            self.y = torch.randint(0, 10, (pool,), generator=g)

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            j = i % len(self.y)
            return self.x[j], self.y[j]

    # NNI's traced DataLoader, as its docs require. DARTS turns the evaluator's
    # train/val loaders into one CombinedLoader {'train': ..., 'val': ...}: the
    # 'train' batch drives the weight step, the 'val' batch the architecture step.
    train_loader = DataLoader(Synthetic(args.seed + 1), batch_size=bs, shuffle=False, num_workers=0)
    val_loader = DataLoader(Synthetic(args.seed + 2), batch_size=bs, shuffle=False, num_workers=0)

    class StepTimer(pl.Callback):
        """Wall time of each full DARTS step (arch update + weight update)."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu_times: list[float] = []
            self._t0 = self._c0 = 0.0
            self.optimizers: list[dict] = []

        def on_train_start(self, trainer, pl_module):
            # Record what NNI actually configured, so the settings can be audited.
            for opt in trainer.optimizers:
                g = opt.param_groups[0]
                self.optimizers.append({
                    "role": "architecture" if getattr(opt, "is_arch_optimizer", False) else "weights",
                    "type": "SGD" if isinstance(opt, torch.optim.SGD) else type(opt).__name__,
                    "lr": g["lr"],
                    "momentum": g.get("momentum"),
                    "betas": g.get("betas"),
                    "weight_decay": g["weight_decay"],
                    "num_tensors": sum(len(pg["params"]) for pg in opt.param_groups),
                    "num_params": sum(p.numel() for pg in opt.param_groups for p in pg["params"]),
                })

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._t0 = time.perf_counter()
            self._c0 = time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self._t0)
            self.cpu_times.append(time.process_time() - self._c0)
            print(f"[nni-darts] step {len(self.times)}/{total_steps}: {self.times[-1]:.3f} s wall, "
                  f"{self.cpu_times[-1]:.3f} s cpu, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)

    timer = StepTimer()

    # Weight optimiser of the DARTS paper: SGD lr 0.025, momentum 0.9, wd 3e-4.
    # NNI's Classification takes an optimiser *class* and passes only lr and
    # weight_decay, so momentum is bound through a thin subclass.
    class SGDMomentum(torch.optim.SGD):
        def __init__(self, params, lr: float, weight_decay: float = 0.0):
            super().__init__(params, lr=lr, momentum=0.9, weight_decay=weight_decay)

    evaluator = Classification(
        learning_rate=0.025,
        weight_decay=3e-4,
        optimizer=SGDMomentum,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        num_classes=10,
        export_onnx=False,
        # Trainer kwargs (NNI's traced pytorch_lightning.Trainer).
        accelerator="cpu",
        devices=1,
        # NNI's DARTS optimises manually and calls two optimisers per batch, so
        # Lightning's global_step advances by 2 per batch: bound the run by
        # batches instead of max_steps.
        max_epochs=1,
        max_steps=-1,
        limit_train_batches=total_steps,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )

    model_space = DartsSpace(width=args.width, num_cells=args.num_cells, dataset="cifar")

    # First-order DARTS (NNI does not implement the unrolled second-order variant).
    # Architecture optimiser is fixed inside NNI: Adam(lr=arc_learning_rate,
    # betas=(0.5, 0.999), weight_decay=1e-3) -- the paper's values.
    # gradient_clip_val=5 is the paper's weight-gradient clipping.
    strategy = DartsStrategy(arc_learning_rate=3e-4, gradient_clip_val=5.0)

    experiment = NasExperiment(model_space, evaluator, strategy)
    experiment.config.experiment_working_directory = workdir

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    try:
        experiment.run()
    finally:
        experiment.stop()
    wall = time.perf_counter() - t_start

    times = timer.times
    if len(times) < total_steps:
        raise SystemExit(f"expected {total_steps} training steps, the trainer ran {len(times)}")
    timed = sorted(times[args.warmup:total_steps])
    q1, q3 = _quantile(timed, 0.25), _quantile(timed, 0.75)
    result = {
        "framework": f"nni-{nni.__version__}",
        "algorithm": "DARTS (first order)",
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": bs,
        "width": args.width,
        "num_cells": args.num_cells,
        "num_nodes": 4,
        "num_ops": len(DartsSpace.DARTS_OPS) + 1,  # 7 candidates + the cell's implicit 'none'
        "optimizers": timer.optimizers,
        "gradient_clip_val": strategy.gradient_clip_val,
        "warmup_steps": args.warmup,
        "timed_steps": len(timed),
        "step_times_s": [round(t, 4) for t in times],
        # Process CPU time (all threads) per step: a rough cross-check when the
        # machine is shared; about threads x wall time when uncontended.
        "step_cpu_s": [round(t, 4) for t in timer.cpu_times],
        "median_step_s": statistics.median(timed),
        "min_step_s": timed[0],
        "max_step_s": timed[-1],
        "iqr_step_s": q3 - q1,
        "peak_rss_gb": _peak_rss_gb(),
        "total_wall_s": wall,
        # 1-minute load average before/after: on a shared 2-core machine, other
        # processes inflate step times; a load well above --threads means contention.
        "loadavg_1m_start": load_start[0],
        "loadavg_1m_end": os.getloadavg()[0],
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
