#!/usr/bin/env python
"""The multi-trial search loop's own cost per trial against the number of trials.

Runs ``lightning-nas search`` (the real CLI, ``configs/search/nb201_*.yaml`` with the
NAS-Bench-201 table of ``../shared/data``) for each sampler and trial count, each in its own
process, with ``--progress false``. Reported per run, from the search's ``summary.json`` and
the process:

* the loop overhead per trial in ms (median and p90): sampler ask/tell, validation, journal
  line and state snapshots; not the evaluator (a table lookup) or hooks;
* the end-to-end wall time of the CLI process (start-up, table load and report included);
* the peak RSS of the search process (``ru_maxrss``) and the journal / state file sizes.

BO refits its surrogate as configured in ``nb201_bo.yaml`` (a 5-member MLP ensemble, 200
full-batch epochs per fit; the refit interval is read from the config and printed with the
results): a fit's cost grows with the results, so its median per trial stays small while
its mean carries the refits; both are reported. ``--bo-max`` caps its trial counts.

    python scripts/bench_search_loop.py [--trials 100 1000 4000 15625] [--bo-max 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from script_results import cpu_model, write_results  # noqa: E402

CONFIGS = {"random": "nb201_random.yaml", "rea": "nb201_evolution.yaml",
           "bo": "nb201_bo.yaml", "reinforce": "nb201_reinforce.yaml"}

# the child: run the CLI's search, then report its peak RSS (KiB on Linux)
CHILD = """
import json, resource, sys
from lightning_nas.search.cli import main_search
main_search(sys.argv[1:])
print("PEAK_RSS_KB " + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_one(sampler: str, trials: int, folder: Path) -> dict[str, Any]:
    run_dir = folder / f"{sampler}-{trials}"
    cmd = [sys.executable, "-c", CHILD, "--config", str(ROOT / "configs/search" /
                                                         CONFIGS[sampler]),
           "--budget_trials", str(trials), "--run_dir", str(run_dir), "--progress", "false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=7200)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{sampler} {trials}: {proc.stderr[-2000:]}")
    peak_kb = int(next(line.split()[1] for line in proc.stdout.splitlines()
                       if line.startswith("PEAK_RSS_KB")))
    summary = json.loads((run_dir / "summary.json").read_text())
    overhead = summary.get("overhead_ms_per_trial") or {}
    sizes = {p.name: p.stat().st_size for p in run_dir.iterdir() if p.is_file()}
    return {"sampler": sampler, "trials": trials, "wall_s": wall, "peak_rss_mb": peak_kb / 1024,
            "overhead_ms": overhead, "journal_kb": sizes.get("candidates.jsonl", 0) / 1024,
            "state_kb": sizes.get("search_state.pt", 0) / 1024}


def bo_refit() -> str:
    """The refit interval of the BO config, as the benchmark ran it."""
    import yaml

    args = yaml.safe_load((ROOT / "configs/search" / CONFIGS["bo"]).read_text())
    init = args["sampler"]["init_args"]
    return (f"retrain_every {init.get('retrain_every', 1)}, retrain_growth "
            f"{init.get('retrain_growth', 0.0)}, {init.get('ensemble_size', 5)} members x "
            f"{init.get('epochs', 200)} epochs per fit")


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = ["# Search loop cost per trial (NAS-Bench-201 table, `lightning-nas search`)", "",
             f"Machine: {meta['machine']}, {meta['cpus']} CPUs; one process per run, "
             f"`--progress false`; load average {meta['load_before']:.2f} before, "
             f"{meta['load_after']:.2f} after.", "",
             f"BO as configured: {meta.get('bo_refit', '?')}.", "",
             "| sampler | trials | loop overhead median ms | p90 ms | mean ms | wall s (CLI) | "
             "peak RSS MB | journal KB | state KB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["runs"]:
        o = r["overhead_ms"]
        lines.append(f"| {r['sampler']} | {r['trials']} | {o.get('median', float('nan')):.3f} | "
                     f"{o.get('p90', float('nan')):.3f} | {o.get('mean', float('nan')):.3f} | "
                     f"{r['wall_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['journal_kb']:.0f} | {r['state_kb']:.0f} |")
    lines += ["", "Flatness (median overhead at the largest count / at the smallest):"]
    for sampler, ratio in results["flatness"].items():
        lines.append(f"- {sampler}: {ratio:.2f}x")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 4000, 15625])
    parser.add_argument("--samplers", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--bo-max", type=int, default=None,
                        help="largest trial count for BO (default: all of --trials)")
    parser.add_argument("--out", default=str(ROOT / "scripts/results/bench_search_loop"))
    opts = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in opts.samplers:
            for trials in opts.trials:
                if sampler == "bo" and opts.bo_max is not None and trials > opts.bo_max:
                    continue
                r = run_one(sampler, trials, Path(tmp))
                o = r["overhead_ms"]
                print(f"{sampler:9s} {trials:6d} trials: overhead median "
                      f"{o.get('median', float('nan')):.3f} ms, p90 {o.get('p90', float('nan')):.3f}"
                      f" ms, wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
                runs.append(r)
    flatness = {}
    for sampler in opts.samplers:
        mine = [r for r in runs if r["sampler"] == sampler and r["overhead_ms"].get("median")]
        if len(mine) > 1:
            flatness[sampler] = mine[-1]["overhead_ms"]["median"] / mine[0]["overhead_ms"]["median"]
    cpu = cpu_model()
    results = {"runs": runs, "flatness": flatness,
               "meta": {"machine": cpu, "cpus": os.cpu_count(), "load_before": load_before,
                        "bo_refit": bo_refit(),
                        "load_after": os.getloadavg()[0],
                        "median_of_medians": statistics.median(
                            [r["overhead_ms"].get("median", 0.0) for r in runs] or [0.0])}}
    write_results(opts.out, results, table(results))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
