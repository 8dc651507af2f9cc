"""Per-layer latency lookup table (LUT) for the elastic MobileNetV3 space.

Once-for-All (Cai et al., "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", ICLR 2020, Sec. 3.3) predicts the latency of a sub-network on a target device
from a table of per-layer latencies measured once on that device (the OFA repository's
``LatencyTable`` / ``ofa/nas/efficiency_predictor``): the latency of an architecture is the
sum of the entries of the layers it runs. ProxylessNAS (Cai et al., ICLR 2019, Sec. 3.3 and
Fig. 5) uses the same additive model. Evaluating the table costs microseconds instead of the
seconds a whole-network measurement takes, so a search can score thousands of candidates.

**Entries.** Every layer configuration that occurs in a :class:`MobileNetV3Space` is built
standalone with the same constructors :class:`MobileNetV3Network` uses and timed with
:func:`~lightning_nas.hardware.latency.measure_latency` on an input of its shape, in
``rounds`` round-robin passes over all layers; the entry is the median over the rounds of the
median over ``repeats`` runs, in ms per batch. Keys are readable::

    "stem|r32"                 stem conv, input resolution 32
    "first|r32"                the fixed first block (depthwise 3x3, no expansion)
    "block|s2b1|r32|k5|e4"     stage 2, first block of the stage, input 32x32, kernel 5,
                               expand 4
    "block|s2b2|r16|k3|e6"     stage 2, any later block (blocks >= 2 of a stage share
                               stride 1, c_in = c_out = the stage width)
    "head|r4"                  final_expand + global pool + feature_mix + classifier
                               (dropout is the identity at inference), input 4x4

Channels, stride, squeeze-excite and activation follow from the stage and the block's
position, so the key needs only the stage, position, input resolution, kernel and expand; the
table's metadata records the whole space configuration (stage table, widths, choices) and
:meth:`LatencyTable.load` refuses a table that was built for another one. The spatial size of
each stage follows from the resolution and the strides: a convolution with kernel ``k``,
stride ``s`` and padding ``k // 2`` maps ``H`` to ``ceil(H / s)``. With the ImageNet
defaults that is 4 resolutions x 5 stages x 2 positions x 3 kernels x 3 expands = 360 block
entries plus 4 stems, 4 first blocks and 4 heads (372); the CIFAR configuration has 93.

**Prediction.** ``predict(arch) = scale * sum(entries of the active layers) + overhead_ms``
(stem, first block, the first ``depth`` blocks of every stage, head). A sum of standalone
layer times misses what happens *between* layers in the whole network: a standalone layer is
timed hot (the same input and weights every run, all in L1/L2), while inside the network its
weights were evicted by the other layers since the previous forward pass and come from L3 or
memory (shared with the other cores and, on a virtual machine, with other tenants); there
are also the Python loop over the blocks and allocator traffic. On the 1-thread CPU we
measured (``scripts/ofa_latency_lut.py``, CIFAR configuration, the other core busy with
another job), blocks ran ~1.2-1.7x slower inside the network than standalone and the head
(its 960x1280 ``feature_mix`` weights, ~5 MB) ~2.6-2.9x. So the plain sum (OFA's predictor)
underestimated whole networks by 24-35% on average (two runs) while still ranking them well
(Pearson and Spearman ~0.97). The gap
grows with the network, so :meth:`LatencyTable.calibrate` measures a handful of whole
networks and fits a correction: ``fit="scale"`` (the default: one factor, least squares
through the origin), ``"linear"`` (factor and ``overhead_ms``; the intercept overfits a few
noisy measurements) or ``"offset"`` (``scale = 1`` plus a constant; worse, since the gap is
proportional). :meth:`LatencyTable.build` does this with ``calibrate=N`` networks (the
command line and :class:`LatencyTableHook` default to 10; the method itself to 0, i.e.
OFA's plain sum with ``scale = 1``, ``overhead_ms = 0``). The results on 100 random subnets
are in ``scripts/results/ofa_latency_lut/``.

**Files.** :meth:`LatencyTable.save` writes JSON with the entries, their inter-quartile
ranges, the calibration, and metadata: device and hardware name, torch version, thread
count, batch size, warm-up and repeats, build time and the space description. Build a table
on the target device with::

    python -m lightning_nas.hardware.latency_lut --space cifar --out runs/lut/cifar_cpu.json \\
        --num-threads 1

and plug it into a multi-trial search as a metric hook (YAML)::

    metric_hooks:
      - class_path: lightning_nas.hardware.LatencyTableHook
        init_args: {path: runs/lut/cifar_cpu.json, space: cifar}

All latencies are in ms per batch of the table's ``batch_size``, for the table's device and
thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_nas.hardware.latency import LatencyResult, measure_latency
from lightning_nas.spaces.base import Arch
from lightning_nas.spaces.mobilenet import (
    ConvBNAct,
    MBConv,
    MobileNetV3Space,
    StageSpec,
)

__all__ = [
    "LatencyTable",
    "LatencyTableHook",
    "LayerSpec",
    "MissingEntryError",
    "arch_layer_keys",
    "enumerate_layers",
    "main",
    "space_description",
]

#: ``format`` field of a saved table; ``version`` is bumped when the layout changes.
FILE_FORMAT = "lightning_nas.latency_table"
FILE_VERSION = 1
#: Named space configurations for the CLI and :class:`LatencyTableHook`.
SPACE_PRESETS: dict[str, Callable[..., MobileNetV3Space]] = {
    "imagenet": MobileNetV3Space,
    "cifar": MobileNetV3Space.cifar,
}
_REBUILD = ("rebuild it on the target device with `python -m lightning_nas.hardware.latency_lut "
            "--space <imagenet|cifar> --out <file>` (or LatencyTable.build(space))")


class MissingEntryError(KeyError):
    """A layer configuration of an architecture has no entry in the table (a ``KeyError``
    whose message says which key and that the table needs rebuilding)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a conv with odd kernel k, padding k // 2: ``ceil(size / stride)``."""
    return (size - 1) // stride + 1


class _Head(nn.Module):
    """final_expand -> global pool -> feature_mix -> classifier, as in
    :class:`~lightning_nas.spaces.mobilenet.MobileNetV3Network` (dropout omitted: identity in
    eval mode). (B, c_in, H, W) -> (B, num_classes)."""

    def __init__(self, c_in: int, final_width: int, feature_width: int, num_classes: int):
        super().__init__()
        self.final_expand = ConvBNAct(c_in, final_width, 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(final_width, feature_width, 1, bias=False),
                                         nn.Hardswish(inplace=True))
        self.classifier = nn.Linear(feature_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.final_expand(x))  # (B, final_width, 1, 1)
        return self.classifier(self.feature_mix(x).flatten(1))  # (B, num_classes)


@dataclass(frozen=True)
class LayerSpec:
    """One layer configuration of the space: its table key, the shape of one input sample
    ``(C, H, W)`` and a factory of the standalone module (fresh random weights)."""

    key: str
    input_shape: tuple[int, int, int]
    build: Callable[[], nn.Module]


def _block_key(stage: int, first: bool, resolution: int, kernel: int, expand: int) -> str:
    return f"block|s{stage}b{1 if first else 2}|r{resolution}|k{kernel}|e{expand}"


def _stage_sizes(space: MobileNetV3Space, resolution: int) -> tuple[int, list[int], int]:
    """``(size after the stem, input size of each stage, size at the head)``."""
    size = _conv_out(resolution, space.stem_stride)
    after_stem, inputs = size, []
    for spec in space.stages:
        inputs.append(size)
        size = _conv_out(size, spec.stride)
    return after_stem, inputs, size


def enumerate_layers(space: MobileNetV3Space,
                     resolutions: Sequence[int] | None = None) -> dict[str, LayerSpec]:
    """Every layer configuration that occurs in ``space``, keyed as in the module docstring.

    Args:
        space: the space (its stage table, widths, choices, stem stride, classes).
        resolutions: input resolutions to cover (default ``space.resolutions``).

    Returns:
        ``{key: LayerSpec}`` in network order per resolution (stem, first block, stage 1
        block 1 for every kernel and expand, stage 1 blocks >= 2, ..., head). Blocks >= 2 of a
        stage appear only when ``max(space.depths) >= 2``.
    """
    w = space.widths
    c_in0 = space.build_defaults["in_channels"]
    classes = space.build_defaults["num_classes"]
    layers: dict[str, LayerSpec] = {}

    def add(key: str, shape: tuple[int, int, int], factory: Callable[[], nn.Module]) -> None:
        layers.setdefault(key, LayerSpec(key, shape, factory))

    for r in resolutions if resolutions is not None else space.resolutions:
        after_stem, inputs, head = _stage_sizes(space, int(r))
        add(f"stem|r{r}", (c_in0, r, r),
            lambda: ConvBNAct(c_in0, w["stem_width"], 3, space.stem_stride, act="hswish"))
        add(f"first|r{after_stem}", (w["stem_width"], after_stem, after_stem),
            lambda: MBConv(w["stem_width"], w["stem_width"], 3, 1, 1, se=False, act="relu"))
        c = w["stem_width"]
        for i, (spec, size) in enumerate(zip(space.stages, inputs), start=1):
            out = _conv_out(size, spec.stride)
            positions = [(True, c, spec.stride, size)]
            if space.max_depth >= 2:
                positions.append((False, spec.width, 1, out))
            for first, cin, stride, s in positions:
                for k in space.kernels:
                    for e in space.expands:
                        add(_block_key(i, first, s, k, e), (cin, s, s),
                            _block_factory(cin, spec, k, stride, e))
            c = spec.width
        add(f"head|r{head}", (c, head, head),
            lambda c=c: _Head(c, w["final_width"], w["feature_width"], classes))
    return layers


def _block_factory(c_in: int, spec: StageSpec, kernel: int, stride: int,
                   expand: int) -> Callable[[], nn.Module]:
    return lambda: MBConv(c_in, spec.width, kernel, stride, expand, spec.se, spec.act)


def arch_layer_keys(space: MobileNetV3Space, arch: Arch) -> list[str]:
    """Table keys of the layers ``arch`` runs, in network order: stem, first block, the
    active blocks of every stage, head."""
    space.check(arch)
    r = int(arch["resolution"])
    after_stem, inputs, head = _stage_sizes(space, r)
    keys = [f"stem|r{r}", f"first|r{after_stem}"]
    for i, (spec, size) in enumerate(zip(space.stages, inputs), start=1):
        out = _conv_out(size, spec.stride)
        for j in range(1, int(arch[f"stage{i}.depth"]) + 1):
            keys.append(_block_key(i, j == 1, size if j == 1 else out,
                                   int(arch[f"stage{i}.block{j}.kernel"]),
                                   int(arch[f"stage{i}.block{j}.expand"])))
    keys.append(f"head|r{head}")
    return keys


def space_description(space: MobileNetV3Space) -> dict[str, Any]:
    """JSON-ready configuration of ``space`` that determines the table's entries: name,
    stage table, choices, resolutions, stem stride, widths, classes, input channels."""
    return {"name": space.name,
            "stages": [asdict(s) for s in space.stages],
            "depths": list(space.depths), "kernels": list(space.kernels),
            "expands": list(space.expands), "resolutions": list(space.resolutions),
            "stem_stride": space.stem_stride, **dict(space.widths),
            "num_classes": space.build_defaults["num_classes"],
            "in_channels": space.build_defaults["in_channels"]}


def space_from_description(desc: Mapping[str, Any]) -> MobileNetV3Space:
    """Inverse of :func:`space_description` (dropout at its default)."""
    if desc.get("name") != MobileNetV3Space.name:
        raise ValueError(f"not a {MobileNetV3Space.name} space description: {desc.get('name')!r}")
    options = {k: v for k, v in desc.items() if k != "name"}
    return MobileNetV3Space(**options)


def _space_differences(table: Mapping[str, Any], space: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(table) | set(space))
    return [f"{k}: table {table.get(k)!r}, space {space.get(k)!r}"
            for k in keys if table.get(k) != space.get(k)]


def _resolve_space(space: str | MobileNetV3Space,
                   resolutions: Sequence[int] | None = None) -> MobileNetV3Space:
    if isinstance(space, MobileNetV3Space):
        if resolutions is not None:
            raise ValueError("resolutions override only a named space ('imagenet', 'cifar')")
        return space
    if space not in SPACE_PRESETS:
        raise ValueError(f"unknown space {space!r}; use one of {sorted(SPACE_PRESETS)} or a "
                         "MobileNetV3Space")
    kwargs = {} if resolutions is None else {"resolutions": tuple(int(r) for r in resolutions)}
    return SPACE_PRESETS[space](**kwargs)


class LatencyTable:
    """Per-layer latency lookup table of one :class:`MobileNetV3Space` on one device
    (implements :class:`~lightning_nas.hardware.latency.LatencyModel`).

    Build it with :meth:`build` on the target device, or :meth:`load` a saved one. See the
    module docstring for the keys, the prediction and the calibration.

    Args:
        space: the space the entries were measured for.
        entries: ``{key: median ms per batch}`` (keys of :func:`enumerate_layers`).
        metadata: how the entries were measured (``device``, ``hardware``, ``torch``,
            ``num_threads``, ``batch_size``, ``warmup``, ``repeats``, ...).
        iqr_ms: optional inter-quartile range per entry (ms), the measurement spread.
        overhead_ms: constant added to every prediction (ms per batch).
        scale: factor on the sum of the entries.
        calibration: how ``overhead_ms`` / ``scale`` were fitted (see :meth:`calibrate`).

    Attributes:
        batch_size, num_threads, device: from ``metadata``.
    """

    def __init__(self, space: MobileNetV3Space, entries: Mapping[str, float], *,
                 metadata: Mapping[str, Any] | None = None,
                 iqr_ms: Mapping[str, float] | None = None, overhead_ms: float = 0.0,
                 scale: float = 1.0, calibration: Mapping[str, Any] | None = None):
        if not isinstance(space, MobileNetV3Space):
            raise TypeError(f"a LatencyTable is for a MobileNetV3Space, got "
                            f"{type(space).__name__}")
        self.space = space
        self.entries = {str(k): float(v) for k, v in entries.items()}
        self.iqr_ms = {str(k): float(v) for k, v in (iqr_ms or {}).items()}
        self.metadata = dict(metadata or {})
        self.overhead_ms = float(overhead_ms)
        self.scale = float(scale)
        self.calibration = dict(calibration) if calibration else None

    # -- properties ---------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(self.metadata.get("device", "cpu"))

    @property
    def batch_size(self) -> int:
        return int(self.metadata.get("batch_size", 1))

    @property
    def num_threads(self) -> int | None:
        n = self.metadata.get("num_threads")
        return None if n is None else int(n)

    def expected_keys(self) -> list[str]:
        """The keys a complete table for :attr:`space` has."""
        return list(enumerate_layers(self.space))

    def missing_keys(self) -> list[str]:
        """Expected keys without an entry (empty for a complete table)."""
        return [k for k in self.expected_keys() if k not in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        hardware = self.metadata.get("hardware") or self.device
        return (f"LatencyTable({len(self.entries)} entries, {hardware!r}, batch "
                f"{self.batch_size}, overhead {self.overhead_ms:.3f} ms, scale {self.scale:.3f})")

    # -- measuring ----------------------------------------------------------------------------
    @classmethod
    def build(cls, space: MobileNetV3Space, *, device: str = "cpu", batch_size: int = 1,
              warmup: int = 10, repeats: int = 50, rounds: int = 3,
              num_threads: int | None = 1, progress: bool = True, calibrate: int = 0,
              calibrate_fit: str = "scale", seed: int = 0,
              measure: Callable[..., LatencyResult] = measure_latency) -> LatencyTable:
        """Measure every layer configuration of ``space`` on ``device``.

        The entries are measured in ``rounds`` passes over all layers (round-robin) and each
        entry is the median of its per-round medians: a slow stretch of a shared machine
        (another job, a noisy neighbour of a virtual machine) then shifts one round of every
        entry instead of all rounds of a few entries.

        Args:
            space: the space (:meth:`MobileNetV3Space.cifar` or the ImageNet default).
            device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: the target device.
            batch_size: samples per timed forward pass (the table predicts ms per batch).
            warmup: untimed forward passes per layer and round.
            repeats: timed forward passes per layer and round.
            rounds: passes over all layers (>= 1).
            num_threads: torch intra-op threads during the measurements (CPU); 1 gives a
                stable single-core table, ``None`` keeps the current setting.
            progress: print ``entries done / total`` and the elapsed time to stderr.
            calibrate: after the layers, measure this many whole networks
                (:meth:`calibration_archs` with ``seed``) and fit ``overhead_ms`` / ``scale``
                with :meth:`calibrate`; 0 keeps the plain sum.
            calibrate_fit: ``"scale"``, ``"linear"`` or ``"offset"`` (see :meth:`calibrate`).
            seed: seed of the calibration architectures.
            measure: called as :func:`~lightning_nas.hardware.latency.measure_latency`
                (``measure(module, input_shape, device=, batch_size=, warmup=, repeats=,
                num_threads=)``) for every layer and calibration network; a fake
                measurement in tests. Default :func:`measure_latency`.

        Returns:
            The table; ``metadata["build_seconds"]`` is the wall time of the layer
            measurements, ``metadata["calibrate_seconds"]`` that of the calibration.
        """
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
        layers = list(enumerate_layers(space).values())
        per_round: dict[str, list[float]] = {spec.key: [] for spec in layers}
        iqr: dict[str, list[float]] = {spec.key: [] for spec in layers}
        hardware = ""
        total = rounds * len(layers)
        t0 = time.perf_counter()
        last_print = -math.inf
        done = 0
        for _ in range(rounds):
            for n, spec in enumerate(layers, start=1):
                torch.manual_seed(n)
                res = measure(spec.build(), spec.input_shape, device=device,
                              batch_size=batch_size, warmup=warmup, repeats=repeats,
                              num_threads=num_threads)
                per_round[spec.key].append(res.median_ms)
                iqr[spec.key].append(res.iqr_ms)
                hardware = res.hardware
                done += 1
                elapsed = time.perf_counter() - t0
                if progress and (elapsed - last_print >= 2.0 or done == total):
                    last_print = elapsed
                    print(f"latency table: {done}/{total} entries x rounds, {elapsed:.1f} s "
                          f"({spec.key}: {res.median_ms:.3f} ms)", file=sys.stderr,
                          flush=True)
        entries = {k: float(np.median(v)) for k, v in per_round.items()}
        metadata = {"device": str(device), "hardware": hardware, "torch": torch.__version__,
                    "python": platform.python_version(), "num_threads": num_threads,
                    "batch_size": batch_size, "warmup": warmup, "repeats": repeats,
                    "rounds": rounds, "statistic": "median over rounds of the median over "
                    "repeats", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "build_seconds": time.perf_counter() - t0}
        table = cls(space, entries, metadata=metadata,
                    iqr_ms={k: float(np.median(v)) for k, v in iqr.items()})
        if calibrate:
            t1 = time.perf_counter()
            table.calibrate(table.calibration_archs(calibrate, seed=seed), fit=calibrate_fit,
                            progress=progress, measure=measure)
            table.metadata["calibrate_seconds"] = time.perf_counter() - t1
        return table

    def calibration_archs(self, n: int, *, seed: int = 0) -> list[Arch]:
        """``n`` architectures for :meth:`calibrate`: the smallest and the largest at every
        resolution first (they span the range of the sums), then random ones
        (``random.Random(seed)``), all distinct networks (canonical archs)."""
        if n < 1:
            raise ValueError(f"need n >= 1 calibration architectures, got {n}")
        archs: list[Arch] = []
        for r in self.space.resolutions:
            for a in (self.space.smallest(r), self.space.largest(r)):
                if a not in archs:
                    archs.append(a)
        rng = random.Random(seed)
        tries = 0
        while len(archs) < n and tries < 100 * n:
            tries += 1
            a = self.space.canonical(self.space.sample(rng))
            if a not in archs:
                archs.append(a)
        return archs[:n]

    def measure_archs(self, archs: Sequence[Arch], *, warmup: int | None = None,
                      repeats: int | None = None, rounds: int | None = None,
                      progress: bool = False,
                      measure: Callable[..., LatencyResult] = measure_latency) -> list[float]:
        """Measured whole-network latency of ``archs`` (ms per batch) with the table's
        device, batch size and threads: ``rounds`` round-robin passes over the networks
        (built once with ``space.build``), each network's number the median of its
        per-round medians. Defaults: the table's ``warmup``, ``repeats`` and ``rounds``.
        ``measure`` is called as :func:`measure_latency` (the default) for every network
        and round; a fake measurement in tests (see :meth:`build`)."""
        meta = self.metadata
        warmup = int(meta.get("warmup", 10)) if warmup is None else warmup
        repeats = int(meta.get("repeats", 50)) if repeats is None else repeats
        rounds = int(meta.get("rounds", 3)) if rounds is None else rounds
        nets = []
        for n, arch in enumerate(archs, start=1):
            torch.manual_seed(n)
            nets.append(self.space.build(self._arch(arch)))
        times: list[list[float]] = [[] for _ in nets]
        c_in = self.space.build_defaults["in_channels"]
        for rnd in range(rounds):
            for n, (arch, net) in enumerate(zip(archs, nets)):
                r = int(self._arch(arch)["resolution"])
                res = measure(net, (c_in, r, r), device=self.device,
                              batch_size=self.batch_size, warmup=warmup, repeats=repeats,
                              num_threads=self.num_threads)
                times[n].append(res.median_ms)
            if progress:
                print(f"whole networks: round {rnd + 1}/{rounds} of {len(nets)} networks done",
                      file=sys.stderr, flush=True)
        return [float(np.median(t)) for t in times]

    def calibrate(self, archs: Iterable[Arch], *, fit: str = "scale",
                  measured_ms: Sequence[float] | None = None, warmup: int | None = None,
                  repeats: int | None = None, rounds: int | None = None,
                  progress: bool = False,
                  measure: Callable[..., LatencyResult] = measure_latency) -> dict[str, Any]:
        """Fit ``overhead_ms`` and/or ``scale`` to whole-network measurements.

        The per-layer sum misses what happens between the layers of a whole network (see
        the module docstring). On a 1-thread CPU the gap we saw grows with the network
        (blocks ran ~1.2-1.7x slower inside the network than standalone and hot, the head
        ~2.6-2.9x), so:

        * ``"scale"`` (default): ``measured = scale * sum`` (least squares through the
          origin; one parameter, the most stable with ~10 noisy measurements);
        * ``"linear"``: ``measured = scale * sum + overhead_ms`` by least squares (needs
          >= 2 networks with different sums; the calibration architectures include the
          smallest and the largest network; the intercept overfits the noise of a few
          measurements);
        * ``"offset"``: ``measured = sum + overhead_ms`` (mean residual; OFA's plain sum plus
          a constant).

        Args:
            archs: architectures of :attr:`space`.
            fit: ``"scale"``, ``"linear"`` or ``"offset"``.
            measured_ms: their whole-network latencies (ms per batch) if already measured
                (on the table's device, batch size and threads); ``None`` measures them with
                :meth:`measure_archs`.
            warmup, repeats, rounds: of the measurements (default: the table's).
            progress: print progress to stderr.
            measure: passed to :meth:`measure_archs` (unused with ``measured_ms``).

        Returns:
            The calibration record (also stored as :attr:`calibration` and saved): ``fit``,
            ``n``, ``overhead_ms``, ``scale``, ``archs`` (strings), ``measured_ms``,
            ``sum_ms``, and the mean absolute percentage error of the plain sum and of the
            calibrated prediction on these networks (``mape_sum_pct``,
            ``mape_calibrated_pct``; in-sample).
        """
        if fit not in ("offset", "scale", "linear"):
            raise ValueError(f"fit must be 'linear', 'scale' or 'offset', got {fit!r}")
        archs = [self._arch(a) for a in archs]
        if not archs:
            raise ValueError("calibrate needs at least one architecture")
        sums = np.asarray([self.layer_sum(a) for a in archs])
        settings: dict[str, Any] = {"measured": "given"}
        if measured_ms is None:
            meta = self.metadata
            settings = {"measured": "calibrate",
                        "warmup": int(meta.get("warmup", 10)) if warmup is None else warmup,
                        "repeats": int(meta.get("repeats", 50)) if repeats is None else repeats,
                        "rounds": int(meta.get("rounds", 3)) if rounds is None else rounds}
            measured_ms = self.measure_archs(archs, warmup=settings["warmup"],
                                             repeats=settings["repeats"],
                                             rounds=settings["rounds"], progress=progress,
                                             measure=measure)
        m = np.asarray(measured_ms, dtype=np.float64)
        if m.shape != sums.shape or not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise ValueError(f"measured_ms must hold one positive latency per architecture "
                             f"({len(archs)}), got {list(measured_ms)!r}")
        if fit == "linear":
            if len(archs) < 2 or np.ptp(sums) <= 0:
                raise ValueError("fit='linear' needs >= 2 architectures with different layer "
                                 "sums; use fit='scale' or 'offset'")
            scale, overhead = np.polyfit(sums, m, 1)
        elif fit == "scale":
            scale, overhead = float(np.dot(sums, m) / np.dot(sums, sums)), 0.0
        else:
            scale, overhead = 1.0, float(np.mean(m - sums))
        self.scale, self.overhead_ms = float(scale), float(overhead)
        pred = self.scale * sums + self.overhead_ms
        self.calibration = {
            "fit": fit, "n": len(archs), "overhead_ms": self.overhead_ms, "scale": self.scale,
            "archs": [self.space.to_string(a) for a in archs],
            "measured_ms": m.tolist(), "sum_ms": sums.tolist(),
            "mape_sum_pct": float(np.mean(np.abs(sums - m) / m) * 100),
            "mape_calibrated_pct": float(np.mean(np.abs(pred - m) / m) * 100), **settings}
        return dict(self.calibration)

    def uncalibrated(self) -> LatencyTable:
        """A copy with ``scale = 1`` and ``overhead_ms = 0`` (the plain per-layer sum)."""
        return LatencyTable(self.space, self.entries, metadata=self.metadata,
                            iqr_ms=self.iqr_ms)

    # -- predicting ---------------------------------------------------------------------------
    def _arch(self, arch: Arch | str) -> Arch:
        return self.space.parse(arch) if isinstance(arch, str) else arch

    def breakdown(self, arch: Arch | str) -> dict[str, float]:
        """``{key: ms}`` of the layers ``arch`` runs, in network order (a key that occurs
        twice, e.g. two identical later blocks of a stage, gets ``"#2"`` appended).

        Raises:
            MissingEntryError: a layer has no entry (a ``KeyError``).
        """
        keys = arch_layer_keys(self.space, self._arch(arch))
        missing = [k for k in keys if k not in self.entries]
        if missing:
            raise MissingEntryError(
                f"latency table has no entry {missing[0]!r}"
                f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''} for "
                f"{self.space.to_string(self._arch(arch))}: the table is incomplete or was "
                f"built for another configuration; {_REBUILD}")
        out: dict[str, float] = {}
        for k in keys:
            name, n = k, 1
            while name in out:
                n += 1
                name = f"{k}#{n}"
            out[name] = self.entries[k]
        return out

    def layer_sum(self, arch: Arch | str) -> float:
        """Sum of the entries of the active layers (ms per batch), without calibration."""
        return float(sum(self.breakdown(arch).values()))

    def predict(self, arch: Arch | str) -> float:
        """Predicted latency of ``arch`` in ms per batch of :attr:`batch_size` on the table's
        device: ``scale * layer_sum(arch) + overhead_ms``.

        Args:
            arch: an architecture of :attr:`space` (or its string form).

        Raises:
            ArchError: ``arch`` is not in the space.
            MissingEntryError: a layer has no entry (a ``KeyError``; rebuild the table).
        """
        return self.scale * self.layer_sum(arch) + self.overhead_ms

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        return {"format": FILE_FORMAT, "version": FILE_VERSION,
                "metadata": self.metadata, "space": space_description(self.space),
                "overhead_ms": self.overhead_ms, "scale": self.scale,
                "calibration": self.calibration, "unit": "ms per batch",
                "entries": self.entries, "iqr_ms": self.iqr_ms}

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (parent folders created; written atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, space: MobileNetV3Space | None = None) -> LatencyTable:
        """Read a table written by :meth:`save`.

        Args:
            path: the JSON file.
            space: the space the caller predicts for; its configuration must equal the one
                the table was built for. ``None`` rebuilds the space from the file.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a latency table (bad JSON or fields), or built for another space
                configuration (the message lists the differences).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table {path} does not exist; {_REBUILD}")
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"latency table {path} is not readable JSON ({err}); "
                             f"{_REBUILD}") from None
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a latency table (no format {FILE_FORMAT!r})")
        if doc.get("version") != FILE_VERSION:
            raise ValueError(f"latency table {path} has version {doc.get('version')!r}; this "
                             f"code reads version {FILE_VERSION}; {_REBUILD}")
        try:
            desc = doc["space"]
            entries = {str(k): float(v) for k, v in doc["entries"].items()}
            iqr = {str(k): float(v) for k, v in (doc.get("iqr_ms") or {}).items()}
            metadata = dict(doc.get("metadata") or {})
            overhead, scale = float(doc.get("overhead_ms", 0.0)), float(doc.get("scale", 1.0))
            if not isinstance(desc, dict):
                raise TypeError("'space' must be an object")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"latency table {path} is malformed ({type(err).__name__}: "
                             f"{err}); {_REBUILD}") from None
        if space is None:
            try:
                space = space_from_description(desc)
            except (TypeError, ValueError) as err:
                raise ValueError(f"latency table {path} has an unusable space description "
                                 f"({err})") from None
        else:
            diffs = _space_differences(desc, space_description(space))
            if diffs:
                raise ValueError(f"latency table {path} was built for another space "
                                 f"configuration: {'; '.join(diffs)}. {_REBUILD}")
        return cls(space, entries, metadata=metadata, iqr_ms=iqr, overhead_ms=overhead,
                   scale=scale, calibration=doc.get("calibration"))


class LatencyTableHook:
    """Metric hook ``(arch, model) -> {"latency_ms": ms}`` from a :class:`LatencyTable`.

    The search-loop counterpart of :class:`~lightning_nas.hardware.costs.CostHook` (same
    call signature) that predicts instead of measuring: it ignores ``model`` (so the loop
    need not build the network for it: ``needs_network = False``) and looks the architecture
    up in a table built beforehand on the target device. ``latency_ms`` is in ms per batch of
    the table's batch size. Init args are plain types, so it works from YAML::

        metric_hooks:
          - class_path: lightning_nas.hardware.LatencyTableHook
            init_args: {path: runs/lut/cifar_cpu.json, space: cifar, build_if_missing: true}

    Args:
        path: the table's JSON file.
        space: ``"imagenet"``, ``"cifar"`` or a :class:`MobileNetV3Space`: the table must
            have been built for it (checked at load). ``None`` trusts the file's own space
            description (required to be given with ``build_if_missing``).
        resolutions: override the named space's resolutions (e.g. ``[128, 160]``).
        build_if_missing: build (and save) the table when ``path`` does not exist, on this
            machine, with the options below; it takes minutes (build on the target device).
        device, batch_size, warmup, repeats, rounds, num_threads, calibrate, calibrate_fit:
            options of :meth:`LatencyTable.build` (used only when building). ``device`` and
            ``batch_size`` are also checked against a loaded table's metadata when given.
        cache: remember predictions per architecture.

    Attributes:
        table: the loaded :class:`LatencyTable`.
    """

    needs_network = False
    #: It provides ``latency_ms`` (as a ``CostHook`` with ``latency=True`` does).
    latency = True

    def __init__(self, path: str, *, space: str | MobileNetV3Space | None = None,
                 resolutions: list[int] | None = None, build_if_missing: bool = False,
                 device: str | None = None, batch_size: int | None = None,
                 warmup: int = 10, repeats: int = 50, rounds: int = 3,
                 num_threads: int | None = 1, calibrate: int = 10,
                 calibrate_fit: str = "scale", cache: bool = True):
        self.path = Path(path)
        resolved = _resolve_space(space, resolutions) if space is not None else None
        if not self.path.exists() and build_if_missing:
            if resolved is None:
                raise ValueError(f"latency table {self.path} is missing and build_if_missing "
                                 "needs the space: give space='imagenet' or 'cifar'")
            table = LatencyTable.build(resolved, device=device or "cpu",
                                       batch_size=batch_size or 1, warmup=warmup,
                                       repeats=repeats, rounds=rounds,
                                       num_threads=num_threads, calibrate=calibrate,
                                       calibrate_fit=calibrate_fit)
            table.save(self.path)
        self.table = LatencyTable.load(self.path, space=resolved)
        meta = self.table.metadata
        for name, want in (("device", device), ("batch_size", batch_size)):
            if want is not None and meta.get(name) != want:
                raise ValueError(f"latency table {self.path} was built with {name}="
                                 f"{meta.get(name)!r}, the hook asks for {want!r}; {_REBUILD}")
        self.cache = cache
        self._results: dict[Any, float] = {}

    def __call__(self, arch: Arch, model: nn.Module | None = None) -> dict[str, float]:
        if self.cache and arch in self._results:
            return {"latency_ms": self._results[arch]}
        ms = self.table.predict(arch)
        if self.cache:
            self._results[arch] = ms
        return {"latency_ms": ms}

    def __repr__(self) -> str:
        return f"LatencyTableHook({str(self.path)!r}, {self.table!r})"


# -- command line -------------------------------------------------------------------------------
def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> LatencyTable:
    """``python -m lightning_nas.hardware.latency_lut``: build a table and save it."""
    p = argparse.ArgumentParser(
        prog="python -m lightning_nas.hardware.latency_lut",
        description="Build the per-layer latency lookup table of the MobileNetV3 space on this "
                    "machine (Once-for-All, Cai et al. 2020, Sec. 3.3).")
    p.add_argument("--space", choices=sorted(SPACE_PRESETS), default="cifar")
    p.add_argument("--resolutions", type=_parse_ints, default=None,
                   help="override the space's resolutions, e.g. 128,160")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-threads", type=int, default=1,
                   help="torch intra-op threads (0: keep torch's default)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3,
                   help="round-robin passes over the layers; entry = median over rounds")
    p.add_argument("--calibrate", type=int, default=10,
                   help="whole networks measured to fit the overhead (0: plain sum)")
    p.add_argument("--fit", choices=("scale", "linear", "offset"), default="scale")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    space = _resolve_space(args.space, args.resolutions)
    n = len(enumerate_layers(space))
    print(f"building a latency table of {n} entries for the {args.space} space (resolutions "
          f"{list(space.resolutions)}) on {args.device}, batch {args.batch_size}, "
          f"{args.num_threads or 'default'} thread(s)", file=sys.stderr, flush=True)
    table = LatencyTable.build(space, device=args.device, batch_size=args.batch_size,
                               warmup=args.warmup, repeats=args.repeats, rounds=args.rounds,
                               num_threads=args.num_threads or None, calibrate=args.calibrate,
                               calibrate_fit=args.fit, seed=args.seed)
    table.save(args.out)
    cal = table.calibration
    extra = (f"; calibration on {cal['n']} networks: overhead {table.overhead_ms:.3f} ms, "
             f"scale {table.scale:.3f}, MAPE {cal['mape_sum_pct']:.1f}% -> "
             f"{cal['mape_calibrated_pct']:.1f}%") if cal else ""
    print(f"wrote {args.out}: {len(table)} entries, built in "
          f"{table.metadata['build_seconds']:.1f} s{extra}", file=sys.stderr, flush=True)
    return table


if __name__ == "__main__":
    main()
