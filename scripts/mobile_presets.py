"""Published NAS-found mobile networks on this machine: parameters and multiply-adds against
the papers' tables, and CPU latency at batch 1 (PyTorch eager and ONNX Runtime), with one
Pareto figure.

For every preset of :mod:`lightning_nas.spaces.mobile_blocks` (EfficientNet-B0..B7,
MnasNet-A1/B1, MobileNetV3-Large/Small, ProxylessNAS Mobile/CPU/GPU; 1000 classes):

* parameters, and multiply-adds at 224x224 and at the published resolution (EfficientNet-Bn
  its own), counted with the project's FLOPs counter on the meta device (FLOPs = 2 x MACs;
  convolutions and the classifier only), against the published figures;
* latency at the published resolution, batch 1, ``--threads`` intra-op threads: ``--warmup``
  untimed runs, then the median, quartiles and n of timed runs (``--repeats``, fewer for
  slow networks so that each takes at most about ``--seconds`` of timed runs, never under 5);
  the same with ONNX Runtime's CPU execution provider when ``onnxruntime`` is installed
  (``--no-onnx`` skips it). Networks are randomly initialised (latency does not depend on
  the weights).

    python scripts/mobile_presets.py              # ~5 min on 2 cores, 1 thread

Writes ``scripts/results/mobile_presets/results.json`` and ``results.md`` and the figure
``docs/mobile_presets_pareto.png``: published ImageNet top-1 vs CPU latency (the presets'
Pareto front), latency vs multiply-adds, latency vs parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_results import cpu_model, write_results  # noqa: E402

from lightning_nas.hardware.latency import measure_latency  # noqa: E402
from lightning_nas.hardware.metrics import count_flops  # noqa: E402
from lightning_nas.hardware.reference import PUBLISHED_TOP1  # noqa: E402
from lightning_nas.spaces.mobile_blocks import PRESETS, PUBLISHED, MobileBlockSpace  # noqa: E402


def timed_runs(fn, warmup: int, repeats: int, seconds: float) -> list[float]:
    """ms of ``repeats`` calls of ``fn`` after ``warmup`` (fewer when slow, at least 5)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter_ns()
    fn()
    first = (time.perf_counter_ns() - t0) / 1e6
    n = max(5, min(repeats, int(seconds * 1000 / max(first, 1e-3))))
    out = [first]
    for _ in range(n - 1):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def stats(times: list[float]) -> dict[str, float]:
    q = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(q[1]), "p25_ms": float(q[0]), "p75_ms": float(q[2]),
            "n": len(times)}


def onnx_latency(net, r: int, threads: int, warmup: int, repeats: int, seconds: float):
    from lightning_nas.hardware.onnx_export import export_onnx, ort_session

    x = torch.randn(1, 3, r, r)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(net, x, Path(tmp) / "net.onnx")
        session = ort_session(path, threads=threads)
        name = session.get_inputs()[0].name
        feed = {name: x.numpy()}
        return stats(timed_runs(lambda: session.run(None, feed), warmup, repeats, seconds))


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated in (x lower, y higher)."""
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        keep[i] = not np.any((x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i])))
    return keep


def figure(rows: list[dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(15, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    lat = np.array([r["latency"]["median_ms"] for r in rows])
    err = np.array([[r["latency"]["median_ms"] - r["latency"]["p25_ms"] for r in rows],
                    [r["latency"]["p75_ms"] - r["latency"]["median_ms"] for r in rows]])
    colours = {"EfficientNet": "tab:blue", "MnasNet": "tab:orange", "MobileNetV3": "tab:green",
               "ProxylessNAS": "tab:red"}
    col = [colours[r["name"].split("-")[0]] for r in rows]
    panels = [("published ImageNet top-1 (%)", "top1"), ("multiply-adds (M)", "macs"),
              ("parameters (M)", "params")]
    for k, (label, key) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        if key == "top1":
            sel = [i for i, r in enumerate(rows) if r["top1"] is not None]
            x, y = lat[sel], np.array([rows[i]["top1"] for i in sel])
            front = pareto_mask(x, y)
            order = np.argsort(x[front])
            ax.step(x[front][order], y[front][order], where="post", color="0.4", lw=1,
                    zorder=1, label="Pareto front of the presets")
            ax.scatter(x, y, c=[col[i] for i in sel], s=36, edgecolors="black",
                       linewidths=0.5, zorder=2)
            for i, xx, yy in zip(sel, x, y):
                ax.annotate(rows[i]["name"].replace("EfficientNet-", "").replace(
                    "ProxylessNAS-", "Proxyless-"), (xx, yy), xytext=(3, -9),
                    textcoords="offset points", fontsize=6)
            ax.set_xscale("log")
            ax.set_xlabel("CPU latency, batch 1 (ms, median; published resolution)")
            ax.set_ylabel(label)
            ax.legend(fontsize=7, loc="lower right")
        else:
            v = np.array([r[key] for r in rows]) / 1e6
            ax.errorbar(v, lat, yerr=err, fmt="none", ecolor="0.5", lw=0.8, zorder=1)
            ax.scatter(v, lat, c=col, s=30, edgecolors="black", linewidths=0.5, zorder=2)
            for r, xx, yy in zip(rows, v, lat):
                ax.annotate(r["name"].replace("EfficientNet-", "").replace(
                    "ProxylessNAS-", "Proxyless-"), (xx, yy), xytext=(3, 3),
                    textcoords="offset points", fontsize=6)
            ax.set_xlabel(f"{label} at the published resolution" if key == "macs" else label)
            ax.set_ylabel("CPU latency, batch 1 (ms; bars: quartiles)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, alpha=0.3, which="both")
    for name, c in colours.items():
        fig.axes[0].scatter([], [], c=c, label=name, edgecolors="black", linewidths=0.5)
    fig.axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="*", default=None, help="presets (default all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="about this many seconds of timed runs per network at most")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--out", default="scripts/results/mobile_presets")
    parser.add_argument("--figure", default="docs/mobile_presets_pareto.png")
    parser.add_argument("--from-json", default=None,
                        help="re-render the table and figure from a results.json (no timing)")
    opts = parser.parse_args()
    if opts.from_json:
        saved = json.loads(Path(opts.from_json).read_text())
        report(saved["rows"], opts, saved["machine"], saved["load_before"],
               saved["load_after"], saved["median_check_ms"], saved["commit"])
        return
    torch.set_num_threads(opts.threads)
    try:
        import onnxruntime  # noqa: F401

        use_onnx = not opts.no_onnx
    except ImportError:
        use_onnx = False
    load_before = os.getloadavg()[0]
    space = MobileBlockSpace()
    rows = []
    for name in opts.names or list(PRESETS):
        arch = PRESETS[name]
        r = int(arch["resolution"])
        with torch.device("meta"):
            meta = space.build(arch)
        macs = count_flops(meta, (3, r, r)).macs
        macs224 = count_flops(meta, (3, 224, 224)).macs
        params = sum(p.numel() for p in meta.parameters())
        torch.manual_seed(0)
        net = space.build(arch).eval()
        x = torch.randn(1, 3, r, r)
        with torch.no_grad():
            lat = stats(timed_runs(lambda: net(x), opts.warmup, opts.repeats, opts.seconds))
        ort = onnx_latency(net, r, opts.threads, opts.warmup, opts.repeats, opts.seconds) \
            if use_onnx else None
        pub_params, pub_macs, source = PUBLISHED[name]
        row = {"name": name, "resolution": r, "params": params, "macs": macs,
               "macs_224": macs224, "published_params": pub_params,
               "published_macs": pub_macs, "source": source, "top1": PUBLISHED_TOP1.get(name),
               "latency": lat, "onnxruntime": ort, "arch": space.to_string(arch)}
        rows.append(row)
        Path(opts.out).mkdir(parents=True, exist_ok=True)
        (Path(opts.out) / "partial.json").write_text(json.dumps(rows, indent=1))
        print(f"{name}: {params / 1e6:.2f} M params, {macs / 1e6:.1f} M MACs @{r}, "
              f"{lat['median_ms']:.1f} ms (n={lat['n']})"
              + (f", ORT {ort['median_ms']:.1f} ms" if ort else ""), flush=True)
    load_after = os.getloadavg()[0]
    # sanity: measure_latency of the project on the smallest network agrees in magnitude
    check = measure_latency(space.build(PRESETS["MobileNetV3-Small"]), (3, 224, 224),
                            warmup=2, repeats=10, num_threads=opts.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, {opts.threads} thread(s), torch "
               f"{torch.__version__}")
    (Path(opts.out) / "partial.json").unlink(missing_ok=True)
    report(rows, opts, machine, load_before, load_after, check.median_ms, commit)


def report(rows: list[dict], opts: argparse.Namespace, machine: str, load_before: float,
           load_after: float, check_ms: float, commit: str) -> None:

    def pct(a, b):
        return f"{(a / b - 1) * 100:+.1f}%" if b else "-"

    def spread(s):
        return f"{s['median_ms']:.1f} ({s['p25_ms']:.1f}-{s['p75_ms']:.1f}, n={s['n']})"

    lines = ["# Published mobile networks: parameters, multiply-adds, CPU latency", "",
             f"Machine: {machine}. Batch 1, {opts.warmup} warm-up runs, then the median "
             "(quartiles, n) of timed runs at the published resolution; 1000 classes; "
             "random weights. Multiply-adds from the project's FLOPs counter (convolutions "
             "and the classifier; FLOPs = 2 x MACs; SE products, activations and BN not "
             "counted). 1-minute load average "
             f"{load_before:.2f} before, {load_after:.2f} after"
             + (f" (above the {os.cpu_count()} cores: other processes shared the CPU, so "
                "the quartile ranges are wide; treat networks whose ranges overlap as tied)"
                if max(load_before, load_after) > (os.cpu_count() or 1) else "") + ".", "",
             "| network | res | params | paper | diff | MACs @res | paper | diff | MACs @224 "
             "| top-1 (paper) | PyTorch ms | ONNX Runtime ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        pp, pm = row["published_params"], row["published_macs"]
        lines.append(
            f"| {row['name']} | {row['resolution']} | {row['params'] / 1e6:.2f} M | "
            f"{f'{pp / 1e6:g} M' if pp else '-'} | {pct(row['params'], pp)} | "
            f"{row['macs'] / 1e6:,.0f} M | {f'{pm / 1e6:,g} M' if pm else '-'} | "
            f"{pct(row['macs'], pm)} | {row['macs_224'] / 1e6:,.0f} M | "
            f"{row['top1'] if row['top1'] else '-'} | {spread(row['latency'])} | "
            f"{spread(row['onnxruntime']) if row['onnxruntime'] else '-'} |")
    lines += ["", f"Check: `measure_latency` (the project's) of MobileNetV3-Small at 224: "
              f"{check_ms:.1f} ms median (n=10).", "",
              f"`python scripts/mobile_presets.py` at commit {commit}; figure "
              f"`{opts.figure}`.", ""]
    figure(rows, Path(opts.figure), f"Published NAS-found mobile networks on {machine}; "
           "batch 1, published resolution; top-1 as published (ImageNet)")
    write_results(opts.out, {"rows": rows, "machine": machine, "threads": opts.threads,
                             "warmup": opts.warmup, "repeats": opts.repeats,
                             "seconds": opts.seconds, "load_before": load_before,
                             "load_after": load_after, "commit": commit,
                             "median_check_ms": check_ms}, "\n".join(lines))


if __name__ == "__main__":
    main()
