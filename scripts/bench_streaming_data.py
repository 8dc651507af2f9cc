#!/usr/bin/env python
"""Streaming image data (decoded in DataLoader workers) against the in-memory image folder.

1. Builds an ImageNet-style folder of JPEGs from ``../shared/data/cifar10/cifar10_jpg.zip``
   (``train/<class>/`` 50,000 and ``val/<class>/`` 10,000 images, upsampled bilinearly from
   32x32 to ``--side`` pixels, JPEG quality 90) under ``--folder`` (default in /tmp; never in
   the repository).
2. Runs each measurement in a fresh Python process, which trains an elastic-resolution OFA
   phase (ImageNet MobileNetV3 space, resolutions {side-16, side-8, side}, the full network,
   batch 64, one intra-op thread) for ``--steps`` steps through a data module and samples the
   resident memory of its process tree (the trainer and its DataLoader workers: RSS summed,
   and PSS summed, which counts pages shared between the processes once) every 50 ms:

   * ``memory``: :class:`~lightning_nas.data.ImageFolderDataModule` (every image decoded
     into one uint8 array in ``setup``, random crop with 4 px padding + flip on the tensor);
   * ``stream``: :class:`~lightning_nas.data.StreamingImageDataModule` with ``--workers``
     workers (random-resized crop + flip in the workers);

   at 5,000 training images (``max_per_class_train`` 500) and at 50,000 (all), each of the
   four in turn for ``--rounds`` rounds (figures as median and range over the rounds).
   Images/s are the training steps' images over their wall time after ``--warmup`` steps;
   the stream / memory ratio is taken per round at 50,000 images (neighbouring runs).
3. The loaders alone (no model): images/s and the tree's peak memory while iterating the
   training loader for ``--loader-batches`` batches: ``memory`` (with its tensor transform)
   and ``stream`` with 0 workers at 50,000 images, ``stream`` with ``--workers`` workers at
   500, 5,000 and 50,000 (the data side's memory without the model's), ``--rounds`` rounds.

    python scripts/bench_streaming_data.py [--side 64] [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from script_results import cpu_model, write_results  # noqa: E402

OUT = ROOT / "scripts" / "results" / "bench_streaming_data"


def build_folder(zip_path: Path, folder: Path, side: int) -> int:
    """Write the upsampled JPEG tree once (a ``.done`` marker says it is complete)."""
    from PIL import Image

    marker = folder / f".done-{side}"
    if marker.exists():
        return int(marker.read_text())
    count = 0
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if not name.endswith(".jpg"):
                continue
            split, cls, file = name.split("/")[-3:]
            split = {"train": "train", "test": "val"}[split]
            dest = folder / split / cls / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(BytesIO(zf.read(name))) as im:
                im.convert("RGB").resize((side, side), Image.BILINEAR).save(dest, quality=90)
            count += 1
    marker.write_text(str(count))
    return count


# ------------------------------------------------------------------------------------------
# the child process
# ------------------------------------------------------------------------------------------


class TreeMemory:
    """Peak RSS and PSS of this process and its children, sampled by a thread every 50 ms."""

    def __init__(self, every: float = 0.05) -> None:
        import threading

        import psutil

        self.proc = psutil.Process()
        self.peak_rss = self.peak_pss = 0
        self.max_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        import psutil

        n = 0
        while not self._stop.is_set():
            procs = [self.proc, *self.proc.children(recursive=True)]
            rss = pss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    if n % 10 == 0:  # smaps is slow to read: PSS every 0.5 s
                        pss += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            if n % 10 == 0:
                self.peak_pss = max(self.peak_pss, pss)
            self.max_children = max(self.max_children, len(procs) - 1)
            n += 1
            self._stop.wait(every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"peak_rss_mib": self.peak_rss / 2 ** 20, "peak_pss_mib": self.peak_pss / 2 ** 20,
                "processes": 1 + self.max_children}


def make_module(kind: str, root: str, per_class: int | None, side: int, workers: int):
    from lightning_nas.data import ImageFolderDataModule, StreamingImageDataModule

    if kind == "memory":
        return ImageFolderDataModule(root=root, test_split="val", max_per_class_train=per_class,
                                     max_per_class_test=10, crop_padding=side // 8, hflip=True,
                                     batch_size=64, num_workers=0, seed=0)
    return StreamingImageDataModule(root=root, image_size=side, max_per_class_train=per_class,
                                    max_per_class_eval=10, batch_size=64, num_workers=workers,
                                    seed=0)


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    memory = TreeMemory()
    import lightning as L

    from lightning_nas.spaces.mobilenet import MobileNetV3Space
    from lightning_nas.strategies.ofa import OnceForAll

    start = time.perf_counter()
    dm = make_module(args.kind, args.root, args.per_class, args.side, args.workers)
    res = [args.side - 16, args.side - 8, args.side]
    model = OnceForAll(num_classes=10, space=MobileNetV3Space(resolutions=res),
                       phases=[{"name": "full", "epochs": 1, "lr": 0.05, "resolutions": res}],
                       eval_subnets={"largest": "largest"}, bn_calibration_batches=1)
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, *a, **k):
            times.append(time.perf_counter())

    trainer = L.Trainer(max_steps=args.steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Clock()], accelerator="cpu",
                        num_sanity_val_steps=0)
    setup_start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    steps = times[args.warmup:]
    per_step = [b - a for a, b in zip(steps, steps[1:])]
    mem = memory.stop()
    images = 64 * len(per_step)
    return {"kind": args.kind, "train_images": dm.split_sizes()["train"],
            "workers": args.workers if args.kind == "stream" else 0, "steps": len(times),
            "images_per_s": images / sum(per_step), "step_ms_median":
            1000 * statistics.median(per_step), "first_step_s": times[0] - setup_start,
            "wall_s": time.perf_counter() - start, **mem}


def child_loader(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    memory = TreeMemory()
    dm = make_module(args.kind, args.root, args.per_class, args.side, args.workers)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    batch = next(it)  # workers started, first batch ready
    start, n, done = time.perf_counter(), 0, 0
    while done < args.loader_batches:
        try:
            x, y = next(it)
        except StopIteration:  # small sets: another pass
            it = iter(loader)
            continue
        x, y = dm.transform_batch((x, y), train=True)
        n += len(y)
        done += 1
    seconds = time.perf_counter() - start
    return {"kind": args.kind, "workers": args.workers if args.kind == "stream" else 0,
            "train_images": dm.split_sizes()["train"], "images_per_s": n / seconds,
            "batch": len(batch[1]), **memory.stop()}


def run_child(mode: str, **kw: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode]
    for k, v in kw.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"{mode} {kw}: {proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
            if values else "-")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zip", default=str(ROOT.parent / "shared/data/cifar10/cifar10_jpg.zip"))
    p.add_argument("--folder", default="/tmp/lightning_nas_bench_jpeg")
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader-batches", type=int, default=60)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--reuse-log", nargs="+", help="take the training runs (and the loader "
                   "runs, if there are) from the stdout of earlier runs of this script (their "
                   "JSON lines) instead of running them again")
    # child-process options
    p.add_argument("--child", choices=["train", "loader"])
    p.add_argument("--kind", choices=["memory", "stream"])
    p.add_argument("--root")
    p.add_argument("--per-class", type=int)
    args = p.parse_args()
    if args.child:
        fn = child_train if args.child == "train" else child_loader
        print(json.dumps(fn(args)))
        return

    folder = Path(args.folder) / f"side{args.side}"
    t = time.perf_counter()
    count = build_folder(Path(args.zip), folder, args.side)
    print(f"{count} JPEGs at {args.side}x{args.side} in {folder} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    common = {"root": str(folder), "side": args.side, "steps": args.steps,
              "warmup": args.warmup, "workers": args.workers}
    runs: list[dict[str, Any]] = []
    reused_loaders: list[dict[str, Any]] = []
    if args.reuse_log:
        records = [json.loads(line) for log in args.reuse_log
                   for line in Path(log).read_text().splitlines() if line.startswith('{"kind"')]
        runs = [r for r in records if "steps" in r]
        reused_loaders = [r for r in records if "steps" not in r]
        for i, r in enumerate(runs):
            r["round"] = i // 4
        for i, r in enumerate(reused_loaders):
            r["round"] = i // 5
        args.rounds = max(r["round"] for r in runs) + 1
        args.steps = runs[0]["steps"]
    # every round runs all four (size x module) in turn, so each figure has a spread and the
    # stream / memory ratio at 50k is of neighbouring runs
    for r in range(0 if args.reuse_log else args.rounds):
        for per_class in (500, None):
            for kind in ("stream", "memory"):
                runs.append({**run_child("train", kind=kind, per_class=per_class, **common),
                             "round": r})
    loaders = reused_loaders
    for r in range(0 if reused_loaders else args.rounds):
        for kind, workers, per_class in (("memory", 0, None), ("stream", 0, None),
                                         ("stream", args.workers, 50),
                                         ("stream", args.workers, 500),
                                         ("stream", args.workers, None)):
            loaders.append({**run_child("loader", kind=kind, per_class=per_class,
                                        root=str(folder), side=args.side, workers=workers,
                                        loader_batches=args.loader_batches), "round": r})

    def pick(kind: str, n: int) -> list[dict[str, Any]]:
        return [r for r in runs if r["kind"] == kind and r["train_images"] == n]

    big = max(r["train_images"] for r in runs)
    small = min(r["train_images"] for r in runs)
    ratios = [s["images_per_s"] / m["images_per_s"] for s, m in
              zip(pick("stream", big), pick("memory", big))]
    import torch

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "load_avg_at_start": os.getloadavg()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    results = {"machine": machine, "commit": commit, "settings": vars(args) | {"folder":
                                                                              str(folder)},
               "runs": runs, "loaders": loaders, "ratio_stream_over_memory": ratios}
    lines = [
        "# Streaming image data vs the in-memory image folder",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (shared; load average at start "
        f"{', '.join(f'{v:.1f}' for v in machine['load_avg_at_start'])}), Python "
        f"{machine['python']}, torch {machine['torch']}; commit {commit}.",
        f"Data: CIFAR-10 JPEGs upsampled to {args.side}x{args.side} in ImageNet layout "
        f"({count} files in /tmp). OFA full-network phase with elastic resolution "
        f"{{{args.side - 16}, {args.side - 8}, {args.side}}} on the ImageNet MobileNetV3 space, "
        f"batch 64, {args.steps} steps (images/s over the steps after the first "
        f"{args.warmup}), one intra-op thread; `stream` with {args.workers} DataLoader "
        "workers. Each run is its own process; memory is the peak over the run of the "
        "process tree (trainer + workers), sampled every 50 ms (PSS every 0.5 s).",
        *([f"Runs read from the output of earlier invocations at the same library code "
           f"(`--reuse-log`; training runs: {len(runs)}, loader runs: {len(loaders)})."]
          if args.reuse_log else []),
        "",
        "## Memory against the number of training images",
        "",
        "| module | train images | peak RSS of the tree, MiB: median (min-max) | peak PSS of "
        "the tree, MiB | processes | images/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in (small, big):
        for kind in ("stream", "memory"):
            rs = pick(kind, n)
            lines.append(f"| {kind} | {n:,} | {spread([r['peak_rss_mib'] for r in rs])} | "
                         f"{spread([r['peak_pss_mib'] for r in rs])} | {rs[0]['processes']} | "
                         f"{spread([r['images_per_s'] for r in rs])} |")

    def med(kind: str, n: int, key: str) -> float:
        return statistics.median(r[key] for r in pick(kind, n))

    lines += [
        "",
        f"Medians over {args.rounds} rounds: streaming "
        f"{med('stream', big, 'peak_pss_mib') - med('stream', small, 'peak_pss_mib'):+.0f} MiB "
        f"PSS ({med('stream', big, 'peak_rss_mib') - med('stream', small, 'peak_rss_mib'):+.0f}"
        f" MiB RSS) from {small:,} to {big:,} images; in memory "
        f"{med('memory', big, 'peak_pss_mib') - med('memory', small, 'peak_pss_mib'):+.0f} MiB "
        f"PSS (the decoded array alone is {big * 3 * args.side ** 2 / 2 ** 20:.0f} MiB at "
        f"{big:,} images).",
        "",
        f"## Training throughput at {big:,} images ({len(ratios)} interleaved rounds)",
        "",
        "| module | images/s: median (min-max) | step ms (median of medians) |",
        "|---|---:|---:|",
    ]
    for kind in ("stream", "memory"):
        rs = pick(kind, big)
        lines.append(f"| {kind} | {spread([r['images_per_s'] for r in rs])} | "
                     f"{statistics.median(r['step_ms_median'] for r in rs):.0f} |")
    lines += [
        "",
        f"stream / memory images/s, per round: {', '.join(f'{x:.2f}' for x in ratios)} "
        f"(median {statistics.median(ratios):.2f}).",
        "",
        f"## The training loaders alone ({args.loader_batches} batches of 64 after the first, "
        f"transform on the tensor included, no model; {args.rounds} rounds)",
        "",
        "| module | workers | train images | images/s: median (min-max) | peak PSS of the tree, "
        "MiB | peak RSS, MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    keys = []
    for r in loaders:
        key = (r["kind"], r["workers"], r["train_images"])
        if key not in keys:
            keys.append(key)
    for kind, workers, n in keys:
        rs = [r for r in loaders if (r["kind"], r["workers"], r["train_images"]) ==
              (kind, workers, n)]
        lines.append(f"| {kind} | {workers} | {n:,} | {spread([r['images_per_s'] for r in rs])}"
                     f" | {spread([r['peak_pss_mib'] for r in rs])} | "
                     f"{spread([r['peak_rss_mib'] for r in rs])} |")
    write_results(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
