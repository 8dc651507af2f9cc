#!/usr/bin/env python
"""SPOS on the hybrid convolution-attention space on a CIFAR-10 subset, on a CPU, through the
CLI; then the Pareto front of inherited accuracy vs MEASURED latency with convolution-only
and attention-containing networks marked apart.

1. ``lightning-nas fit --config configs/spos/hybrid_cifar10_subset.yaml`` (in process): the
   weight-entangled supernet, one uniform path per step.
2. ``lightning-nas search --config configs/search/spos_hybrid_cifar10_subset.yaml``:
   regularized evolution over the trained supernet's paths; each candidate's latency is
   measured (CostHook: batch 1, one thread, median of 30 runs after 5 warm-up runs, with
   p10/p90) and its inherited accuracy taken on the held-out images after BN recalibration.
3. The figure ``pareto_conv_vs_attention.png`` and ``results.md`` / ``results.json`` from the
   search's ``candidates.jsonl`` (the system's 1-minute load average sampled every 30 s
   during steps 1 and 2 is reported: the latencies were measured on a shared machine).

    python scripts/hybrid_cifar10_subset.py [--steps fit,search,plot] [--threads 1]
        [--out scripts/results/hybrid_cifar10_subset] [--run runs/spos-hybrid-cifar10-subset]
        [--search-dir runs/search/spos-hybrid-cifar10-subset]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from script_results import cpu_model, write_results  # noqa: E402

FIT_CONFIG = "configs/spos/hybrid_cifar10_subset.yaml"
SEARCH_CONFIG = "configs/search/spos_hybrid_cifar10_subset.yaml"


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while in a ``with`` block."""

    def __init__(self, every: float = 30.0):
        self.every, self.samples = every, []
        self._stop = threading.Event()

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        s = self.samples
        return {"n": len(s), "min": min(s), "median": statistics.median(s), "max": max(s)}


def run_step(argv: list[str], threads: int) -> dict:
    """One CLI command in process, with its wall time and the load average meanwhile."""
    import torch

    from lightning_nas.cli import main

    torch.set_num_threads(threads)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    start = time.perf_counter()
    with LoadSampler() as load:
        main(argv)
    return {"argv": argv, "git_commit": commit, "wall_s": time.perf_counter() - start,
            "load_1min": load.summary()}


def read_candidates(search_dir: Path) -> list[dict]:
    """The ok records of a search journal, one per distinct architecture (the first)."""
    seen, out = set(), []
    for line in (search_dir / "candidates.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("status") != "ok" or rec["arch"] in seen:
            continue
        seen.add(rec["arch"])
        out.append(rec)
    return out


def remeasure(records: list[dict], space, rounds: int, path: Path) -> dict[str, dict]:
    """Every architecture's latency again, in ``rounds`` interleaved rounds (each round
    measures every network once: batch 1, one thread, 5 warm-up + 20 timed runs), so load
    changes on the shared machine hit all networks alike; per network the median and the
    min / max of its round medians. Written to ``path`` (JSON)."""
    import torch

    from lightning_nas.hardware.latency import measure_latency
    from lightning_nas.spaces.base import Arch

    torch.manual_seed(0)
    nets = {rec["arch"]: space.build(Arch.from_dict(rec["arch_json"])).eval()
            for rec in records}
    medians: dict[str, list[float]] = {name: [] for name in nets}
    start = time.perf_counter()
    with LoadSampler(every=10.0) as load, torch.no_grad():
        for _ in range(rounds):
            for name, net in nets.items():
                res = measure_latency(net, (3, 32, 32), warmup=5, repeats=20, num_threads=1)
                medians[name].append(res.median_ms)
    out = {name: {"latency_ms": statistics.median(m), "latency_min_ms": min(m),
                  "latency_max_ms": max(m), "round_medians_ms": m}
           for name, m in medians.items()}
    path.write_text(json.dumps({"rounds": rounds, "wall_s": time.perf_counter() - start,
                                "load_1min": load.summary(), "latency": out}, indent=2) + "\n")
    return out


def plot(records: list[dict], space, png: Path, remeasured: dict | None = None) -> dict:
    """Accuracy vs measured latency, conv-only and attention-containing networks marked
    apart, the front drawn as a step line; returns the numbers behind it."""
    import numpy as np

    from lightning_nas.hardware.pareto import pareto_front
    from lightning_nas.pictures import _new_figure, save_figure
    from lightning_nas.spaces.base import Arch

    rows = []
    for rec in records:
        arch = Arch.from_dict(rec["arch_json"])
        m = rec["metrics"]
        rows.append({"arch": rec["arch"], "trial": rec["trial"],
                     "attention_blocks": space.attention_blocks(arch),
                     "accuracy": m["accuracy"], "search_latency_ms": m["latency_ms"],
                     "search_latency_p10_ms": m["latency_p10_ms"],
                     "search_latency_p90_ms": m["latency_p90_ms"],
                     "params": m["params"], "macs": m["macs"]})
        again = (remeasured or {}).get(rec["arch"])
        rows[-1].update(  # the interleaved re-measurement when there is one, else the search's
            {"latency_ms": again["latency_ms"], "latency_lo_ms": again["latency_min_ms"],
             "latency_hi_ms": again["latency_max_ms"]} if again else
            {"latency_ms": m["latency_ms"], "latency_lo_ms": m["latency_p10_ms"],
             "latency_hi_ms": m["latency_p90_ms"]})
    points = [(r["accuracy"], r["latency_ms"]) for r in rows]
    front = sorted(pareto_front(points, ["max", "min"]), key=lambda i: rows[i]["latency_ms"])
    for i, r in enumerate(rows):
        r["on_front"] = i in front

    fig = _new_figure(7.0, 4.8, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    styles = {False: ("convolution only (MBConv blocks)", "o", "#1f77b4"),
              True: ("with attention (>= 1 transformer block)", "^", "#d62728")}
    for attention, (label, marker, colour) in styles.items():
        sel = [r for r in rows if (r["attention_blocks"] > 0) == attention]
        if not sel:
            continue
        lat = np.array([r["latency_ms"] for r in sel])
        err = np.array([[r["latency_ms"] - r["latency_lo_ms"] for r in sel],
                        [r["latency_hi_ms"] - r["latency_ms"] for r in sel]]).clip(min=0)
        ax.errorbar(lat, [r["accuracy"] for r in sel], xerr=err, fmt="none", ecolor=colour,
                    alpha=0.25, lw=0.8)
        ax.scatter(lat, [r["accuracy"] for r in sel], marker=marker, c=colour, s=28,
                   alpha=0.8, label=f"{label}, n={len(sel)}", edgecolors="none")
    fx = [rows[i]["latency_ms"] for i in front]
    fy = [rows[i]["accuracy"] for i in front]
    ax.step(fx, fy, where="post", color="black", lw=1.0, label=f"Pareto front ({len(front)})")
    ax.scatter(fx, fy, s=90, facecolors="none", edgecolors="black", lw=1.0)
    ax.set_xlabel("measured latency (ms per image, batch 1, 1 CPU thread)\n" + (
        "median of the interleaved rounds' medians, bars min-max of the rounds" if remeasured
        else "median of 30 runs, bars p10-p90"), fontsize=8)
    ax.set_ylabel("inherited accuracy (%) on 1,200 held-out images")
    ax.set_title("SPOS on the hybrid conv-attention space, CIFAR-10 subset (32x32)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, png)
    return {"rows": rows, "front": [rows[i] for i in front]}


def _group(rows: list[dict], attention: bool) -> dict:
    sel = [r for r in rows if (r["attention_blocks"] > 0) == attention]
    if not sel:
        return {"n": 0}
    acc = [r["accuracy"] for r in sel]
    lat = [r["latency_ms"] for r in sel]
    return {"n": len(sel), "accuracy_min": min(acc), "accuracy_median": statistics.median(acc),
            "accuracy_max": max(acc), "latency_min_ms": min(lat),
            "latency_median_ms": statistics.median(lat), "latency_max_ms": max(lat),
            "on_front": sum(r["on_front"] for r in sel)}


def _supernet_validation(run: Path) -> dict:
    import csv

    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("val/acc")]
    last = rows[-1]
    return {"epochs": int(float(last["epoch"])) + 1, "val_acc_mean_5_paths":
            float(last["val/acc"]), "val_acc_best_path": float(last["val/acc_best"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="fit,search,remeasure,plot")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds of the latency re-measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="scripts/results/hybrid_cifar10_subset")
    parser.add_argument("--run", default="runs/spos-hybrid-cifar10-subset")
    parser.add_argument("--search-dir", default="runs/search/spos-hybrid-cifar10-subset")
    opts = parser.parse_args(argv)
    os.chdir(ROOT)
    out, run, search_dir = Path(opts.out), Path(opts.run), Path(opts.search_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = opts.steps.split(",")
    log = out / "steps.json"
    done = json.loads(log.read_text()) if log.exists() else {}
    if "fit" in steps:
        done["fit"] = run_step(["fit", "--config", FIT_CONFIG, "--trainer.default_root_dir",
                                str(run), "--trainer.logger.init_args.save_dir", str(run),
                                "--trainer.enable_progress_bar", "false"], opts.threads)
        log.write_text(json.dumps(done, indent=2) + "\n")
    if "search" in steps:
        done["search"] = run_step(["search", "--config", SEARCH_CONFIG, "--run_dir",
                                   str(search_dir), "--evaluator.init_args.checkpoint",
                                   str(run / "checkpoints" / "last.ckpt")], opts.threads)
        log.write_text(json.dumps(done, indent=2) + "\n")
    if "plot" not in steps and "remeasure" not in steps:
        return done

    import torch
    import yaml

    from lightning_nas.spaces.hybrid import HybridSpace

    space = HybridSpace(**yaml.safe_load(open(SEARCH_CONFIG))["space"]["init_args"])
    records = read_candidates(search_dir)
    again_path = out / "remeasured_latency.json"
    if "remeasure" in steps:
        remeasure(records, space, opts.rounds, again_path)
    again = json.loads(again_path.read_text()) if again_path.exists() else None
    figure = plot(records, space, out / "pareto_conv_vs_attention.png",
                  again["latency"] if again else None)
    rows = figure["rows"]
    summary = json.loads((search_dir / "summary.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    results = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": opts.threads,
                    "torch": torch.__version__, "python": platform.python_version()},
        "git_commit": commit, "steps": done, "supernet": _supernet_validation(run),
        "architectures": len(rows), "conv_only": _group(rows, False),
        "with_attention": _group(rows, True), "front": figure["front"],
        "search_summary_best": summary.get("best"), "candidates": rows}
    load = {k: v["load_1min"] for k, v in done.items()}
    steps_rows = [(k, v["wall_s"], load[k]) for k, v in done.items()]
    if again:
        from scipy.stats import kendalltau

        steps_rows.append(("latency re-measurement", again["wall_s"], again["load_1min"]))
        tau = kendalltau([r["search_latency_ms"] for r in rows],
                         [r["latency_ms"] for r in rows]).statistic
        results["remeasurement"] = {"rounds": again["rounds"],
                                    "kendall_tau_vs_search_latency": tau}
        spread = [r["latency_hi_ms"] / r["latency_lo_ms"] for r in rows]
        results["remeasurement"]["max_over_min_round_median"] = {
            "median": statistics.median(spread), "max": max(spread)}
    lines = [
        "# SPOS on the hybrid convolution-attention space, CIFAR-10 subset, CPU",
        "",
        f"`python scripts/hybrid_cifar10_subset.py` (fit at commit "
        f"`{done.get('fit', {}).get('git_commit', '?')[:10]}`, figure at `{commit[:10]}`): "
        f"`lightning-nas fit --config {FIT_CONFIG}` then `lightning-nas search --config "
        f"{SEARCH_CONFIG}`. {results['machine']['cpu']}, {os.cpu_count()} cores shared with "
        f"other jobs, torch {torch.__version__}, {opts.threads} thread(s).",
        "",
        "![front](pareto_conv_vs_attention.png)",
        "",
        "| step | wall | 1-min load average (min / median / max, n samples) |",
        "|---|---|---|",
        *(f"| {k} | {wall / 60:.1f} min | {la['min']:.2f} / {la['median']:.2f}"
          f" / {la['max']:.2f} (n={la['n']}) |" for k, wall, la in steps_rows),
        "",
        f"Supernet after {results['supernet']['epochs']} epochs: mean validation accuracy of "
        f"the 5 fixed paths {100 * results['supernet']['val_acc_mean_5_paths']:.1f}%, best "
        f"{100 * results['supernet']['val_acc_best_path']:.1f}% (supernet forward, no BN "
        "recalibration).",
        "",
        f"Search: {len(rows)} distinct architectures evaluated (inherited accuracy on the "
        "1,200 held-out training images after BN recalibration on 512 training images; latency "
        "measured per candidate during the search, batch 1, 1 thread, median of 30 runs after "
        "5 warm-up runs).",
        "",
        *([f"Latency below and in the figure: every architecture measured again after the "
           f"search in {again['rounds']} interleaved rounds (each round times every network "
           "once: 5 warm-up + 20 timed runs, batch 1, 1 thread), the median of its round "
           "medians; bars and the ranges in the front table are the min-max of the round "
           "medians (max/min per network: median "
           f"{results['remeasurement']['max_over_min_round_median']['median']:.2f}x, worst "
           f"{results['remeasurement']['max_over_min_round_median']['max']:.2f}x). Kendall "
           "tau between the search-time latency and the re-measured one: "
           f"{results['remeasurement']['kendall_tau_vs_search_latency']:.2f} (n={len(rows)})."
           " The search's own pareto.json/png (in the run folder) uses the search-time "
           "latency.", ""] if again else []),
        "| group | n | accuracy % min / median / max | latency ms min / median / max | on front |",
        "|---|---|---|---|---|",
    ]
    for name, g in (("convolution only", results["conv_only"]),
                    ("with attention", results["with_attention"])):
        if g["n"]:
            lines.append(f"| {name} | {g['n']} | {g['accuracy_min']:.1f} / "
                         f"{g['accuracy_median']:.1f} / {g['accuracy_max']:.1f} | "
                         f"{g['latency_min_ms']:.2f} / {g['latency_median_ms']:.2f} / "
                         f"{g['latency_max_ms']:.2f} | {g['on_front']} |")
        else:
            lines.append(f"| {name} | 0 | - | - | - |")
    lines += ["", "Pareto front (accuracy max, latency min), fastest first:", "",
              "| architecture | transformer blocks | accuracy % | latency ms (range) | "
              "params |", "|---|---|---|---|---|"]
    for r in figure["front"]:
        arch = r["arch"].replace("|", "\\|")  # a table cell
        lines.append(f"| `{arch}` | {r['attention_blocks']} | {r['accuracy']:.2f} | "
                     f"{r['latency_ms']:.3f} ({r['latency_lo_ms']:.3f}-"
                     f"{r['latency_hi_ms']:.3f}) | {r['params']:,} |")
    lines += ["", "Accuracies are inherited from one supernet (one training run, seed 0) on "
              "1,200 images: differences under about 2.5 points (two binomial standard "
              "errors at 50%) are noise. Latencies were measured while other jobs shared the "
              "2 cores (load above).", ""]
    write_results(out, results, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()
