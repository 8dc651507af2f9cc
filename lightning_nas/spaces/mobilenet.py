"""The elastic MobileNetV3 space of Once-for-All (Cai et al., "Once-for-All: Train One Network
and Specialize it for Efficient Deployment", ICLR 2020, Sec. 3.2 / 4.1).

**Network.** ``stem`` (3x3 conv, stride 2 on ImageNet, BN, hard-swish, 16 channels) ->
``first_block`` (inverted residual without expansion: depthwise 3x3 + ReLU, 1x1 project,
16 -> 16, identity shortcut) -> 5 stages (units) of MBConv blocks -> ``final_expand``
(1x1 conv 160 -> 960, BN, hard-swish) -> global average pool -> ``feature_mix`` (1x1 conv
960 -> 1280 without BN, hard-swish) -> dropout -> ``classifier`` (linear). The stage table
(:data:`IMAGENET_STAGES`) is OFA's MobileNetV3 configuration (the MobileNetV3-Large stage
layout): widths 24, 40, 80, 112, 160; first-block strides 2, 2, 2, 1, 2; squeeze-excite in
stages 2, 4, 5; ReLU in stages 1-2 and hard-swish in stages 3-5.

An MBConv block (Sandler et al. 2018; Howard et al. 2019) is 1x1 expand (BN, act) ->
depthwise kxk (BN, act) -> optional squeeze-excite -> 1x1 project (BN, no act), with an
identity shortcut when stride is 1 and input and output channels agree (so never on the first
block of a stage here). The expanded width is ``make_divisible(round(c_in * e), 8)``; the
squeeze-excite bottleneck is ``make_divisible(c_mid // 4, 8)`` with biased 1x1 convs, ReLU and
hard-sigmoid gating (MobileNetV3, Sec. 5.3).

**Elastic dimensions** (OFA Fig. 2): per stage a depth in ``depths`` ({2, 3, 4}); per block a
kernel size in ``kernels`` ({3, 5, 7}) and expand ratio in ``expands`` ({3, 4, 6}); the input
resolution in ``resolutions`` ({128, 160, 192, 224} on ImageNet). Only the first ``depth``
blocks of a stage run (OFA keeps the first layers, Sec. 3.2 "elastic depth").

**Arch labels** (stages and blocks numbered from 1)::

    "resolution"                  int
    "stage{i}.depth"              int, i = 1..5
    "stage{i}.block{j}.kernel"    int, j = 1..max(depths)
    "stage{i}.block{j}.expand"    int

Kernel and expand of *every* block up to the largest depth are kept, also for blocks beyond
the stage's depth (inactive): like OFA's ``{"ks": [20], "e": [20], "d": [5]}`` dicts, every
combination of choices is an architecture, so :meth:`~MobileNetV3Space.decisions` are
independent and ``encode``/``decode`` are a bijection. Architectures that differ only in
inactive blocks build the same network; :meth:`~MobileNetV3Space.canonical` maps them to one
representative (inactive blocks at the smallest kernel and expand) for de-duplication.

**String form**::

    r224|d4,4,4,4,4|k7,7,7,7,7,7,...|e6,6,6,6,6,6,...

resolution, then the stage depths, then the kernels and the expand ratios of all
``5 * max(depths)`` blocks, stage-major (stage 1 block 1..4, stage 2 block 1..4, ...).

**Published reference.** OFA's largest ImageNet subnet (d=4, k=7, e=6 everywhere, 1000
classes) has 7.7M parameters (OFA repository, ``ofa_mbv3_d234_e346_k357_w1.0``);
``MobileNetV3Space().count_params(largest)`` gives 7,664,760 (smallest: 3,410,792).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.ops import drop_path

SPACE_NAME = "mobilenetv3"


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% down.

    The rounding rule of the MobileNet papers' reference implementations.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: output ``width``, ``stride`` of its first block, squeeze-excite,
    activation (``"relu"`` or ``"hswish"``)."""

    width: int
    stride: int
    se: bool
    act: str


#: OFA MobileNetV3 stages 1..5 (MobileNetV3-Large layout, Howard et al. 2019, Table 1).
IMAGENET_STAGES: tuple[StageSpec, ...] = (
    StageSpec(24, 2, False, "relu"),
    StageSpec(40, 2, True, "relu"),
    StageSpec(80, 2, False, "hswish"),
    StageSpec(112, 1, True, "hswish"),
    StageSpec(160, 2, True, "hswish"),
)
#: The CIFAR variant: stage 1 keeps the resolution (with the stride-1 stem, 32x32 -> 4x4).
CIFAR_STAGES: tuple[StageSpec, ...] = (
    StageSpec(24, 1, False, "relu"),
    *IMAGENET_STAGES[1:],
)


#: Activations by name: ReLU, ReLU6 (MobileNetV2, ProxylessNAS), hard-swish (MobileNetV3),
#: swish / SiLU (EfficientNet), and the gates of squeeze-excite (sigmoid, hard-sigmoid).
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "swish": nn.SiLU,
               "sigmoid": nn.Sigmoid, "hsigmoid": nn.Hardsigmoid}


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}")
    return nn.Sigmoid() if name == "sigmoid" else ACTIVATIONS[name](inplace=True)


class ConvBNAct(nn.Sequential):
    """Conv(k, stride, 'same' padding, no bias) -> BN -> act: (B, c_in, H, W) ->
    (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = "relu"):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gating: x * gate(W2 act(W1 avgpool(x))); (B, C, H, W) kept.

    By default MobileNetV3's (Sec. 5.3): bottleneck ``make_divisible(C // reduction, 8)``,
    ReLU, hard-sigmoid; 1x1 convs with bias. ``mid``, ``act`` and ``gate`` give the other
    published variants, e.g. EfficientNet's ``mid = int(block input channels * 0.25)``, swish,
    sigmoid (Tan & Le 2019, Sec. 4).
    """

    def __init__(self, channels: int, reduction: int = 4, *, mid: int | None = None,
                 act: str = "relu", gate: str = "hsigmoid"):
        super().__init__()
        mid = make_divisible(channels // reduction, 8) if mid is None else int(mid)
        if mid < 1:
            raise ValueError(f"squeeze-excite bottleneck must have >= 1 channel, got {mid}")
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.relu = _act(act)  # named for the default (ReLU); checkpoints hold no weights here
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = _act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * self.gate(self.expand(self.relu(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual block: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).

    ``expand`` is absent when ``expand_ratio == 1``; the shortcut is the identity when
    ``stride == 1 and c_in == c_out``, else there is none. ``se_options`` are passed to
    :class:`SqueezeExcite` (other published variants; default MobileNetV3's).
    ``drop_connect`` drops the residual branch of whole samples while training (EfficientNet's
    stochastic depth; only on blocks with a shortcut).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand_ratio: float,
                 se: bool, act: str, *, se_options: dict[str, Any] | None = None,
                 drop_connect: float = 0.0):
        super().__init__()
        mid = make_divisible(round(c_in * expand_ratio), 8) if expand_ratio != 1 else c_in
        self.kernel, self.stride, self.expand_ratio = kernel, stride, expand_ratio
        self.expand = ConvBNAct(c_in, mid, 1, act=act) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, **(se_options or {})) if se else None
        self.project = ConvBNAct(mid, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out
        self.drop_connect = float(drop_connect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if not self.residual:
            return y
        if self.training and self.drop_connect > 0:
            y = drop_path(y, self.drop_connect)
        return x + y


class MobileNetV3Network(nn.Module):
    """The standalone network of one architecture; ``forward(x)`` -> logits (B, num_classes).

    Input (B, in_channels, r, r), nominally r = ``arch["resolution"]`` (stored as
    ``self.resolution``); any size works thanks to the global pooling. ``self.block_labels[n]``
    is the ``(stage, block)`` (1-based) of ``self.blocks[n]``, for copying supernet weights.
    """

    def __init__(self, arch: Arch, *, stages: Sequence[StageSpec], stem_width: int,
                 stem_stride: int, final_width: int, feature_width: int, max_depth: int,
                 num_classes: int, in_channels: int, dropout: float):
        super().__init__()
        self.arch = arch
        self.resolution = int(arch["resolution"])
        self.stem = ConvBNAct(in_channels, stem_width, 3, stem_stride, act="hswish")
        self.first_block = MBConv(stem_width, stem_width, 3, 1, 1, se=False, act="relu")
        blocks, labels = [], []
        c = stem_width
        for i, spec in enumerate(stages, start=1):
            for j in range(1, int(arch[f"stage{i}.depth"]) + 1):
                blocks.append(MBConv(c, spec.width, int(arch[f"stage{i}.block{j}.kernel"]),
                                     spec.stride if j == 1 else 1,
                                     int(arch[f"stage{i}.block{j}.expand"]), spec.se, spec.act))
                labels.append((i, j))
                c = spec.width
        self.blocks = nn.ModuleList(blocks)
        self.block_labels = tuple(labels)
        self.final_expand = ConvBNAct(c, final_width, 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(final_width, feature_width, 1, bias=False),
                                         nn.Hardswish(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = self.pool(self.final_expand(x))  # (B, 960, 1, 1)
        x = self.feature_mix(x).flatten(1)  # (B, 1280)
        return self.classifier(self.dropout(x))


def _check_choices(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                         for v in values) or len(set(values)) != len(values):
        raise ValueError(f"{name} must be distinct positive ints, got {values!r}")
    return tuple(sorted(values))


class MobileNetV3Space(SearchSpace):
    """Once-for-All's elastic MobileNetV3 space (module docstring: labels, string form).

    Args:
        depths: choices of blocks per stage.
        kernels: choices of depthwise kernel size (odd).
        expands: choices of expand ratio.
        resolutions: choices of input resolution.
        stages: the stage table, :class:`StageSpec` or dicts of its fields; ``None`` gives
            :data:`IMAGENET_STAGES` (:data:`CIFAR_STAGES` in the CIFAR class). ``None`` rather
            than the tuple as default so a saved config (jsonargparse) re-parses.
        stem_stride: stride of the stem conv (2 ImageNet, 1 CIFAR).
        stem_width, final_width, feature_width: 16, 960, 1280 in OFA.
        num_classes, in_channels, dropout: defaults of :meth:`build` (OFA: dropout 0.1).
        constraints: limits enforced by :meth:`validate`.

    The ImageNet configuration is the default; :meth:`cifar` gives the 32x32 one.
    """

    name = SPACE_NAME

    def __init__(self, *, depths: Sequence[int] = (2, 3, 4), kernels: Sequence[int] = (3, 5, 7),
                 expands: Sequence[int] = (3, 4, 6),
                 resolutions: Sequence[int] = (128, 160, 192, 224),
                 stages: Sequence[StageSpec] | None = None,
                 stem_stride: int = 2, stem_width: int = 16, final_width: int = 960,
                 feature_width: int = 1280, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.1, constraints: Constraints | None = None):
        super().__init__(constraints)
        self.depths = _check_choices("depths", depths)
        self.kernels = _check_choices("kernels", kernels)
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd, got {self.kernels}")
        self.expands = _check_choices("expands", expands)
        self.resolutions = _check_choices("resolutions", resolutions)
        self.stages = tuple(s if isinstance(s, StageSpec) else StageSpec(**s)
                            for s in (IMAGENET_STAGES if stages is None else stages))
        if not self.stages:
            raise ValueError("need at least one stage")
        for s in self.stages:
            _act(s.act)
            if s.width < 1 or s.stride not in (1, 2):
                raise ValueError(f"stage {s}: width must be >= 1 and stride 1 or 2")
        if stem_stride not in (1, 2) or min(stem_width, final_width, feature_width) < 1:
            raise ValueError("stem_stride must be 1 or 2 and widths >= 1")
        if num_classes < 1 or in_channels < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"need num_classes, in_channels >= 1 and 0 <= dropout < 1; got "
                             f"{num_classes}, {in_channels}, {dropout}")
        self.max_depth = max(self.depths)
        self.stem_stride = stem_stride
        self.widths = {"stem_width": stem_width, "final_width": final_width,
                       "feature_width": feature_width}
        self.build_defaults = {"num_classes": num_classes, "in_channels": in_channels,
                               "dropout": dropout}
        self.block_keys = tuple((i, j) for i in range(1, len(self.stages) + 1)
                                for j in range(1, self.max_depth + 1))
        self._decisions: list[tuple[str, tuple[Any, ...]]] = [("resolution", self.resolutions)]
        self._decisions += [(f"stage{i}.depth", self.depths)
                            for i in range(1, len(self.stages) + 1)]
        self._decisions += [(f"stage{i}.block{j}.kernel", self.kernels) for i, j in self.block_keys]
        self._decisions += [(f"stage{i}.block{j}.expand", self.expands) for i, j in self.block_keys]
        self.labels = tuple(label for label, _ in self._decisions)

    @classmethod
    def cifar(cls, **kwargs: Any) -> MobileNetV3Space:
        """The 32x32 configuration (:class:`MobileNetV3CifarSpace`); ``kwargs`` override."""
        return MobileNetV3CifarSpace(**kwargs)

    # -- membership ------------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        if set(arch) != set(self.labels):
            missing = sorted(set(self.labels) - set(arch))
            extra = sorted(set(arch) - set(self.labels))
            raise ArchError(f"a {self.name} architecture has labels resolution, stage{{i}}.depth, "
                            f"stage{{i}}.block{{j}}.kernel/expand for i=1..{len(self.stages)}, "
                            f"j=1..{self.max_depth}; missing {missing[:6]}, unexpected "
                            f"{extra[:6]}")
        for label, options in self._decisions:
            value = arch[label]
            if isinstance(value, bool) or value not in options:
                raise ArchError(f"{label}: {value!r} is not a choice of this space; choices "
                                f"are {list(options)}")

    def depth(self, arch: Arch) -> int:
        """Active MBConv blocks (the sum of the stage depths; the first block not counted)."""
        self.check(arch)
        return sum(int(arch[f"stage{i}.depth"]) for i in range(1, len(self.stages) + 1))

    def active_blocks(self, arch: Arch) -> list[tuple[int, int]]:
        """``(stage, block)`` of the blocks that run, in network order (1-based)."""
        self.check(arch)
        return [(i, j) for i, j in self.block_keys if j <= int(arch[f"stage{i}.depth"])]

    def canonical(self, arch: Arch) -> Arch:
        """``arch`` with inactive blocks set to the smallest kernel and expand: archs that
        build the same network map to the same canonical Arch."""
        self.validate(arch)
        changes = {}
        for i, j in self.block_keys:
            if j > int(arch[f"stage{i}.depth"]):
                changes[f"stage{i}.block{j}.kernel"] = self.kernels[0]
                changes[f"stage{i}.block{j}.expand"] = self.expands[0]
        return arch.replace(**changes)

    # -- construction from lists -------------------------------------------------------------
    def make(self, resolution: int, depths: Sequence[int], kernels: Sequence[int],
             expands: Sequence[int]) -> Arch:
        """An Arch from the resolution, the per-stage depths and the stage-major per-block
        kernels and expands (``len == stages * max_depth``, OFA's ``ks``/``e``/``d`` lists)."""
        n_stages, n_blocks = len(self.stages), len(self.block_keys)
        if len(depths) != n_stages:
            raise ArchError(f"expected {n_stages} stage depths, got {len(depths)}")
        for name, seq in (("kernels", kernels), ("expands", expands)):
            if len(seq) != n_blocks:
                raise ArchError(f"expected {n_blocks} {name} ({n_stages} stages x "
                                f"{self.max_depth} blocks, stage-major), got {len(seq)}")
        values: dict[str, Any] = {"resolution": resolution}
        values.update({f"stage{i}.depth": d for i, d in enumerate(depths, start=1)})
        for (i, j), k, e in zip(self.block_keys, kernels, expands):
            values[f"stage{i}.block{j}.kernel"] = k
            values[f"stage{i}.block{j}.expand"] = e
        return self.validate(Arch(self.name, values))

    def to_ofa(self, arch: Arch) -> dict[str, Any]:
        """OFA's subnet dict ``{"r": int, "d": [..], "ks": [..], "e": [..]}``."""
        self.validate(arch)
        return {"r": arch["resolution"],
                "d": [arch[f"stage{i}.depth"] for i in range(1, len(self.stages) + 1)],
                "ks": [arch[f"stage{i}.block{j}.kernel"] for i, j in self.block_keys],
                "e": [arch[f"stage{i}.block{j}.expand"] for i, j in self.block_keys]}

    def from_ofa(self, config: Mapping[str, Any]) -> Arch:
        """Inverse of :meth:`to_ofa` (``"r"`` defaults to the largest resolution)."""
        try:
            return self.make(config.get("r", self.resolutions[-1]), config["d"], config["ks"],
                             config["e"])
        except (KeyError, TypeError) as err:
            raise ArchError(f"an OFA subnet dict needs lists 'd', 'ks', 'e' (and int 'r'): "
                            f"{err}") from None

    def largest(self, resolution: int | None = None) -> Arch:
        n = len(self.block_keys)
        return self.make(resolution or self.resolutions[-1], [self.depths[-1]] * len(self.stages),
                         [self.kernels[-1]] * n, [self.expands[-1]] * n)

    def smallest(self, resolution: int | None = None) -> Arch:
        n = len(self.block_keys)
        return self.make(resolution or self.resolutions[0], [self.depths[0]] * len(self.stages),
                         [self.kernels[0]] * n, [self.expands[0]] * n)

    # -- string form -------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        ofa = self.to_ofa(arch)
        return (f"r{ofa['r']}|d{','.join(map(str, ofa['d']))}|k{','.join(map(str, ofa['ks']))}"
                f"|e{','.join(map(str, ofa['e']))}")

    _FIELD = re.compile(r"^\d+(,\d+)*$")

    def parse(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchError(f"a {self.name} string must be a str, got {type(text).__name__}")
        example = self.to_string(self.smallest())
        parts = text.strip().split("|")
        if len(parts) != 4 or [p[:1] for p in parts] != ["r", "d", "k", "e"]:
            raise ArchError(f"a {self.name} string is 'r<res>|d<depths>|k<kernels>|e<expands>' "
                            f"with comma-separated ints, got {text!r}; example: {example}")
        fields = []
        for part in parts:
            body = part[1:]
            if not self._FIELD.match(body):
                raise ArchError(f"field {part!r} of {text!r}: expected '{part[0]}' followed by "
                                f"comma-separated integers")
            fields.append([int(v) for v in body.split(",")])
        if len(fields[0]) != 1:
            raise ArchError(f"resolution field {parts[0]!r} must be one integer")
        return self.make(fields[0][0], fields[1], fields[2], fields[3])

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        return self.decode([rng.randrange(len(options)) for _, options in self._decisions])

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """Change one uniformly chosen decision to another of its options.

        The decision may be a kernel/expand of an inactive block (a neutral mutation, as in
        OFA's evolutionary search which mutates the full ``ks``/``e`` lists).
        """
        self.validate(arch)
        open_decisions = [d for d in self._decisions if len(d[1]) > 1]
        if not open_decisions:
            raise ArchError(f"the {self.name} space has a single architecture; nothing to mutate")
        label, options = rng.choice(open_decisions)
        return arch.replace(**{label: rng.choice([v for v in options if v != arch[label]])})

    # -- categorical view --------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """resolution, the stage depths, then kernels and expands of all blocks (stage-major)."""
        return list(self._decisions)

    def encode(self, arch: Arch) -> list[int]:
        self.validate(arch)
        return [options.index(arch[label]) for label, options in self._decisions]

    def decode(self, indices: Sequence[int]) -> Arch:
        if len(indices) != len(self._decisions):
            raise ArchError(f"expected {len(self._decisions)} decision indices, got "
                            f"{len(indices)}")
        values = {}
        for (label, options), i in zip(self._decisions, indices):
            if isinstance(i, bool) or not 0 <= int(i) < len(options):
                raise ArchError(f"{label}: option index {i!r} out of range 0..{len(options) - 1}")
            values[label] = options[int(i)]
        return self.validate(Arch(self.name, values))

    def num_archs(self) -> int:
        """Number of architectures (distinct decision combinations, inactive blocks included;
        a Python int, too large for ``len``)."""
        n = 1
        for _, options in self._decisions:
            n *= len(options)
        return n

    def num_networks(self) -> int:
        """Number of distinct networks per resolution (inactive blocks not counted): OFA's
        ((3*3)^2 + (3*3)^3 + (3*3)^4)^5 ~ 2e19 with the defaults (OFA Sec. 3.2)."""
        per_block = len(self.kernels) * len(self.expands)
        return sum(per_block ** d for d in self.depths) ** len(self.stages)

    # -- networks ----------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> MobileNetV3Network:
        """Standalone network; kwargs override ``num_classes``, ``in_channels``, ``dropout``."""
        self.validate(arch)
        unknown = set(kwargs) - set(self.build_defaults)
        if unknown:
            raise TypeError(f"unknown build options {sorted(unknown)}; {self.name} takes "
                            f"{sorted(self.build_defaults)}")
        options = {**self.build_defaults, **kwargs}
        return MobileNetV3Network(arch, stages=self.stages, stem_stride=self.stem_stride,
                                  max_depth=self.max_depth, **self.widths, **options)


    def supernet(self, **kwargs: Any):
        """Once-for-All's elastic supernet of this space
        (:class:`~lightning_nas.spaces.mobilenet_supernet.OFASupernet`); kwargs override
        ``num_classes``, ``in_channels``, ``dropout``."""
        from lightning_nas.spaces.mobilenet_supernet import OFASupernet

        return OFASupernet(self, **kwargs)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data: ``MobileNetV3Space(**space.config())`` rebuilds
        the space (stored in OFA checkpoints and latency tables)."""
        return {"depths": list(self.depths), "kernels": list(self.kernels),
                "expands": list(self.expands), "resolutions": list(self.resolutions),
                "stages": [dict(width=s.width, stride=s.stride, se=s.se, act=s.act)
                           for s in self.stages],
                "stem_stride": self.stem_stride, **self.widths, **self.build_defaults}


class MobileNetV3CifarSpace(MobileNetV3Space):
    """The 32x32 configuration: resolution {32}, stride-1 stem, stage 1 without downsampling
    (32 -> 4 at the head), 10 classes. A class of its own so YAML configs can name it
    (``class_path: lightning_nas.spaces.mobilenet.MobileNetV3CifarSpace``); its architectures
    are ``mobilenetv3`` architectures like any other."""

    def __init__(self, *, depths: Sequence[int] = (2, 3, 4), kernels: Sequence[int] = (3, 5, 7),
                 expands: Sequence[int] = (3, 4, 6), resolutions: Sequence[int] = (32,),
                 stages: Sequence[StageSpec] | None = None,
                 stem_stride: int = 1, stem_width: int = 16, final_width: int = 960,
                 feature_width: int = 1280, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.1, constraints: Constraints | None = None):
        super().__init__(depths=depths, kernels=kernels, expands=expands,
                         resolutions=resolutions,
                         stages=CIFAR_STAGES if stages is None else stages,
                         stem_stride=stem_stride,
                         stem_width=stem_width, final_width=final_width,
                         feature_width=feature_width, num_classes=num_classes,
                         in_channels=in_channels, dropout=dropout, constraints=constraints)


__all__ = ["CIFAR_STAGES", "IMAGENET_STAGES", "MBConv", "MobileNetV3CifarSpace",
           "MobileNetV3Network", "MobileNetV3Space", "SqueezeExcite", "StageSpec",
           "make_divisible"]
