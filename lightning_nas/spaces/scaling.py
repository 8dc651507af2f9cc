"""Compound scaling of any discovered architecture (Tan & Le, "EfficientNet: Rethinking Model
Scaling for Convolutional Neural Networks", ICML 2019, Sec. 3.3, Eq. 3).

``depth = alpha ** phi``, ``width = beta ** phi``, ``resolution = gamma ** phi`` with
``alpha * beta**2 * gamma**2 ~ 2``, so FLOPs grow by about ``2 ** phi``; the paper's grid
search at phi = 1 found alpha = 1.2, beta = 1.1, gamma = 1.15 (Sec. 4, step 1). Channels are
rounded to multiples of a divisor (never more than 10% down) and repeats per stage or per
network (:func:`~lightning_nas.spaces.mobile_blocks.round_channels`,
:func:`~lightning_nas.spaces.mobile_blocks.stage_block_counts`); the defaults are below.

**Rounding.** The paper rounds channels to multiples of 8 and each stage's repeats up
(``ceil``); that is the default for ``mobile`` architectures (the presets, an architecture
saved in the mobile space), so EfficientNet scales as its reference implementation does
(EfficientNet-B1..B7 are built from B0 with exactly that rounding). A **Once-for-All subnet**
defaults to the network's block total rounded to the nearest (``depth_rounding="network"``,
shared among the stages by largest remainder) and channels to multiples of 4, because the
paper's rounding cannot shrink it: its stages have 2-4 blocks, and ``ceil(0.83 n) = n`` for
n <= 5, so phi = -1 removes no block; its 24- and 40-channel stages stay 24 and 40 at width
0.91 with 8s (the nearest multiple of 8). With the paper's rounding phi = -1 keeps 1.43-1.55x
the 2**-1 FLOPs of 40 random OFA subnets; with the default 20/20 CIFAR and 14/20 ImageNet
subnets are within 15% of 2**phi at phi = -1, 1, 2 (``scripts/results/scaling``). Pass
``depth_rounding`` and ``divisor`` to choose either rounding for any architecture.

What each space scales:

* ``mobile`` (:mod:`lightning_nas.spaces.mobile_blocks`): every channel count (stem, stages,
  head, feature), every stage's repeats and the architecture's resolution; the result is a
  ``mobile`` Arch.
* ``mobilenetv3`` (a Once-for-All subnet): converted to the ``mobile`` Arch of the same
  network (:func:`~lightning_nas.spaces.mobile_blocks.from_ofa_arch`), then as above.
* ``darts``: the network's initial channels and number of cells (the genotype is kept);
  the result is the same Arch with a space whose build defaults are scaled.
* ``nb201``: the first stage's channels and the cells per stage (the cell is kept).

For the cell spaces the input resolution is the data's: :attr:`Scaled.resolution` is what to
feed (``base_resolution * gamma**phi``; images are resized to it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lightning_nas.spaces.base import Arch, ArchError, SearchSpace
from lightning_nas.spaces.mobile_blocks import (
    MobileBlockSpace,
    ScaleError,
    arch_channels,
    from_ofa_arch,
    round_channels,
    round_repeats,
    scale_mobile,
)

#: Tan & Le 2019, Sec. 4: the grid search's coefficients for EfficientNet-B0 (phi = 1).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15


def compound(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA
             ) -> tuple[float, float, float]:
    """``(depth, width, resolution)`` multipliers ``(alpha**phi, beta**phi, gamma**phi)``."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    return alpha ** phi, beta ** phi, gamma ** phi


@dataclass(frozen=True)
class Scaled:
    """A scaled architecture and what builds it.

    Attributes:
        arch: the scaled architecture (DARTS / NB201: the unchanged cell).
        space: the space that builds it (DARTS / NB201: with scaled channels and cells).
        phi, depth, width, resolution_mult: the compound coefficient and its multipliers.
        base_resolution, resolution: input resolution before and after scaling.
        changes: what changed, e.g. ``{"channels": [36, 40], "layers": [20, 24]}``.
    """

    arch: Arch
    space: SearchSpace
    phi: float
    depth: float
    width: float
    resolution_mult: float
    base_resolution: int
    resolution: int
    changes: dict[str, list[Any]] = field(default_factory=dict)
    rounding: dict[str, Any] = field(default_factory=dict)

    def build(self, **kwargs: Any) -> nn.Module:
        return self.space.build(self.arch, **kwargs)

    def summary(self) -> dict[str, Any]:
        """Plain data for arch.json / printing."""
        spec = self.space.config() if hasattr(self.space, "config") else None
        return {"phi": self.phi, "depth": self.depth, "width": self.width,
                "resolution_mult": self.resolution_mult,
                "base_resolution": self.base_resolution, "resolution": self.resolution,
                "changes": self.changes, "rounding": self.rounding,
                "space": {"class_path": f"{type(self.space).__module__}."
                                        f"{type(self.space).__qualname__}", "init_args": spec}}


def _phi_error(err: ScaleError, phi: float, beta: float, fewest: int, divisor: int) -> ScaleError:
    smallest = math.log(divisor / (2 * fewest)) / math.log(beta) if beta != 1 else None
    hint = f"; the smallest phi that keeps every layer is {smallest:.2f}" if smallest else ""
    return ScaleError(f"phi={phi:g} (width beta**phi = {beta ** phi:.4g}): "
                      f"{str(err).split('; the smallest')[0]}{hint}")


def _resolution(base: int, mult: float, phi: float, gamma: float, multiple: int = 1) -> int:
    r = int(round(base * mult / multiple)) * multiple
    if r < 1:
        smallest = (f"; the smallest phi that keeps a pixel is "
                    f"{math.log(multiple / (2 * base)) / math.log(gamma):.2f}"
                    if gamma != 1 else "")
        raise ScaleError(f"phi={phi:g} scales the resolution {base} by {mult:.3g} to {r} pixels "
                         f"(multiples of {multiple}); it must be >= 1{smallest}")
    return r


def scale(arch: Arch, phi: float, *, space: SearchSpace | None = None, alpha: float = ALPHA,
          beta: float = BETA, gamma: float = GAMMA, resolution: int | None = None,
          divisor: int | None = None, depth_rounding: str | None = None) -> Scaled:
    """Compound-scale ``arch`` by ``phi`` (module docstring: what each space scales).

    Args:
        arch: an architecture of the mobile, mobilenetv3 (OFA), darts or nb201 space.
        phi: the compound coefficient (negative shrinks; 0 keeps the network).
        space: the architecture's space with its network settings (DARTS/NB201 channels and
            cells, OFA stage table); default: the space's default constructor.
        alpha, beta, gamma: depth, width and resolution bases (default the paper's).
        resolution: the input resolution before scaling (default: the architecture's for
            mobile spaces, 224 for DARTS's ImageNet stem, else 32).
        divisor: channel counts are multiples of this; default 8 (the paper's) for mobile
            architectures, 4 for OFA subnets and cell networks (module docstring).
        depth_rounding: ``"ceil"`` (each stage's repeats rounded up: the paper's),
            ``"nearest"`` or ``"network"`` (the network's block total rounded, shared by
            largest remainder); default ``"network"`` for OFA subnets, ``"ceil"`` otherwise.

    Raises:
        ScaleError: a layer would have zero channels, or the resolution zero pixels; the
            message names the layer and the smallest phi that works.
        ArchError: a space without a scaling rule.
    """
    depth, width, res_mult = compound(phi, alpha, beta, gamma)
    kind = arch.space
    if kind == "mobilenetv3":
        from lightning_nas.spaces.mobilenet import MobileNetV3Space

        ofa_space = space or MobileNetV3Space()
        converted = from_ofa_arch(ofa_space, arch)
        mobile = MobileBlockSpace(num_classes=ofa_space.build_defaults["num_classes"],
                                  in_channels=ofa_space.build_defaults["in_channels"])
        # 2-4 blocks per stage, 24/40-channel stages: the paper's rounding cannot shrink them
        return scale(converted, phi, space=mobile, alpha=alpha, beta=beta, gamma=gamma,
                     resolution=resolution, divisor=divisor or 4,
                     depth_rounding=depth_rounding or "network")
    if kind == "mobile":
        space = space or MobileBlockSpace()
        space.validate(arch)
        divisor = divisor or 8
        base = int(resolution or arch["resolution"])
        fewest = min(c for _, c in arch_channels(arch))
        try:  # channels first: the message names the layer
            scale_mobile(arch, width=width, divisor=divisor)
        except ScaleError as err:
            raise _phi_error(err, phi, beta, fewest, divisor) from None
        new_res = _resolution(base, res_mult, phi, gamma)
        scaled = scale_mobile(arch, width=width, depth=depth, resolution=new_res,
                              divisor=divisor, depth_rounding=depth_rounding or "ceil")
        changes = {"channels": [[c for _, c in arch_channels(arch)],
                                [c for _, c in arch_channels(scaled)]],
                   "repeats": [[r[1] for r in arch["blocks"]], [r[1] for r in scaled["blocks"]]],
                   "resolution": [base, new_res]}
        return Scaled(scaled, space, phi, depth, width, res_mult, base, new_res, changes,
                      {"depth": depth_rounding or "ceil", "divisor": divisor})
    if kind in ("darts", "nb201"):
        if space is None:
            if kind == "darts":
                from lightning_nas.spaces.darts import DartsSpace as cls
            else:
                from lightning_nas.spaces.nb201 import NB201Space as cls
            space = cls()
        space.validate(arch)
        divisor = divisor or 4
        config = space.config()
        cells = "layers" if kind == "darts" else "cells_per_stage"
        channels, n_cells = int(config["channels"]), int(config[cells])
        default_res = 224 if kind == "darts" and config.get("stem") == "imagenet" else 32
        base = int(resolution or default_res)
        try:
            new_channels = round_channels(channels, width, divisor,
                                          where=f"the {kind} network's first cells")
        except ScaleError as err:
            raise _phi_error(err, phi, beta, channels, divisor) from None
        # multiples of 4: NB201's residual downsampling (and DARTS's factorized reduce) halve
        # the feature map exactly twice
        new_res = _resolution(base, res_mult, phi, gamma, 4)
        new_cells = round_repeats(n_cells, depth, depth_rounding or "ceil") if n_cells else 0
        if kind == "darts" and new_cells < 3:
            new_cells = 3  # a DARTS network needs its two reduction cells and one normal cell
        new_space = type(space)(**{**config, "channels": new_channels, cells: new_cells,
                                   "constraints": space.constraints})
        changes = {"channels": [channels, new_channels], cells: [n_cells, new_cells],
                   "resolution": [base, new_res]}
        return Scaled(arch, new_space, phi, depth, width, res_mult, base, new_res, changes,
                      {"depth": depth_rounding or "ceil", "divisor": divisor})
    raise ArchError(f"no compound-scaling rule for the {kind!r} space; scale mobile, "
                    f"mobilenetv3 (OFA), darts or nb201 architectures")


def macs_of(space: SearchSpace, arch: Arch, resolution: int) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` of ``space.build(arch)`` at ``resolution``, batch 1,
    counted on the meta device (the project's FLOPs counter; FLOPs = 2 x MACs)."""
    import torch

    from lightning_nas.hardware.metrics import count_flops, count_parameters

    with torch.device("meta"):
        net = space.build(arch)
    channels = int(getattr(space, "build_defaults", {}).get("in_channels", 3))
    return count_parameters(net), count_flops(net, (channels, resolution, resolution)).macs


def _space_for(kind: str, opts: Any, arch: Arch | None = None) -> SearchSpace:
    if kind == "mobile":
        return MobileBlockSpace()
    if kind == "mobilenetv3":
        from lightning_nas.spaces.mobilenet import MobileNetV3Space

        config = opts.ofa_space
        if config is None:  # from the subnet's resolution: 32 is the CIFAR configuration's
            cifar = MobileNetV3Space.cifar()
            config = "cifar" if arch is not None and arch.get("resolution") in \
                cifar.resolutions else "imagenet"
        return MobileNetV3Space.cifar() if config == "cifar" else MobileNetV3Space()
    if kind == "darts":
        from lightning_nas.spaces.darts import DartsSpace

        extra = {k: v for k, v in (("channels", opts.channels), ("layers", opts.layers))
                 if v is not None}
        return DartsSpace(stem=opts.stem, num_classes=1000 if opts.stem == "imagenet" else 10,
                          **extra)
    if kind == "nb201":
        from lightning_nas.spaces.nb201 import NB201Space

        extra = {k: v for k, v in (("channels", opts.channels),
                                   ("cells_per_stage", opts.cells_per_stage)) if v is not None}
        return NB201Space(**extra)
    raise ArchError(f"no compound-scaling rule for the {kind!r} space; scale mobile, "
                    f"mobilenetv3 (OFA), darts or nb201 architectures")


def _load_any(source: str, opts: Any) -> tuple[Arch, SearchSpace]:
    """An architecture from a JSON file (its space named inside), a preset or a string."""
    from pathlib import Path

    from lightning_nas.spaces.darts import PRESETS as DARTS_PRESETS
    from lightning_nas.spaces.mobile_blocks import PRESETS as MOBILE_PRESETS

    if source.endswith(".json") or Path(source).is_file():
        arch = Arch.load(source)
        return arch, _space_for(arch.space, opts, arch)
    if not opts.space and re.fullmatch(r"[A-Za-z][\w.\-]*", source) and \
            source not in MOBILE_PRESETS and source not in DARTS_PRESETS:
        raise ArchError(f"unknown preset {source!r} (and no such file); mobile presets: "
                        f"{', '.join(MOBILE_PRESETS)}; DARTS presets: "
                        f"{', '.join(DARTS_PRESETS)}")
    kinds = ([opts.space] if opts.space else
             ["mobile"] if source in MOBILE_PRESETS else ["darts"] if source in DARTS_PRESETS
             else ["mobile", "darts", "nb201", "mobilenetv3"])
    errors = []
    for kind in kinds:
        space = _space_for(kind, opts)
        try:
            return space.load(source), space
        except ArchError as err:
            errors.append(f"{kind}: {str(err).splitlines()[0]}")
    raise ArchError(f"{source!r} is not an arch.json, a preset or an architecture string of "
                    f"the scalable spaces ({'; '.join(errors)}); mobile presets: "
                    f"{', '.join(MOBILE_PRESETS)}; DARTS presets: {', '.join(DARTS_PRESETS)}")


def main_scale(argv: list[str]) -> Scaled:
    """``lightning-nas scale ARCH --phi PHI``: compound-scale an architecture and write it."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="lightning-nas scale",
        description="Compound scaling (Tan & Le 2019): depth alpha**phi, width beta**phi, "
        "resolution gamma**phi. Mobile architectures (presets, arch.json of a search, OFA "
        "subnets) scale channels, repeats and resolution; DARTS and NAS-Bench-201 networks "
        "scale their channels and cells (the cell is kept). Writes the scaled arch.json with "
        "a 'scaled' record (multipliers, resolution, the space settings that build it) and "
        "prints parameters and multiply-adds before and after.")
    parser.add_argument("arch", help="an arch.json, a preset (EfficientNet-B0, MnasNet-A1, "
                        "DARTS_V2, ...) or an architecture string")
    parser.add_argument("--phi", type=float, required=True, help="compound coefficient")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="depth base (1.2)")
    parser.add_argument("--beta", type=float, default=BETA, help="width base (1.1)")
    parser.add_argument("--gamma", type=float, default=GAMMA, help="resolution base (1.15)")
    parser.add_argument("--space", choices=("mobile", "mobilenetv3", "darts", "nb201"),
                        default=None, help="the architecture's space (default: the JSON's, or "
                        "found from the preset / string)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="input resolution before scaling (default: the architecture's; "
                        "32 for cell networks, 224 with the DARTS ImageNet stem)")
    parser.add_argument("--divisor", type=int, default=None,
                        help="channels are multiples of this (default 8 for mobile networks, "
                        "as the paper; 4 for OFA subnets and cell networks, whose widths are "
                        "16, 24, 36 or 40)")
    parser.add_argument("--depth-rounding", choices=("ceil", "nearest", "network"),
                        default=None, help="ceil: each stage's blocks rounded up (the paper; "
                        "default for mobile and cell networks); nearest; network: the "
                        "network's block total rounded and shared by largest remainder "
                        "(default for OFA subnets, whose 2-4-block stages ceil never shrinks)")
    parser.add_argument("--channels", type=int, default=None,
                        help="DARTS / NB201: the network's initial channels before scaling")
    parser.add_argument("--layers", type=int, default=None, help="DARTS: cells before scaling")
    parser.add_argument("--cells-per-stage", type=int, default=None,
                        help="NB201: cells per stage before scaling")
    parser.add_argument("--stem", choices=("cifar", "imagenet"), default="cifar",
                        help="DARTS: the network's stem")
    parser.add_argument("--ofa-space", choices=("imagenet", "cifar"), default=None,
                        help="mobilenetv3 (OFA) architectures: which OFA configuration "
                        "(default: cifar for 32-pixel subnets, else imagenet)")
    parser.add_argument("--out", default=None,
                        help="where to write the scaled arch.json (default scaled_phi<phi>.json)")
    opts = parser.parse_args(argv)
    arch, space = _load_any(opts.arch, opts)
    result = scale(arch, opts.phi, space=space, alpha=opts.alpha, beta=opts.beta,
                   gamma=opts.gamma, resolution=opts.resolution, divisor=opts.divisor,
                   depth_rounding=opts.depth_rounding)
    base = scale(arch, 0, space=space, resolution=opts.resolution, divisor=opts.divisor,
                 depth_rounding=opts.depth_rounding)
    p0, m0 = macs_of(base.space, base.arch, base.resolution)
    p1, m1 = macs_of(result.space, result.arch, result.resolution)
    out = Path(opts.out or f"scaled_phi{opts.phi:g}.json")
    result.arch.save(out, string=result.space.to_string(result.arch), scaled=result.summary(),
                     params=p1, macs=m1)
    print(f"phi={opts.phi:g}: depth x{result.depth:.3f}, width x{result.width:.3f}, "
          f"resolution x{result.resolution_mult:.3f} ({result.base_resolution} -> "
          f"{result.resolution})")
    for key, (before, after) in result.changes.items():
        print(f"  {key}: {before} -> {after}")
    print(f"  rounding: blocks {result.rounding['depth']}, channels to multiples of "
          f"{result.rounding['divisor']}")
    print(f"  parameters {p0:,} -> {p1:,}; multiply-adds {m0 / 1e6:,.1f} M -> {m1 / 1e6:,.1f} M "
          f"(x{m1 / m0:.2f}; 2**phi = {2 ** opts.phi:.2f})")
    if arch.space in ("darts", "nb201"):
        cells = "layers" if arch.space == "darts" else "cells_per_stage"
        print(f"  train it with: --model.arch {out} --model.init_args.space.init_args.channels "
              f"{result.changes['channels'][1]} --model.init_args.space.init_args.{cells} "
              f"{result.changes[cells][1]} (images at {result.resolution}x{result.resolution})")
    else:
        print(f"  train it with: --model.arch {out}")
    print(f"wrote {out}")
    return result


class CompoundScalingSpace(SearchSpace):
    """The paper's grid search for alpha, beta, gamma (Tan & Le 2019, Sec. 4, step 1: phi = 1,
    alpha * beta**2 * gamma**2 ~ 2) as a search space, so `lightning-nas search` runs it with
    any evaluator (e.g. training each scaled network on real data).

    An architecture is ``{"alpha", "beta", "gamma"}``, one point of the grids whose FLOPs
    factor ``alpha * beta**2 * gamma**2`` is within ``tolerance`` of ``target``; the space
    is one categorical decision over those points (a random sampler with de-duplication over
    ``len(points)`` trials is the grid search). ``build(arch)`` is the ``base`` architecture
    scaled by ``phi`` with these coefficients (:func:`scale`); the network's ``resolution``
    attribute is the scaled input resolution, to which FixedArchitecture resizes its inputs.

    Args:
        base: the architecture to scale: a preset name, an arch.json or a string of
            ``base_space``.
        base_space: its space (default a MobileBlockSpace); e.g. ``MobileBlockSpace(
            input_size=32, stem_stride=1)`` scales a network for 32x32 images from 32 pixels.
        phi: the compound coefficient of every candidate (1 in the paper's grid search).
        alphas, betas, gammas: the grids.
        target, tolerance: keep points with ``|alpha beta^2 gamma^2 - target| <= tolerance``.
        resolution: the base input resolution (default: ``base_space.input_size`` or the
            architecture's).
        divisor, depth_rounding: passed to :func:`scale` (default here: the paper's
            rounding, ``"ceil"`` and multiples of 8, for the grid search of EfficientNet).
        num_classes, in_channels: build defaults.
    """

    name = "compound"

    def __init__(self, *, base: str = "EfficientNet-B0", base_space: SearchSpace | None = None,
                 phi: float = 1.0, alphas: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4),
                 betas: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2),
                 gammas: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25),
                 target: float = 2.0, tolerance: float = 0.1, resolution: int | None = None,
                 divisor: int | None = None, depth_rounding: str = "ceil",
                 num_classes: int = 10, in_channels: int = 3, constraints: Any = None):
        super().__init__(constraints)
        if isinstance(base_space, dict):  # {"class_path", "init_args"} from a checkpoint
            from lightning_nas.strategies.common import space_from_spec

            base_space = space_from_spec(base_space)
        self.base_space = base_space or MobileBlockSpace(num_classes=num_classes,
                                                         in_channels=in_channels)
        self.base_name = str(base)
        self.base = self.base_space.load(base)
        self.phi, self.target, self.tolerance = float(phi), float(target), float(tolerance)
        self.resolution = resolution or getattr(self.base_space, "input_size", None)
        self.divisor, self.depth_rounding = divisor, depth_rounding
        self.grids = (tuple(map(float, alphas)), tuple(map(float, betas)),
                      tuple(map(float, gammas)))
        self.points = tuple((a, b, g) for a in self.grids[0] for b in self.grids[1]
                            for g in self.grids[2]
                            if abs(a * b * b * g * g - self.target) <= self.tolerance)
        if not self.points:
            raise ValueError(f"no (alpha, beta, gamma) of the grids has alpha beta^2 gamma^2 "
                             f"within {tolerance} of {target}; widen the grids or the tolerance")
        self.build_defaults = {"num_classes": num_classes, "in_channels": in_channels}

    def config(self) -> dict[str, Any]:
        from lightning_nas.strategies.common import space_spec

        return {"base": self.base_name, "base_space": space_spec(self.base_space),
                "phi": self.phi, "alphas": list(self.grids[0]), "betas": list(self.grids[1]),
                "gammas": list(self.grids[2]), "target": self.target,
                "tolerance": self.tolerance, "resolution": self.resolution,
                "divisor": self.divisor, "depth_rounding": self.depth_rounding,
                **self.build_defaults}

    def _arch(self, point: tuple[float, float, float]) -> Arch:
        return Arch(self.name, dict(zip(("alpha", "beta", "gamma"), point)))

    def check(self, arch: Arch) -> None:
        if set(arch) != {"alpha", "beta", "gamma"}:
            raise ArchError(f"a {self.name} architecture has the labels alpha, beta, gamma; got "
                            f"{sorted(arch)}")
        point = (arch["alpha"], arch["beta"], arch["gamma"])
        if point not in self.points:
            raise ArchError(f"(alpha, beta, gamma) = {point} is not a grid point with "
                            f"alpha beta^2 gamma^2 within {self.tolerance} of {self.target}; "
                            f"points: {list(self.points)}")

    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        return f"alpha{arch['alpha']:g}|beta{arch['beta']:g}|gamma{arch['gamma']:g}"

    def parse(self, text: str) -> Arch:
        m = re.fullmatch(r"alpha([\d.]+)\|beta([\d.]+)\|gamma([\d.]+)", str(text).strip())
        if not m:
            raise ArchError(f"a {self.name} string is 'alpha<a>|beta<b>|gamma<g>', e.g. "
                            f"alpha1.2|beta1.1|gamma1.15; got {text!r}")
        return self.validate(self._arch(tuple(float(v) for v in m.groups())))

    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [("point", tuple(range(len(self.points))))]

    def encode(self, arch: Arch) -> list[int]:
        self.validate(arch)
        return [self.points.index((arch["alpha"], arch["beta"], arch["gamma"]))]

    def decode(self, indices: Any) -> Arch:
        if len(indices) != 1 or not 0 <= int(indices[0]) < len(self.points):
            raise ArchError(f"expected one point index in 0..{len(self.points) - 1}, got "
                            f"{list(indices)}")
        return self._arch(self.points[int(indices[0])])

    def sample(self, rng: Any) -> Arch:
        return self._arch(rng.choice(self.points))

    def mutate(self, arch: Arch, rng: Any) -> Arch:
        self.validate(arch)
        here = (arch["alpha"], arch["beta"], arch["gamma"])
        others = [p for p in self.points if p != here]
        if not others:
            raise ArchError("the grid has a single point; nothing to mutate")
        return self._arch(rng.choice(others))

    def scaled(self, arch: Arch) -> Scaled:
        self.validate(arch)
        return scale(self.base, self.phi, space=self.base_space, alpha=arch["alpha"],
                     beta=arch["beta"], gamma=arch["gamma"], resolution=self.resolution,
                     divisor=self.divisor, depth_rounding=self.depth_rounding)

    def build(self, arch: Arch, **kwargs: Any) -> nn.Module:
        """The scaled base network; ``net.resolution`` is its scaled input resolution."""
        result = self.scaled(arch)
        options = {**self.build_defaults, **kwargs}
        if hasattr(result.space, "build_defaults"):
            accepted = set(result.space.build_defaults) | {"num_classes", "in_channels"}
            options = {k: v for k, v in options.items() if k in accepted}
        net = result.space.build(result.arch, **options)
        net.resolution = result.resolution
        return net


__all__ = ["ALPHA", "BETA", "GAMMA", "CompoundScalingSpace", "Scaled", "ScaleError",
           "compound", "macs_of", "main_scale", "scale"]
