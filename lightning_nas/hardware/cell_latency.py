"""Per-op latency tables of the cell spaces (DARTS cells, NAS-Bench-201), and the expected
latency of a one-shot search's current distribution.

The network a cell space deploys (``space.build(arch)``) is a fixed skeleton (stem, cell
preprocessing, residual blocks, head) plus one op per kept edge of every cell. The table
times, on the target device, every skeleton part and every (op, channels, size, stride) that
occurs, each built standalone with the network's own constructors
(:func:`~lightning_nas.hardware.latency.measure_latency`, round-robin over ``rounds``, the
median of medians), so

* ``predict(arch) = scale * (skeleton + sum of the ops of arch's edges) + overhead_ms``,
  with ``scale`` and ``overhead_ms`` fitted on a few whole networks (as for the MobileNetV3
  table, :mod:`lightning_nas.hardware.latency_lut`: layers timed alone run cache-hot; the
  overhead is what the parts miss, node sums, concatenations and the Python loop);
* ``expected(weights)`` is the same sum under a search's distribution, differentiable in the
  architecture weights (FBNet, ProxylessNAS): every edge contributes ``sum_k p_k lat_k``
  ('none' costs 0 in the DARTS space, whose genotypes never build it; NB201 networks do,
  so there it is timed), NAS-Bench-201 keeps every edge, and a DARTS cell node keeps 2 of its
  incoming edges, so an edge counts ``2 / (edges into its node)`` (or ``2 x`` its normalised
  edge weight with PC-DARTS). With one-hot weights of an architecture's path it equals
  ``predict`` (tested).

Keys: ``stem``, ``pre0|cell3``, ``pre1|cell3`` (DARTS preprocessing of cell 3), ``res|2``
(NB201's residual block before stage 2), ``head``, and ``op|sep_conv_3x3|c32|h16|s2`` (an op on
32 channels of 16x16 inputs with stride 2; NB201 ops have stride 1). Times are ms per batch of
the table's ``batch_size`` on its device with its thread count. ``save``/``load`` keep the
space's configuration and the device: loading a table for another space, input size or device
is an error naming the difference.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_nas.hardware.latency import LatencyResult, device_name, measure_latency
from lightning_nas.spaces.base import Arch, SearchSpace
from lightning_nas.spaces.darts import CELL_TYPES, DartsSpace
from lightning_nas.spaces.nb201 import NB201Space, ResNetBasicBlock, make_op
from lightning_nas.spaces.ops import FactorizedReduce, ReLUConvBN
from lightning_nas.spaces.registry import build_op

FILE_FORMAT = "lightning_nas.cell_latency_table"
FILE_VERSION = 1
#: Ops of the DARTS space without an entry: a genotype never holds 'none' (its network
#: never builds one), so a relaxation's 'none' costs nothing. NB201 networks do build
#: 'none' edges (a multiplication by zero), so NB201 times it like any op.
FREE_OPS = ("none",)


def _half(size: int) -> int:
    return (size + 1) // 2  # a stride-2 conv with padding: ceil(size / 2)


@dataclass(frozen=True)
class Part:
    """One timed piece: its key, one input sample's shape ``(C, H, W)`` and a factory."""

    key: str
    input_shape: tuple[int, int, int]
    build: Callable[[], nn.Module]


class _Head(nn.Module):
    """Global pool + classifier, (B, C, H, W) -> (B, classes); NB201 with BN-ReLU first."""

    def __init__(self, c: int, classes: int, lastact: bool):
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()) if lastact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.lastact(x)).flatten(1))


def _darts_cells(space: DartsSpace, input_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Channels and input sizes of every cell of ``space.build`` (CIFAR stem) for a genotype
    of the search space (``steps`` nodes, all concatenated)."""
    opts = space.build_defaults
    c0, layers, mult = int(opts["channels"]), int(opts["layers"]), space.steps
    size_pp = size_p = int(input_shape[-1])
    c_pp = c_p = 3 * c0  # the stem's channels
    c, reduction_prev, cells = c0, False, []
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c *= 2
        # the cell's states are at size_p: pre0 brings s0 (size_pp) there
        cells.append({"index": i, "c_pp": c_pp, "c_p": c_p, "c": c, "size": size_p,
                      "size_pp": size_pp, "reduction": reduction,
                      "reduction_prev": reduction_prev})
        size_pp, size_p = size_p, (_half(size_p) if reduction else size_p)
        reduction_prev = reduction
        c_pp, c_p = c_p, mult * c
    return cells


def _edge_geometry(cell: Mapping[str, Any], j: int) -> tuple[int, int]:
    """(stride, input size) of a DARTS cell's edge from node ``j``: a reduction cell's
    edges from its two inputs stride 2, its intermediate nodes are already reduced."""
    if not cell["reduction"]:
        return 1, cell["size"]
    return (2, cell["size"]) if j < 2 else (1, _half(cell["size"]))


def _darts_head(space: DartsSpace, input_shape: Sequence[int]) -> tuple[int, int]:
    """(channels, size) at the classifier."""
    last = _darts_cells(space, input_shape)[-1]
    return space.steps * last["c"], _half(last["size"]) if last["reduction"] else last["size"]


def enumerate_parts(space: SearchSpace, input_shape: Sequence[int]) -> dict[str, Part]:
    """Every timed piece of ``space.build(arch)`` networks on inputs ``(C, H, W)``."""
    c_in, size = int(input_shape[0]), int(input_shape[-1])
    classes = int(space.build_defaults["num_classes"])
    parts: dict[str, Part] = {}

    def add(key: str, shape: tuple[int, int, int], build: Callable[[], nn.Module]) -> None:
        parts.setdefault(key, Part(key, shape, build))

    if isinstance(space, NB201Space):
        c0 = int(space.build_defaults["channels"])
        add("stem", (c_in, size, size), lambda: nn.Sequential(
            nn.Conv2d(c_in, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0)))
        c = c0
        for stage in range(3):
            if stage > 0:
                add(f"res|{stage}", (c, size, size), lambda c=c: ResNetBasicBlock(c, 2 * c))
                c, size = 2 * c, _half(size)
            for op in space.ops:
                add(f"op|{op}|c{c}|h{size}", (c, size, size),
                    lambda op=op, c=c: make_op(op, c))
        add("head", (c, size, size), lambda c=c: _Head(c, classes, lastact=True))
        return parts
    if isinstance(space, DartsSpace):
        c0 = int(space.build_defaults["channels"])
        if space.build_defaults["stem"] == "cifar":
            add("stem", (c_in, size, size), lambda: nn.Sequential(
                nn.Conv2d(c_in, 3 * c0, 3, padding=1, bias=False), nn.BatchNorm2d(3 * c0)))
        else:
            raise ValueError("the DARTS latency table covers the CIFAR stem (stem='cifar')")
        for cell in _darts_cells(space, input_shape):
            i, c, s = cell["index"], cell["c"], cell["size"]
            if cell["reduction_prev"]:
                add(f"pre0|cell{i}", (cell["c_pp"], cell["size_pp"], cell["size_pp"]),
                    lambda cell=cell: FactorizedReduce(cell["c_pp"], cell["c"]))
            else:
                add(f"pre0|cell{i}", (cell["c_pp"], s, s),
                    lambda cell=cell: ReLUConvBN(cell["c_pp"], cell["c"], 1, 1, 0))
            add(f"pre1|cell{i}", (cell["c_p"], s, s),
                lambda cell=cell: ReLUConvBN(cell["c_p"], cell["c"], 1, 1, 0))
            for op in space.ops:
                if op in FREE_OPS:
                    continue
                for j in (0, 2):  # an edge from a cell input, from an intermediate node
                    stride, size = _edge_geometry(cell, j)
                    add(f"op|{op}|c{c}|h{size}|s{stride}", (c, size, size),
                        lambda op=op, c=c, stride=stride: build_op(op, c, c, stride))
        c_last, s_last = _darts_head(space, input_shape)
        add("head", (c_last, s_last, s_last), lambda: _Head(c_last, classes, lastact=False))
        return parts
    raise TypeError(f"cell latency tables cover the DARTS and NB201 spaces, not {space.name!r} "
                    "(MobileNetV3: lightning_nas.hardware.latency_lut.LatencyTable)")


def calibration_archs(space: SearchSpace, n: int, rng: random.Random) -> list[Arch]:
    """``n`` random architectures, plus (for ``fit="per_op"``) one network per op that runs
    only that op on every edge: those pin each op's in-network cost."""
    archs = [space.sample(rng) for _ in range(n)]
    if isinstance(space, NB201Space):
        from lightning_nas.spaces.nb201 import arch_from_ops
        uniform = [arch_from_ops([op] * len(space.edges), space.ops, space.nodes)
                   for op in space.ops]
    else:
        from lightning_nas.spaces.darts import Genotype
        g = Genotype.from_arch(space.sample(rng))
        uniform = [Genotype([(op, j) for _, j in g.normal], g.normal_concat,
                            [(op, j) for _, j in g.reduce], g.reduce_concat).to_arch()
                   for op in space.search_ops]
    return uniform + archs


def space_record(space: SearchSpace, input_shape: Sequence[int]) -> dict[str, Any]:
    """What the entries depend on: the space class, its configuration, the input shape."""
    config = dict(space.config())
    config.pop("constraints", None)
    return {"class": type(space).__name__, "name": space.name, "config": config,
            "input_shape": [int(v) for v in input_shape]}


class CellLatencyTable:
    """The per-op latency table of a cell space (module docstring).

    Args:
        space: a :class:`DartsSpace` (CIFAR stem, 4-node search-space genotypes) or
            :class:`NB201Space`; its build defaults are the network whose latency is modelled.
        input_shape: one input sample ``(C, H, W)``.
        entries: ``{key: ms per batch}`` of :func:`enumerate_parts`.
        metadata: device, hardware, threads, batch size, how measured.
        scale, overhead_ms: ``predict = scale * sum + overhead_ms`` (fitted by
            :meth:`calibrate`).
        calibration: how they were fitted.
    """

    def __init__(self, space: SearchSpace, input_shape: Sequence[int],
                 entries: Mapping[str, float], *, metadata: Mapping[str, Any] | None = None,
                 scale: float = 1.0, overhead_ms: float = 0.0,
                 calibration: Mapping[str, Any] | None = None,
                 op_scales: Mapping[str, float] | None = None):
        self.space = space
        self.input_shape = tuple(int(v) for v in input_shape)
        self.parts = enumerate_parts(space, self.input_shape)
        missing = [k for k in self.parts if k not in entries]
        if missing:
            raise KeyError(f"the latency table lacks {len(missing)} entries (e.g. {missing[:3]}); "
                           "rebuild it for this space with CellLatencyTable.build")
        self.entries = {k: float(entries[k]) for k in self.parts}
        self.metadata = dict(metadata or {})
        self.scale = float(scale)
        self.overhead_ms = float(overhead_ms)
        self.calibration = dict(calibration) if calibration else None
        unknown = sorted(set(op_scales or {}) - set(self.space.ops))
        if unknown:
            raise ValueError(f"op_scales name ops the space does not have: {unknown}")
        #: per-op factors of the entries (``calibrate(fit="per_op")``; 1 otherwise)
        self.op_scales = {op: float((op_scales or {}).get(op, 1.0)) for op in self.space.ops}
        self._edge_tables: dict[str, dict[str, torch.Tensor]] = {}

    # -- the additive model -------------------------------------------------------------------
    def _entry(self, op: str, c: int, size: int, stride: int | None) -> float:
        """The timed op alone (unscaled ms); DARTS's 'none' is free."""
        if op in FREE_OPS and stride is not None:  # DARTS keys carry the stride
            return 0.0
        return self.entries[f"op|{op}|c{c}|h{size}" + ("" if stride is None else f"|s{stride}")]

    def _op(self, op: str, c: int, size: int, stride: int | None) -> float:
        return self.op_scales[op] * self._entry(op, c, size, stride)

    def skeleton_ms(self) -> float:
        """The architecture-independent parts (unscaled ms)."""
        return sum(v for k, v in self.entries.items() if not k.startswith("op|"))

    def edge_latencies(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Per cell type, (num_edges, num_ops) unscaled ms summed over the cells of that type
        for each edge row and op of the supernet's weight matrices."""
        key = str(device)
        if key in self._edge_tables:
            return self._edge_tables[key]
        out: dict[str, torch.Tensor] = {}
        if isinstance(self.space, NB201Space):
            lat = torch.zeros(len(self.space.edges), len(self.space.ops), dtype=torch.float64)
            c, size = int(self.space.build_defaults["channels"]), self.input_shape[-1]
            n = int(self.space.build_defaults["cells_per_stage"])
            for stage in range(3):
                if stage > 0:
                    c, size = 2 * c, _half(size)
                for k, op in enumerate(self.space.ops):
                    lat[:, k] += n * self._op(op, c, size, None)
            out["cell"] = lat
        else:
            edges = sum(2 + i for i in range(self.space.steps))
            for kind in CELL_TYPES:
                out[kind] = torch.zeros(edges, len(self.space.ops), dtype=torch.float64)
            for cell in _darts_cells(self.space, self.input_shape):
                kind = "reduce" if cell["reduction"] else "normal"
                row = 0
                for node in range(self.space.steps):
                    for j in range(2 + node):
                        stride, size = _edge_geometry(cell, j)
                        for k, op in enumerate(self.space.ops):
                            out[kind][row, k] += self._op(op, cell["c"], size, stride)
                        row += 1
        self._edge_tables[key] = {k: v.float().to(device) for k, v in out.items()}
        return self._edge_tables[key]

    def edge_keep(self, edge_weights: Mapping[str, torch.Tensor] | None = None
                  ) -> dict[str, torch.Tensor]:
        """The expected number of times each edge is kept: 1 for NB201; for a DARTS node
        with n incoming edges ``2 / n`` each, or ``2 x`` the normalised edge weights."""
        if isinstance(self.space, NB201Space):
            return {"cell": torch.ones(len(self.space.edges))}
        out = {}
        for kind in CELL_TYPES:
            if edge_weights is not None:
                out[kind] = 2.0 * edge_weights[kind]
                continue
            keep = []
            for node in range(self.space.steps):
                keep += [2.0 / (2 + node)] * (2 + node)
            out[kind] = torch.tensor(keep)
        return out

    def expected(self, weights: Mapping[str, torch.Tensor],
                 edge_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Expected latency (ms, scalar tensor, differentiable) under per-edge op
        probabilities ``weights`` ({cell type: (num_edges, num_ops)}, rows summing to 1)."""
        total = None
        keep = self.edge_keep(edge_weights)
        for kind, probs in weights.items():
            lat = self.edge_latencies(probs.device)[kind]
            term = (keep[kind].to(probs.device) * (probs * lat).sum(-1)).sum()
            total = term if total is None else total + term
        return self.scale * (total + self.skeleton_ms()) + self.overhead_ms

    def op_totals(self, arch: Arch | str) -> dict[str, float]:
        """Per op of the space, the unscaled entries (ms) of ``arch``'s edges that run it,
        summed over the network's cells."""
        arch = self.space.load(arch) if isinstance(arch, str) else self.space.validate(arch)
        totals = dict.fromkeys(self.space.ops, 0.0)

        if isinstance(self.space, NB201Space):
            c, size = int(self.space.build_defaults["channels"]), self.input_shape[-1]
            n = int(self.space.build_defaults["cells_per_stage"])
            for stage in range(3):
                if stage > 0:
                    c, size = 2 * c, _half(size)
                for label in arch:
                    totals[arch[label]] += n * self._entry(arch[label], c, size, None)
        else:
            if not self.space.in_search_space(arch):
                raise ValueError("the DARTS latency table covers 4-node genotypes of the search "
                                 "ops (the network's channels depend on the node count)")
            for cell in _darts_cells(self.space, self.input_shape):
                kind = "reduce" if cell["reduction"] else "normal"
                for op, j in arch[kind]:
                    stride, size = _edge_geometry(cell, int(j))
                    totals[op] += self._entry(op, cell["c"], size, stride)
        return totals

    def predict(self, arch: Arch | str) -> float:
        """Latency of ``arch``'s network in ms per batch:
        ``scale * (skeleton + sum_k op_scale_k * total_k) + overhead_ms``."""
        totals = self.op_totals(arch)
        total = self.skeleton_ms() + sum(self.op_scales[op] * t for op, t in totals.items())
        return self.scale * total + self.overhead_ms

    # -- measuring ----------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, input_shape: Sequence[int], *, device: str = "cpu",
              batch_size: int = 1, warmup: int = 10, repeats: int = 30, rounds: int = 3,
              num_threads: int | None = 1, calibrate: int = 10, seed: int = 0,
              fit: str = "linear",
              measure: Callable[..., LatencyResult] = measure_latency) -> CellLatencyTable:
        """Time every part of :func:`enumerate_parts` on ``device`` (round-robin ``rounds``
        passes, median of the per-round medians), then fit ``scale`` and ``overhead_ms`` on
        ``calibrate`` random whole networks (0: the plain sum); ``fit="per_op"`` also fits a
        factor per op, on those plus one single-op network per op
        (:func:`calibration_archs`)."""
        parts = enumerate_parts(space, input_shape)
        times: dict[str, list[float]] = {k: [] for k in parts}
        hardware = ""
        start = time.perf_counter()
        for _ in range(rounds):
            for n, part in enumerate(parts.values()):
                torch.manual_seed(n)
                res = measure(part.build(), part.input_shape, device=device,
                              batch_size=batch_size, warmup=warmup, repeats=repeats,
                              num_threads=num_threads)
                times[part.key].append(res.median_ms)
                hardware = res.hardware
        metadata = {"device": str(device), "hardware": hardware or device_name(device),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "num_threads": num_threads, "batch_size": batch_size, "warmup": warmup,
                    "repeats": repeats, "rounds": rounds, "space": space_record(space,
                                                                               input_shape),
                    "build_seconds": time.perf_counter() - start}
        table = cls(space, input_shape, {k: float(np.median(v)) for k, v in times.items()},
                    metadata=metadata)
        if calibrate:
            rng = random.Random(seed)
            archs = (calibration_archs(space, calibrate, rng) if fit == "per_op"
                     else [space.sample(rng) for _ in range(calibrate)])
            table.calibrate(archs, fit=fit, measure=measure)
        return table

    def measure_archs(self, archs: Sequence[Arch], *,
                      measure: Callable[..., LatencyResult] = measure_latency) -> list[float]:
        """Whole-network latency of ``archs`` (ms per batch) with the table's settings,
        round-robin over the table's ``rounds``."""
        meta = self.metadata
        nets = []
        for n, arch in enumerate(archs):
            torch.manual_seed(n)
            nets.append(self.space.build(arch))
        times: list[list[float]] = [[] for _ in nets]
        for _ in range(int(meta.get("rounds", 3))):
            for n, net in enumerate(nets):
                res = measure(net, self.input_shape, device=str(meta.get("device", "cpu")),
                              batch_size=int(meta.get("batch_size", 1)),
                              warmup=int(meta.get("warmup", 10)),
                              repeats=int(meta.get("repeats", 30)),
                              num_threads=meta.get("num_threads"))
                times[n].append(res.median_ms)
        return [float(np.median(t)) for t in times]

    def calibrate(self, archs: Sequence[Arch], measured_ms: Sequence[float] | None = None, *,
                  fit: str = "linear",
                  measure: Callable[..., LatencyResult] = measure_latency) -> dict[str, Any]:
        """Fit the plain sums to measured whole networks: ``fit="linear"`` (default) gives
        ``scale * sum + overhead_ms`` by least squares (the overhead is the network's own
        cost the parts miss: node sums, concatenations, the Python loop), ``"scale"`` a
        factor alone (through the origin). Returns and stores the fit and the errors."""
        archs = list(archs)
        if fit not in ("linear", "scale", "per_op"):
            raise ValueError(f"fit must be 'linear', 'scale' or 'per_op', got {fit!r}")
        if measured_ms is None:
            measured_ms = self.measure_archs(archs, measure=measure)
        if len(measured_ms) != len(archs) or not archs or min(measured_ms) <= 0:
            raise ValueError("calibrate needs one positive latency per architecture")
        self.scale, self.overhead_ms = 1.0, 0.0
        self.op_scales = dict.fromkeys(self.space.ops, 1.0)
        self._edge_tables.clear()
        sums = np.array([self.predict(a) for a in archs])
        meas = np.array(measured_ms, dtype=float)
        if fit == "per_op":
            self._fit_op_scales(archs, meas)
        elif fit == "linear" and len(archs) >= 3 and np.ptp(sums) > 0:
            self.scale, self.overhead_ms = (float(v) for v in np.polyfit(sums, meas, 1))
        else:
            self.scale = float((sums * meas).sum() / (sums * sums).sum())
        fitted = np.array([self.predict(a) for a in archs])
        errors = (fitted - meas) / meas
        self.calibration = {"fit": fit, "n": len(archs), "scale": self.scale,
                            "overhead_ms": self.overhead_ms, "op_scales": dict(self.op_scales),
                            "mape_plain_pct": float(100 * np.abs((sums - meas) / meas).mean()),
                            "mape_calibrated_pct": float(100 * np.abs(errors).mean()),
                            "archs": [self.space.to_string(a) for a in archs],
                            "measured_ms": meas.tolist()}
        return self.calibration

    def _fit_op_scales(self, archs: Sequence[Arch], measured: np.ndarray) -> None:
        """``measured ~ overhead + sum_k op_scale_k * total_k`` by non-negative least squares
        on relative errors (each network weighted by 1 / its latency): the ops' cost *in the
        network* (node sums, cache state, per-call overheads that an op timed alone does not
        show), with the skeleton folded into the overhead. Ops the networks never run keep 1.
        """
        from scipy.optimize import nnls

        totals = np.array([list(self.op_totals(a).values()) for a in archs])  # space.ops order
        used = [k for k in range(totals.shape[1]) if totals[:, k].any()]
        design = np.column_stack([totals[:, used], np.ones(len(archs))])
        if len(archs) < design.shape[1] + 2:
            raise ValueError(f"fit='per_op' needs at least {design.shape[1] + 2} networks for "
                             f"{len(used)} ops, got {len(archs)} (calibration_archs() adds one "
                             "network per op)")
        if np.linalg.matrix_rank(design) < design.shape[1]:
            # NB201 runs every edge: the op counts sum to the edges, so an intercept is the
            # same as a share of every op's cost; the skeleton stays as timed and the ops
            # take the rest
            coef, _ = nnls(totals[:, used] / measured[:, None],
                           1.0 - self.skeleton_ms() / measured)
            coef = np.append(coef, self.skeleton_ms())
        else:
            coef, _ = nnls(design / measured[:, None], np.ones(len(archs)))
        for k, value in zip(used, coef[:-1]):
            self.op_scales[self.space.ops[k]] = float(value)
        self.scale = 1.0
        self.overhead_ms = float(coef[-1]) - self.skeleton_ms()
        self._edge_tables.clear()

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "unit": "ms per batch",
               "space": space_record(self.space, self.input_shape), "entries": self.entries,
               "scale": self.scale, "overhead_ms": self.overhead_ms,
               "op_scales": self.op_scales, "calibration": self.calibration,
               "metadata": self.metadata}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, input_shape: Sequence[int] | None = None,
             *, device: str | None = None) -> CellLatencyTable:
        """A saved table, checked against the ``space`` (class and configuration), the input
        shape and the ``device`` it is used for."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table {str(path)!r} does not exist; build it on "
                                    "the target device with `python -m lightning_nas.hardware."
                                    "cell_latency --space darts|nb201 --out <file>`")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a latency table ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a cell latency table (format "
                             f"{doc.get('format') if isinstance(doc, dict) else None!r})")
        saved = doc["space"]
        shape = input_shape if input_shape is not None else saved["input_shape"]
        ours = space_record(space, shape)
        diffs = [f"{k}: table {saved.get(k)!r}, here {ours.get(k)!r}" for k in
                 ("class", "config", "input_shape") if saved.get(k) != ours.get(k)]
        if diffs:
            raise ValueError(f"{path} was built for another space or input ({'; '.join(diffs)}); "
                             "build a table for this one")
        built_on = str(doc.get("metadata", {}).get("device", "cpu"))
        if device is not None and built_on.split(":")[0] != str(device).split(":")[0]:
            raise ValueError(f"{path} was measured on {built_on!r}, not on the target {device!r}; "
                             "build the table on the device the latency is for")
        return cls(space, shape, doc["entries"], metadata=doc.get("metadata"),
                   scale=float(doc.get("scale", 1.0)),
                   overhead_ms=float(doc.get("overhead_ms", 0.0)),
                   calibration=doc.get("calibration"), op_scales=doc.get("op_scales"))


@dataclass
class LatencyLoss:
    """A latency term for differentiable one-shot search (``model.init_args.latency``).

    Attributes:
        table: path of a :class:`CellLatencyTable` of the search space (its build defaults:
            the network the latency is for) on the target device.
        target_ms: the target latency T (ms per batch of the table), > 0.
        weight: the exponent ``w`` (``form="mnasnet"``: ``CE * (LAT / T)^w``, w > 0
            penalises latency) or ``lambda`` (``form="linear"``: ``CE + lambda * LAT / T``).
        form: ``"mnasnet"`` (MnasNet/FBNet-style product) or ``"linear"`` (ProxylessNAS).
        device: the device the table must have been measured on (None: any).
    """

    table: str
    target_ms: float
    weight: float = 0.2
    form: str = "mnasnet"
    device: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.target_ms, (int, float)) and math.isfinite(self.target_ms)
                and self.target_ms > 0):
            raise ValueError(f"latency target_ms must be a number > 0 ms, got {self.target_ms!r}")
        if self.form not in ("mnasnet", "linear"):
            raise ValueError(f"latency form must be 'mnasnet' or 'linear', got {self.form!r}")
        if self.weight < 0:
            raise ValueError(f"latency weight must be >= 0 (it penalises latency), got "
                             f"{self.weight}")

    def combine(self, ce: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
        """The architecture loss: ``CE * (LAT/T)^w`` or ``CE + w * LAT/T``."""
        ratio = latency / self.target_ms
        if self.form == "mnasnet":
            return ce * ratio.pow(self.weight)
        return ce + self.weight * ratio

    def reward(self, accuracy: float, latency_ms: float) -> float:
        """The same penalty on a reward to maximise (ENAS): ``ACC * (LAT/T)^-w`` (MnasNet's
        soft reward has w = 0.07) or ``ACC - w * LAT/T``."""
        ratio = latency_ms / self.target_ms
        if self.form == "mnasnet":
            return accuracy * ratio ** (-self.weight)
        return accuracy - self.weight * ratio


def table_for_training(latency: LatencyLoss | None, space: SearchSpace, trainer: Any
                       ) -> CellLatencyTable | None:
    """A strategy's latency table, checked against its space, the trainer's data shape and
    the configured device (None without a latency term)."""
    if latency is None:
        return None
    from lightning_nas.search.evaluators import data_input_shape

    return CellLatencyTable.load(latency.table, space,
                                 data_input_shape(getattr(trainer, "datamodule", None)),
                                 device=latency.device)


class CellLatencyHook:
    """Metric hook ``(arch, network) -> {"latency_ms": table prediction}`` for multi-trial
    search and SPOS's constraints (no network is built: ``needs_network = False``)."""

    needs_network = False
    latency = True

    def __init__(self, path: str, space: SearchSpace, input_shape: Sequence[int] | None = None):
        self.path = path
        self.table = CellLatencyTable.load(path, space, input_shape)

    def __call__(self, arch: Arch, network: Any = None) -> dict[str, float]:
        return {"latency_ms": self.table.predict(arch)}


__all__ = ["CellLatencyHook", "CellLatencyTable", "LatencyLoss", "Part", "calibration_archs",
           "enumerate_parts", "space_record", "table_for_training"]


def main(argv: Sequence[str] | None = None) -> CellLatencyTable:
    """``python -m lightning_nas.hardware.cell_latency``: build and save a table."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lightning_nas.hardware.cell_latency",
                                     description="Per-op latency table of a cell space's "
                                                 "network on this machine.")
    parser.add_argument("--space", choices=["darts", "nb201"], required=True)
    parser.add_argument("--channels", type=int, default=None,
                        help="network channels (default: the space's, 36 DARTS / 16 NB201)")
    parser.add_argument("--layers", type=int, default=None, help="DARTS cells (default 20)")
    parser.add_argument("--cells-per-stage", type=int, default=None, help="NB201 (default 5)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--input-shape", type=int, nargs=3, default=[3, 32, 32],
                        metavar=("C", "H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibrate", type=int, default=10,
                        help="random whole networks the scale and overhead are fitted on")
    parser.add_argument("--fit", choices=["linear", "scale", "per_op"], default="linear",
                        help="per_op: a factor per op too, fitted with one single-op network "
                             "per op besides the random ones")
    parser.add_argument("--out", required=True)
    opts = parser.parse_args(argv)
    options: dict[str, Any] = {"num_classes": opts.num_classes,
                               "in_channels": opts.input_shape[0]}
    if opts.channels is not None:
        options["channels"] = opts.channels
    if opts.space == "darts":
        if opts.layers is not None:
            options["layers"] = opts.layers
        space: SearchSpace = DartsSpace(**options)
    else:
        if opts.cells_per_stage is not None:
            options["cells_per_stage"] = opts.cells_per_stage
        space = NB201Space(**options)
    table = CellLatencyTable.build(space, opts.input_shape, device=opts.device,
                                   batch_size=opts.batch_size, warmup=opts.warmup,
                                   repeats=opts.repeats, rounds=opts.rounds,
                                   num_threads=opts.num_threads, calibrate=opts.calibrate,
                                   fit=opts.fit)
    path = table.save(opts.out)
    cal = table.calibration or {}
    print(f"{len(table.entries)} entries -> {path}; scale {table.scale:.3f}, overhead "
          f"{table.overhead_ms:.3f} ms, calibrated MAPE {cal.get('mape_calibrated_pct', 0):.1f}% "
          f"on {cal.get('n', 0)} networks")
    return table


if __name__ == "__main__":
    main()
