"""Compound scaling of discovered architectures: multiply-adds at phi = -1, 0, 1, 2 against
the ideal 2**phi (Tan & Le, ICML 2019, Sec. 3.3: alpha * beta**2 * gamma**2 = 1.92 ~ 2).

Networks: DARTS_V2 in the paper's CIFAR evaluation network (36 channels, 20 cells, 32x32)
and NB201 cells (16 channels, 5 cells per stage), scaled in channels (multiples of 4) and
cells (ceil); ``--n`` random Once-for-All subnets of the ImageNet and CIFAR configurations
and the mobile presets, scaled in channels, blocks and resolution: the paper's rounding
(channels to multiples of 8, each stage's repeats rounded up), the network's block total
rounded instead ('network', :func:`~lightning_nas.spaces.mobile_blocks.stage_block_counts`),
and for the OFA subnets also channels to multiples of 4, which is ``scale``'s default for
them (the table marks every kind's default). Multiply-adds
are counted on the meta device with the project's FLOPs counter (no timing, no randomness
beyond the seeded subnet draws), so the table is exact and machine-independent.

    python scripts/scaling_flops.py --n 20   # ~1 min on one core

Writes ``scripts/results/scaling/results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_results import write_results  # noqa: E402

from lightning_nas.spaces.darts import DartsSpace  # noqa: E402
from lightning_nas.spaces.mobile_blocks import PRESETS  # noqa: E402
from lightning_nas.spaces.mobilenet import MobileNetV3Space  # noqa: E402
from lightning_nas.spaces.nb201 import NB201Space  # noqa: E402
from lightning_nas.spaces.scaling import macs_of, scale  # noqa: E402

PHIS = (-1, 0, 1, 2)


def ratios(arch, space, **options) -> dict[str, float]:
    """multiply-adds(phi) / multiply-adds(0) / 2**phi for each phi, plus the base MACs."""
    base = scale(arch, 0, space=space, **options)
    m0 = macs_of(base.space, base.arch, base.resolution)[1]
    out = {"macs0": m0}
    for phi in PHIS:
        s = scale(arch, phi, space=space, **options)
        out[str(phi)] = macs_of(s.space, s.arch, s.resolution)[1] / m0 / 2 ** phi
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="random OFA subnets per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="scripts/results/scaling")
    opts = parser.parse_args()

    rows: list[dict] = []
    darts = DartsSpace()
    rows.append({"network": "DARTS_V2 (36 ch, 20 cells, 32x32)", "rounding": "ceil",
                 "divisor": 4, "n": 1, "ratios": [ratios(darts.load("DARTS_V2"), darts)]})
    nb = NB201Space()
    rng = random.Random(opts.seed)
    rows.append({"network": "NB201 random cells (16 ch, 5 cells/stage)", "rounding": "ceil",
                 "divisor": 4, "n": opts.n, "ratios": [ratios(nb.sample(rng), nb) for _ in range(opts.n)]})
    for name, ofa in (("OFA ImageNet subnets", MobileNetV3Space()),
                      ("OFA CIFAR subnets", MobileNetV3Space.cifar())):
        archs = [ofa.sample(random.Random(opts.seed * 1000 + i)) for i in range(opts.n)]
        for divisor, rounding in ((8, "ceil"), (8, "network"), (None, None)):
            scaled = [ratios(a, ofa, depth_rounding=rounding, divisor=divisor) for a in archs]
            used = scale(archs[0], 1, space=ofa, depth_rounding=rounding,
                         divisor=divisor).rounding  # None: scale's default for OFA subnets
            rows.append({"network": name, "rounding": used["depth"],
                         "divisor": used["divisor"], "default": rounding is None,
                         "n": opts.n, "ratios": scaled})
    for name in ("EfficientNet-B0", "MnasNet-A1", "MobileNetV3-Large", "ProxylessNAS-Mobile"):
        for rounding in (None, "network"):
            rows.append({"network": name, "rounding": rounding or "ceil", "divisor": 8,
                         "default": rounding is None, "n": 1,
                         "ratios": [ratios(PRESETS[name], None, depth_rounding=rounding)]})
    rows[0]["default"] = rows[1]["default"] = True  # the cell networks: scale's defaults

    lines = ["# Compound scaling: multiply-adds / (multiply-adds at phi=0 x 2**phi)", "",
             "alpha 1.2, beta 1.1, gamma 1.15 (alpha beta^2 gamma^2 = 1.92, so the exact "
             "multipliers give 0.96^phi of 2^phi: 1.04 / 1 / 0.96 / 0.92). Median (min-max) "
             "over n networks; 'within 15%' counts networks within +-15% at every phi. "
             "**Bold**: `scale`'s default rounding for that kind of network (OFA subnets: the "
             "network's block total and 4s; mobile architectures and cell networks: the "
             "paper's per-stage ceil, 8s for mobile and 4s for cell networks).", "",
             "| network | repeats rounding | channels to | n | phi=-1 | phi=1 | phi=2 | "
             "within 15% |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for phi in ("-1", "1", "2"):
            vals = [r[phi] for r in row["ratios"]]
            cells.append(f"{statistics.median(vals):.3f}" if len(vals) == 1 else
                         f"{statistics.median(vals):.3f} ({min(vals):.2f}-{max(vals):.2f})")
        ok = sum(all(abs(r[p] - 1) < 0.15 for p in ("-1", "1", "2")) for r in row["ratios"])
        row["within_15pct"] = ok
        rounding = f"**{row['rounding']}** (default)" if row["default"] else row["rounding"]
        lines.append(f"| {row['network']} | {rounding} | {row['divisor']}s | {row['n']} | "
                     f"{' | '.join(cells)} | {ok}/{row['n']} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines += ["", f"`python scripts/scaling_flops.py --n {opts.n}` at commit {commit}; "
              "counts on the meta device, batch 1.", ""]
    write_results(opts.out, {"rows": rows, "n": opts.n, "seed": opts.seed, "commit": commit},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
