#!/usr/bin/env python
"""Timings of the search strategies on one CUDA GPU, written as one JSON (run by
``scripts/gpu_check.sh``, which adds the GPU tests' outcome).

Each item trains through Lightning's ``Trainer`` on synthetic images of the real shapes
(the GPU machine has no data sets), in this process, one after the other:

* ``darts``: first-order DARTS, the paper's CIFAR-10 search supernet (16 channels, 8 cells,
  batch 64, 32x32), ``--steps`` steps in float32 and in bf16-mixed; a CIFAR-10 search epoch
  is 25,000 / 64 = 391 steps (the weights half);
* ``pc_darts``: PC-DARTS K=4, batch 256 (the paper's CIFAR-10 setting), 98 steps an epoch;
* ``ofa``: Once-for-All on the ImageNet MobileNetV3 space at 224, batch 64: a full-network
  step and an elastic-depth step with two subnets and distillation;
* ``latency``: the OFA largest / smallest subnets' forward latency on ``cuda`` at batch 1 and
  64 (median of 50 after 10 warm-up runs) via the latency profiler's measurement.

Step times are the median of the steps after the first ``--warmup`` (CUDA synchronised at
each step end); throughput in images/s uses the weights batch. ``--dry``: CPU, tiny sizes,
2-4 steps, so the script's path can be tested anywhere.

    python scripts/gpu_check.py --out gpu_check.json [--steps 30] [--dry]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_clock(cuda: bool):
    import lightning as L

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    return Clock()


def timed_fit(model, data, *, steps: int, warmup: int, precision: str, cuda: bool,
              images_per_step: int, steps_per_epoch: int | None = None) -> dict[str, Any]:
    import lightning as L

    clock = step_clock(cuda)
    optimizers = 2 if getattr(model, "alphas", None) is not None else 1
    trainer = L.Trainer(max_steps=steps * optimizers, accelerator="gpu" if cuda else "cpu",
                        devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[clock])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    wall = time.perf_counter() - start
    times = clock.times[warmup:]
    per_step = [b - a for a, b in zip(times, times[1:])]
    median = statistics.median(per_step) if per_step else float("nan")
    out = {"precision": precision, "steps": len(clock.times), "timed_steps": len(per_step),
           "step_s_median": median,
           "step_s_range": [min(per_step), max(per_step)] if per_step else None,
           "images_per_s": images_per_step / median if per_step else None, "wall_s": wall}
    if steps_per_epoch:
        out["steps_per_epoch"] = steps_per_epoch
        out["epoch_s_projected"] = median * steps_per_epoch
    if cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lightning_nas.data import SyntheticDataModule
    from lightning_nas.hardware.latency import measure_latency
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.mobilenet import MobileNetV3Space
    from lightning_nas.strategies.darts import DartsSearch
    from lightning_nas.strategies.ofa import OnceForAll
    from lightning_nas.strategies.pc_darts import PCDarts

    dry = args.dry
    cuda = not dry
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (use --dry to run on CPU)")
    steps, warmup = (3, 1) if dry else (args.steps, args.warmup)
    bf16 = "bf16-mixed" if dry or torch.cuda.is_bf16_supported() else "16-mixed"
    darts_size = {"channels": 4, "layers": 3} if dry else {"channels": 16, "layers": 8}
    batch = 8 if dry else 64
    results: dict[str, Any] = {}

    def data(batch_size: int, image_size: int = 32, classes: int = 10, search: bool = True):
        n = max(4 * batch_size * steps, 64)
        return SyntheticDataModule(num_classes=classes, image_size=image_size,
                                   train_size=n if search else n // 2, test_size=batch_size,
                                   batch_size=batch_size, search=search, seed=0,
                                   pin_memory=cuda, num_workers=0)

    results["darts"] = []
    for precision in ("32-true", bf16):
        model = DartsSearch(space=DartsSpace(), num_classes=10, seed=0, **darts_size)
        results["darts"].append(timed_fit(model, data(batch), steps=steps, warmup=warmup,
                                          precision=precision, cuda=cuda,
                                          images_per_step=batch, steps_per_epoch=391))
    pc_batch = 16 if dry else 256
    results["pc_darts"] = []
    for precision in ("32-true", bf16):
        model = PCDarts(space=DartsSpace(), num_classes=10, seed=0, partial_channels=4,
                        **darts_size)
        results["pc_darts"].append(timed_fit(model, data(pc_batch), steps=steps,
                                             warmup=warmup, precision=precision, cuda=cuda,
                                             images_per_step=pc_batch, steps_per_epoch=98))
    if dry:
        space = MobileNetV3Space(resolutions=(24, 32), stem_width=8, final_width=64,
                                 feature_width=64)
        size, ofa_batch = 32, 4
    else:
        space, size, ofa_batch = MobileNetV3Space(), 224, 64
    res = list(space.resolutions)
    phases = {
        "full": [{"name": "full", "epochs": 1, "lr": 0.1, "resolutions": res}],
        "depth_2_subnets_kd": [
            {"name": "full", "epochs": 1, "lr": 0.1, "resolutions": res},
            {"name": "depth", "epochs": 1, "lr": 0.01, "kernels": list(space.kernels),
             "depths": list(space.depths), "resolutions": res, "subnets_per_step": 2}],
    }
    results["ofa"] = {}
    for name, ph in phases.items():
        for precision in ("32-true", bf16):
            model = OnceForAll(num_classes=1000 if not dry else 10, space=space, phases=ph,
                               eval_subnets={"largest": "largest"}, bn_calibration_batches=1,
                               seed=0)
            if name != "full":  # start in the second phase: one epoch of one full step first
                model.phases[1].start_epoch = 0
                model.phases = [model.phases[1]]
            dm = data(ofa_batch, image_size=size, classes=1000 if not dry else 10,
                      search=False)
            results["ofa"][f"{name}/{precision}"] = timed_fit(
                model, dm, steps=steps, warmup=warmup, precision=precision, cuda=cuda,
                images_per_step=ofa_batch)
    device = "cpu" if dry else "cuda"
    results["latency"] = []
    for which in ("largest", "smallest"):
        arch = getattr(space, which)()
        net = space.build(arch, num_classes=1000 if not dry else 10)
        for bs in ((1, 2) if dry else (1, 64)):
            r = measure_latency(net, (3, int(arch["resolution"]), int(arch["resolution"])),
                                device=device, batch_size=bs, warmup=2 if dry else 10,
                                repeats=3 if dry else 50)
            results["latency"].append({"subnet": which, "arch": space.to_string(arch),
                                       "batch_size": bs, "median_ms": r.median_ms,
                                       "p10_ms": r.p10_ms, "p90_ms": r.p90_ms,
                                       "device": r.device, "hardware": r.hardware})
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dry", action="store_true", default=os.environ.get("GPU_CHECK_DRY") == "1")
    p.add_argument("--pytest-json", help="merge this JSON (the GPU tests' outcome) in")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "cuda": torch.version.cuda, "dry": args.dry}
    if torch.cuda.is_available() and not args.dry:
        machine["gpu"] = torch.cuda.get_device_name(0)
        machine["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
    report: dict[str, Any] = {"machine": machine}
    if args.pytest_json and Path(args.pytest_json).is_file():
        report["tests"] = json.loads(Path(args.pytest_json).read_text())
    try:
        report["timings"] = run(args)
        report["ok"] = True
    except Exception as err:  # the JSON still says what failed
        report["ok"] = False
        report["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        report["wall_s"] = time.perf_counter() - start
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"gpu_check: wrote {args.out}")


if __name__ == "__main__":
    main()
