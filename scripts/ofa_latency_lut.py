"""Once-for-All's latency lookup table: predicted vs measured CPU latency of random subnets.

The figure of Cai et al., "Once-for-All" (ICLR 2020, Sec. 3.3: latency predicted from a
per-layer lookup table measured on the target device) on this machine's CPU: the
:class:`~lightning_nas.hardware.latency_lut.LatencyTable` of the elastic MobileNetV3 space
(CIFAR configuration by default, 32x32) predicts the latency of ``--n`` random subnets, each
of which is also built and timed as a whole network with
:func:`~lightning_nas.hardware.latency.measure_latency` (batch 1, 1 thread by default).

Steps:

1. **Build** the table (``--table`` loads a saved one instead): ``--rounds`` round-robin
   passes over all layer configurations, entry = median over rounds of the median of
   ``--repeats`` runs; then measure ``--calibrate`` whole networks (the smallest, the
   largest, random ones with another seed, none of them among the evaluated subnets) and fit
   the overhead (``scale * sum + overhead_ms``). This is the table as it would be deployed:
   built once, then used.
2. **Measure** the ``--n`` subnets (seeded ``random.Random``, distinct networks) in
   ``--net-rounds`` round-robin passes of ``--net-repeats`` runs each (median of the round
   medians). Every round also re-measures all table entries and the calibration networks,
   which gives a second table, *interleaved* in time with the measurements.
3. **Report**, for the table built first and the interleaved one, the plain per-layer sum
   (OFA's predictor) and the calibrated predictions (fits ``linear``, ``scale``, ``offset``
   on the calibration networks): share of subnets within +-10% (and +-5%, +-20%) of the
   measurement, mean absolute percentage error, mean signed error, Pearson and Spearman
   correlation; plus the range of the measured latencies, the drift between the two tables
   (median entry ratio), the build time, the measurement settings, the machine, and the
   1-minute load average before and after (the machine has 2 cores; another job on the
   other core slows memory-bound work).

The first setting is what a search sees; the gap between the two isolates the machine's
drift over time (a shared virtual machine can change speed by tens of percent for minutes)
from the additive model's own error.

Usage::

    python scripts/ofa_latency_lut.py                       # CIFAR, 100 subnets, ~3-5 min
    python scripts/ofa_latency_lut.py --space imagenet --resolutions 128,160 --n 50 \\
        --net-repeats 20 --net-rounds 3 --out runs/ofa_lut_imagenet
"""

from __future__ import annotations

import argparse
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

FITS = ("scale", "linear", "offset")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", choices=("cifar", "imagenet"), default="cifar")
    p.add_argument("--resolutions", default=None,
                   help="comma-separated resolutions overriding the space's, e.g. 128,160")
    p.add_argument("--n", type=int, default=100, help="random subnets to evaluate")
    p.add_argument("--seed", type=int, default=0, help="seed of the subnet sample")
    p.add_argument("--table", default=None,
                   help="load this table instead of building one (must match the space)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10, help="per layer / network and round")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per layer and round")
    p.add_argument("--rounds", type=int, default=3, help="passes over the layers (build)")
    p.add_argument("--calibrate", type=int, default=10,
                   help="whole networks measured to fit the overhead")
    p.add_argument("--fit", choices=FITS, default="scale",
                   help="calibration saved with the table")
    p.add_argument("--net-repeats", type=int, default=40,
                   help="timed runs per subnet and round")
    p.add_argument("--net-rounds", type=int, default=5, help="passes over the subnets")
    p.add_argument("--out", default=str(ROOT / "scripts/results/ofa_latency_lut"))
    return p.parse_args(argv)


def machine() -> dict:
    import torch

    from lightning_nas.hardware.latency import device_name

    return {"device_name": device_name("cpu"), "cores_visible": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


def make_space(args):
    from lightning_nas.spaces.mobilenet import MobileNetV3Space

    kwargs = {}
    if args.resolutions:
        kwargs["resolutions"] = tuple(int(r) for r in args.resolutions.split(","))
    return MobileNetV3Space.cifar(**kwargs) if args.space == "cifar" else \
        MobileNetV3Space(**kwargs)


def sample_subnets(space, n: int, seed: int, exclude) -> list:
    """``n`` distinct networks (canonical archs) drawn uniformly with ``random.Random``."""
    rng, archs, seen = random.Random(seed), [], set(exclude)
    while len(archs) < n:
        a = space.canonical(space.sample(rng))
        if a not in seen:
            seen.add(a)
            archs.append(a)
    return archs


def errors(pred, meas) -> dict:
    """Agreement of predicted and measured latencies (ms): shares within +-5/10/20%, MAPE,
    mean signed error (ms and %), Pearson, Spearman."""
    from scipy.stats import pearsonr, spearmanr

    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    rel = (pred - meas) / meas
    return {"within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "within_20pct": float(np.mean(np.abs(rel) <= 0.20)),
            "mape_pct": float(np.mean(np.abs(rel)) * 100),
            "mean_signed_pct": float(np.mean(rel) * 100),
            "mean_signed_ms": float(np.mean(pred - meas)),
            "max_abs_pct": float(np.max(np.abs(rel)) * 100),
            "pearson": float(pearsonr(pred, meas)[0]),
            "spearman": float(spearmanr(pred, meas)[0])}


def in_network_ratios(table, archs, *, warmup: int, repeats: int) -> dict:
    """Time every layer inside the whole network (modules run in the network's order, a clock
    read between them) and divide by its table entry, grouped by stem+first block, stage and
    head: where the per-layer sum misses time."""
    import time as _time

    import torch

    space = table.space
    ratios: dict[str, list[float]] = {}
    totals = []
    for n, arch in enumerate(archs):
        torch.manual_seed(n)
        net = space.build(arch).eval()
        keys = list(table.breakdown(arch))
        mods = [net.stem, net.first_block, *net.blocks]

        def head(x, net=net):
            return net.classifier(net.feature_mix(net.pool(net.final_expand(x))).flatten(1))

        r = int(arch["resolution"])
        x0 = torch.randn(table.batch_size, space.build_defaults["in_channels"], r, r)
        times = [[] for _ in range(len(mods) + 1)]
        with torch.inference_mode():
            for rep in range(warmup + repeats):
                x, t0 = x0, _time.perf_counter_ns()
                for i, m in enumerate([*mods, head]):
                    x = m(x)
                    t1 = _time.perf_counter_ns()
                    if rep >= warmup:
                        times[i].append((t1 - t0) / 1e6)
                    t0 = t1
        med = [float(np.median(t)) for t in times]
        entries = [table.entries[k.split("#")[0]] for k in keys]
        totals.append(sum(med) / sum(entries))
        for k, m_ms, e_ms in zip(keys, med, entries):
            group = "stem + first block" if k.startswith(("stem", "first")) else \
                "head" if k.startswith("head") else f"stage {k.split('|')[1][1]}"
            ratios.setdefault(group, []).append(m_ms / e_ms)
    order = ["stem + first block", *sorted(g for g in ratios if g.startswith("stage")), "head"]
    return {"subnets": len(archs), "ratio_total": float(np.median(totals)),
            "ratio_by_group": {g: float(np.median(ratios[g])) for g in order if g in ratios}}


def run(args) -> dict:
    import torch

    from lightning_nas.hardware.latency_lut import LatencyTable

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    space = make_space(args)

    # 1. the table as deployed: built (or loaded) before any measurement
    if args.table and Path(args.table).exists():
        table = LatencyTable.load(args.table, space=space)
        print(f"loaded {args.table}: {table}", flush=True)
        cal_archs = table.calibration_archs(args.calibrate, seed=args.seed + 1)
        if table.calibration is None:
            table.calibrate(cal_archs, fit=args.fit, progress=True)
    else:
        table = LatencyTable.build(space, batch_size=args.batch_size, warmup=args.warmup,
                                   repeats=args.repeats, rounds=args.rounds,
                                   num_threads=args.threads, progress=True,
                                   calibrate=args.calibrate, calibrate_fit=args.fit,
                                   seed=args.seed + 1)
        table.save(Path(args.out) / "table.json")
        cal_archs = table.calibration_archs(args.calibrate, seed=args.seed + 1)
    build_seconds = table.metadata.get("build_seconds")
    cal = table.calibration
    cal_archs = [space.parse(s) for s in cal["archs"]]
    print(f"table: {table}; calibration MAPE {cal['mape_sum_pct']:.1f}% (sum) -> "
          f"{cal['mape_calibrated_pct']:.1f}% (in-sample)", flush=True)

    # 2. subnets: interleave whole-network rounds with table re-measurements
    archs = sample_subnets(space, args.n, args.seed, exclude=cal_archs)
    everything = cal_archs + archs
    nets_rounds, table_rounds = [], []
    for rnd in range(args.net_rounds):
        t0 = time.perf_counter()
        retable = LatencyTable.build(space, batch_size=args.batch_size, warmup=args.warmup,
                                     repeats=args.repeats, rounds=1, num_threads=args.threads,
                                     progress=False)
        table_rounds.append(retable.entries)
        nets_rounds.append(table.measure_archs(everything, warmup=args.warmup,
                                               repeats=args.net_repeats, rounds=1))
        print(f"round {rnd + 1}/{args.net_rounds}: {len(retable)} entries and "
              f"{len(everything)} networks in {time.perf_counter() - t0:.1f} s "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    measured_all = np.median(np.asarray(nets_rounds), axis=0)
    round_spread = np.asarray(nets_rounds) / measured_all  # per round, per network
    cal_meas, measured = measured_all[:len(cal_archs)], measured_all[len(cal_archs):]
    interleaved = LatencyTable(space, {k: float(np.median([t[k] for t in table_rounds]))
                                       for k in table.entries},
                               metadata={**table.metadata, "rounds": args.net_rounds})

    # 3. predictions
    rows = []
    for name, tab, cal_measured in (("built first", table, cal["measured_ms"]),
                                    ("interleaved", interleaved, cal_meas)):
        plain = tab.uncalibrated()
        rows.append({"table": name, "predictor": "plain sum (OFA)", "overhead_ms": 0.0,
                     "scale": 1.0, **errors([plain.predict(a) for a in archs], measured)})
        for fit in FITS:
            fitted = tab.uncalibrated()
            fitted.calibrate(cal_archs, fit=fit, measured_ms=cal_measured)
            rows.append({"table": name, "predictor": f"calibrated ({fit})",
                         "overhead_ms": fitted.overhead_ms, "scale": fitted.scale,
                         **errors([fitted.predict(a) for a in archs], measured)})
    in_network = in_network_ratios(interleaved, archs[:5], warmup=args.warmup,
                                   repeats=args.net_repeats * 2)
    drift = np.asarray([interleaved.entries[k] / table.entries[k] for k in table.entries])
    cal_drift = np.asarray(cal_meas) / np.asarray(cal["measured_ms"])
    load_after = os.getloadavg()
    subnets = [{"arch": space.to_string(a), "measured_ms": float(m),
                "sum_built_first_ms": table.uncalibrated().predict(a),
                "predicted_ms": table.predict(a), "sum_interleaved_ms": interleaved.predict(a)}
               for a, m in zip(archs, measured)]
    return {
        "space": args.space, "resolutions": list(space.resolutions), "n": len(archs),
        "seed": args.seed, "rows": rows, "saved_fit": table.calibration["fit"],
        "measured_ms": {"min": float(measured.min()), "max": float(measured.max()),
                        "median": float(np.median(measured))},
        "table": {"entries": len(table), "build_seconds": build_seconds,
                  "calibrate_seconds": table.metadata.get("calibrate_seconds"),
                  "warmup": table.metadata.get("warmup"), "repeats": table.metadata.get("repeats"),
                  "rounds": table.metadata.get("rounds"), "calibration_networks": len(cal_archs),
                  "loaded_from": args.table},
        "drift": {"entry_ratio_median": float(np.median(drift)),
                  "entry_ratio_p10": float(np.percentile(drift, 10)),
                  "entry_ratio_p90": float(np.percentile(drift, 90)),
                  "calibration_networks_ratio_median": float(np.median(cal_drift)),
                  "round_to_median_ratio_p10": float(np.percentile(round_spread, 10)),
                  "round_to_median_ratio_p90": float(np.percentile(round_spread, 90))},
        "measurement": {"batch_size": args.batch_size, "threads": args.threads,
                        "warmup": args.warmup, "net_repeats": args.net_repeats,
                        "net_rounds": args.net_rounds, "statistic": "median over rounds of the "
                        "median over repeats", "device": "cpu"},
        "loadavg_before": list(load_before), "loadavg_after": list(load_after),
        "seconds_total": time.perf_counter() - t_start, "machine": machine(),
        "in_network": in_network, "subnets": subnets}


def markdown(res: dict) -> str:
    m, t, d, s = res["machine"], res["table"], res["drift"], res["measurement"]
    lines = [(f"# Once-for-All latency lookup table vs measured CPU latency ({res['space']}, "
             f"resolutions {res['resolutions']}), n = {res['n']} random subnets"), "",
             (f"Machine: {m['device_name']}, torch {m['torch']}, {s['threads']} thread(s), batch "
             f"{s['batch_size']}. Table: {t['entries']} entries, {t['rounds']} rounds x "
             f"{t['repeats']} runs (warm-up {t['warmup']}), built in "
             f"{t['build_seconds']:.1f} s; calibration on {t['calibration_networks']} other "
             f"networks ({t['calibrate_seconds'] or 0:.1f} s). Subnets: median of "
             f"{s['net_rounds']} rounds x {s['net_repeats']} runs; measured "
             f"{res['measured_ms']['min']:.2f} .. {res['measured_ms']['max']:.2f} ms (median "
             f"{res['measured_ms']['median']:.2f}). Load average (1/5/15 min) before "
             f"{'/'.join(f'{x:.2f}' for x in res['loadavg_before'])}, after "
             f"{'/'.join(f'{x:.2f}' for x in res['loadavg_after'])}; total "
             f"{res['seconds_total']:.0f} s."), "",
             ("| table | predictor | scale | overhead ms | within +-10% | within +-5% | "
             "within +-20% | MAPE % | mean signed % | mean signed ms | max abs % | Pearson | "
             "Spearman |"), "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['table']} | {r['predictor']} | {r['scale']:.3f} | "
                     f"{r['overhead_ms']:.3f} | {r['within_10pct']:.0%} | "
                     f"{r['within_5pct']:.0%} | {r['within_20pct']:.0%} | {r['mape_pct']:.1f} | "
                     f"{r['mean_signed_pct']:+.1f} | {r['mean_signed_ms']:+.3f} | "
                     f"{r['max_abs_pct']:.1f} | {r['pearson']:.3f} | {r['spearman']:.3f} |")
    lines += ["", ("*built first*: the table and its calibration measured before the subnets "
              "(how a search uses it); *interleaved*: entries and calibration networks "
              "re-measured in every round of the subnet measurements (isolates the additive "
              "model's error from the machine's drift over time). Calibration: "
              "`scale * sum + overhead_ms` fitted on the calibration networks only (the "
              f"saved table uses `{res['saved_fit']}`)."), "",
              (f"Drift between the two tables: interleaved / built-first entry ratio median "
              f"{d['entry_ratio_median']:.3f} (p10 {d['entry_ratio_p10']:.3f}, p90 "
              f"{d['entry_ratio_p90']:.3f}); calibration networks "
              f"{d['calibration_networks_ratio_median']:.3f}. One round's subnet median / "
              f"median over rounds: p10 {d['round_to_median_ratio_p10']:.3f}, p90 "
              f"{d['round_to_median_ratio_p90']:.3f}.")]
    ctx = res["in_network"]
    lines += ["", f"## Where the plain sum loses time ({ctx['subnets']} subnets)", "",
              ("Each layer timed inside the whole network (the network's modules run in order, "
              "a clock read between them; median over runs) / its standalone table entry "
              "(interleaved table):"), "",
              "| layers | in-network / standalone |", "|---|---|"]
    lines += [f"| {group} | {ratio:.2f} |" for group, ratio in ctx["ratio_by_group"].items()]
    lines.append(f"| whole network (sum of the in-network layer times / plain sum) | "
                 f"{ctx['ratio_total']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    res = run(args)
    res["command"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    write_results(args.out, res, markdown(res))
    return res


if __name__ == "__main__":
    main()
