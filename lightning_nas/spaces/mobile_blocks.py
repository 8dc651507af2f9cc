"""A mobile inverted-bottleneck space general enough for the published NAS-found networks
(MnasNet, EfficientNet, MobileNetV3, ProxylessNAS), as plain data, with those networks as
presets and EfficientNet's compound scaling.

The elastic Once-for-All space (:mod:`lightning_nas.spaces.mobilenet`) fixes one stage table
and searches kernel / expand / depth inside it; this space describes *any* stage table, so a
published network, an OFA subnet (:func:`from_ofa_arch`) and a scaled network of either are
all architectures of one space. The blocks are the elastic space's :class:`MBConv` and
:class:`SqueezeExcite` (with their published variants as options), not a copy.

**Arch labels** (all JSON values)::

    "resolution"    int, the input resolution the network was designed for
    "stem"          [channels, kernel, stride, act]                 conv-BN-act
    "blocks"        [[type, repeats, kernel, stride, expand, channels, se, act], ...]
                    one row per stage: ``repeats`` blocks, the first with ``stride``, the rest
                    stride 1; ``type`` "mbconv" (inverted residual, 1x1 expand when
                    expand != 1) or "ds" (depthwise separable: an MBConv with expand 1);
                    ``expand`` the expansion ratio (expanded width
                    ``make_divisible(round(c_in * expand), 8)``); ``se`` the squeeze-excite
                    ratio (0: none); ``act`` relu / relu6 / hswish / swish
    "head"          [channels, act]          1x1 conv-BN-act before the pool (channels 0: none)
    "feature"       [channels, act, bias]    1x1 conv without BN after the pool (MobileNetV3's
                                             "conv2d 1x1 NBN"); [] when absent
    "se"            [base, divisor, act, gate]  how squeeze-excite is built: bottleneck
                    ``make_divisible(int(base_channels * se), divisor)`` with base "in" (the
                    block's input channels: MnasNet, EfficientNet) or "mid" (the expanded
                    channels: MobileNetV3), inner activation and gate (sigmoid / hsigmoid)
    "dropout"       float, before the classifier
    "drop_connect"  float, EfficientNet's stochastic depth: block i of n drops its residual
                    branch with probability drop_connect * i / n while training

A block has an identity shortcut when its stride is 1 and its input and output channels agree.

**String form**: the tokens ``r224``, ``stem_c32_k3_s2_swish``, one
``mbconv_r2_k3_s2_e6_c24_se0.25_swish`` per stage, ``head_c1280_swish`` (``head_none``),
``feature_c1280_hswish_bias`` (``_nobias``; ``feature_none``), ``se_in_d1_swish_sigmoid``,
``dropout0.2``, ``dropconnect0.2``, joined by ``|``.

**Search.** The space samples and mutates around a ``base`` preset (default EfficientNet-B0):
per stage a kernel, an expand ratio, a repeat count and an SE ratio from the constructor's
choices; channels, strides and activations stay the base's. ``mutate`` works on any
architecture of the space (a preset or a scaled network seeds evolution).

**Compound scaling** (Tan & Le, "EfficientNet", ICML 2019, Sec. 3.3): :func:`scale_mobile`
multiplies every channel count (stem, stages, head, feature) by ``width`` and rounds it to a
multiple of 8 (never more than 10% down: the reference implementation's ``round_filters``),
every stage's repeats by ``depth`` rounded up (``round_repeats``) and the resolution.
EfficientNet-B1..B7 are B0 scaled by the per-model coefficients of the paper's reference
implementation (:data:`EFFICIENTNET_COEFFICIENTS`); :mod:`lightning_nas.spaces.scaling` scales
any architecture (this space, OFA subnets, DARTS and NAS-Bench-201 networks) by ``phi``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.mobilenet import ACTIVATIONS, ConvBNAct, MBConv, _act, make_divisible

SPACE_NAME = "mobile"
BLOCK_TYPES = ("mbconv", "ds")
BLOCK_ACTS = ("relu", "relu6", "hswish", "swish")
GATES = ("sigmoid", "hsigmoid")
SE_BASES = ("in", "mid")
LABELS = ("blocks", "drop_connect", "dropout", "feature", "head", "resolution", "se", "stem")


class ScaleError(ArchError):
    """A scaling that gives a layer no channels (or no pixels); the message says which layer
    and the smallest ``phi`` / multiplier that keeps every layer."""


def _num(value: Any) -> int | float:
    """An int when integral (so 6 and 6.0 are the same architecture), else the float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchError(f"expected a number, got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _fmt(value: Any) -> str:
    return str(_num(value))


# ---------------------------------------------------------------------------------------------
def se_channels(arch_se: Sequence[Any], ratio: float, c_in: int, c_mid: int) -> int:
    """Squeeze-excite bottleneck of a block with input ``c_in`` and expanded ``c_mid``
    channels: ``make_divisible(int(base * ratio), divisor)`` (at least 1)."""
    base, divisor = arch_se[0], int(arch_se[1])
    channels = c_in if base == "in" else c_mid
    return make_divisible(int(channels * ratio), divisor, min_value=divisor)


def expanded_channels(c_in: int, expand: float) -> int:
    """Channels after the 1x1 expansion (c_in when expand == 1): the elastic space's rule."""
    return c_in if expand == 1 else make_divisible(round(c_in * expand), 8)


class MobileBlockNetwork(nn.Module):
    """The standalone network of one architecture; ``forward(x)`` -> logits (B, num_classes).

    stem -> ``blocks`` (an ``nn.Sequential`` of :class:`MBConv`) -> head (1x1 conv-BN-act) ->
    global average pool -> feature (1x1 conv, no BN, MobileNetV3) -> dropout -> classifier.
    ``self.resolution`` is the input size the network expects (the architecture's, or the
    space's ``input_size`` override); ``self.block_stage[n]`` is the 1-based stage of block n.
    """

    def __init__(self, arch: Arch, *, num_classes: int, in_channels: int, dropout: float,
                 resolution: int, stem_stride: int | None = None):
        super().__init__()
        self.arch = arch
        self.resolution = int(resolution)
        c_stem, k_stem, s_stem, act_stem = arch["stem"]
        self.stem = ConvBNAct(in_channels, c_stem, k_stem,
                              s_stem if stem_stride is None else stem_stride, act=act_stem)
        se_style = arch["se"]
        se_act, se_gate = se_style[2], se_style[3]
        total = sum(int(row[1]) for row in arch["blocks"])
        blocks, stages, c, n = [], [], int(c_stem), 0
        for i, (_, repeats, kernel, stride, expand, out, se, act) in enumerate(arch["blocks"], 1):
            for j in range(int(repeats)):
                mid = expanded_channels(c, expand)
                options = {"mid": se_channels(se_style, se, c, mid), "act": se_act,
                           "gate": se_gate} if se else None
                blocks.append(MBConv(c, int(out), int(kernel), int(stride) if j == 0 else 1,
                                     expand, bool(se), act, se_options=options,
                                     drop_connect=float(arch["drop_connect"]) * n / total))
                stages.append(i)
                c, n = int(out), n + 1
        self.blocks = nn.Sequential(*blocks)
        self.block_stage = tuple(stages)
        head_c, head_act = arch["head"]
        self.head = ConvBNAct(c, head_c, 1, act=head_act) if head_c else nn.Identity()
        c = head_c or c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature: nn.Module = nn.Identity()
        if arch["feature"]:
            f_c, f_act, f_bias = arch["feature"]
            self.feature = nn.Sequential(nn.Conv2d(c, f_c, 1, bias=bool(f_bias)), _act(f_act))
            c = f_c
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation of the published networks' reference implementations
        (MnasNet, MobileNetV3, EfficientNet): convolutions He-normal over fan-out, batch
        norm 1 / 0, the classifier uniform(+-1/sqrt(out features)), biases 0. PyTorch's
        default (fan-in, a = sqrt(5)) trains these deep networks much more slowly from
        scratch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.pool(self.head(x))  # (B, C_head, 1, 1)
        x = self.feature(x).flatten(1)  # (B, C_feature)
        return self.classifier(self.dropout(x))


# ---------------------------------------------------------------------------------------------
def make_arch(*, resolution: int, stem: Sequence[Any], blocks: Sequence[Sequence[Any]],
              head: Sequence[Any], feature: Sequence[Any] = (), se: Sequence[Any] = ("in", 1,
              "relu", "sigmoid"), dropout: float = 0.2, drop_connect: float = 0.0) -> Arch:
    """A ``mobile`` Arch from its parts, numbers normalised (6.0 -> 6) and checked."""
    arch = Arch(SPACE_NAME, {
        "resolution": resolution, "stem": list(stem),
        "blocks": [[r[0], *[_num(v) for v in r[1:6]], _num(r[6]), r[7]] for r in blocks],
        "head": list(head), "feature": list(feature), "se": list(se),
        "dropout": _num(dropout), "drop_connect": _num(drop_connect)})
    check_arch(arch)
    return arch


def _is_int(v: Any, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def check_arch(arch: Arch) -> None:
    """Raise :class:`ArchError` naming the field when ``arch`` is not a ``mobile`` architecture."""
    if set(arch) != set(LABELS):
        raise ArchError(f"a {SPACE_NAME} architecture has the labels {list(LABELS)}; missing "
                        f"{sorted(set(LABELS) - set(arch))}, unexpected "
                        f"{sorted(set(arch) - set(LABELS))}")
    if not _is_int(arch["resolution"]):
        raise ArchError(f"resolution must be a positive int, got {arch['resolution']!r}")
    stem = arch["stem"]
    if (not isinstance(stem, tuple) or len(stem) != 4 or not all(_is_int(v) for v in stem[:3])
            or stem[1] % 2 == 0 or stem[3] not in BLOCK_ACTS):
        raise ArchError(f"stem must be [channels, odd kernel, stride, act in {BLOCK_ACTS}] with "
                        f"positive ints, got {stem!r}")
    rows = arch["blocks"]
    if not isinstance(rows, tuple) or not rows:
        raise ArchError("blocks must be a non-empty list of stage rows [type, repeats, kernel, "
                        "stride, expand, channels, se, act]")
    for i, row in enumerate(rows, start=1):
        where = f"blocks[{i - 1}] (stage {i})"
        if not isinstance(row, tuple) or len(row) != 8:
            raise ArchError(f"{where} must be [type, repeats, kernel, stride, expand, channels, "
                            f"se, act], got {row!r}")
        kind, repeats, kernel, stride, expand, out, se, act = row
        if kind not in BLOCK_TYPES:
            raise ArchError(f"{where}: block type {kind!r} is not one of {BLOCK_TYPES}")
        if not (_is_int(repeats) and _is_int(kernel) and kernel % 2 == 1 and stride in (1, 2)
                and _is_int(out)):
            raise ArchError(f"{where}: need repeats >= 1, an odd kernel, stride 1 or 2 and "
                            f"channels >= 1; got {row!r}")
        if isinstance(expand, bool) or not isinstance(expand, (int, float)) or expand < 1:
            raise ArchError(f"{where}: expand ratio must be a number >= 1, got {expand!r}")
        if kind == "ds" and expand != 1:
            raise ArchError(f"{where}: a 'ds' (depthwise separable) block has expand 1, got "
                            f"{expand!r}; use 'mbconv' for an expansion")
        if isinstance(se, bool) or not isinstance(se, (int, float)) or not 0 <= se <= 1:
            raise ArchError(f"{where}: se ratio must be in [0, 1] (0: none), got {se!r}")
        if act not in BLOCK_ACTS:
            raise ArchError(f"{where}: activation {act!r} is not one of {BLOCK_ACTS}")
    head = arch["head"]
    if (not isinstance(head, tuple) or len(head) != 2 or not _is_int(head[0], 0)
            or head[1] not in BLOCK_ACTS):
        raise ArchError(f"head must be [channels >= 0, act in {BLOCK_ACTS}], got {head!r}")
    feature = arch["feature"]
    if feature and (len(feature) != 3 or not _is_int(feature[0]) or feature[1] not in BLOCK_ACTS
                    or not isinstance(feature[2], bool)):
        raise ArchError(f"feature must be [] or [channels, act, bias (bool)], got {feature!r}")
    se = arch["se"]
    if (not isinstance(se, tuple) or len(se) != 4 or se[0] not in SE_BASES
            or not _is_int(se[1]) or se[2] not in ACTIVATIONS or se[3] not in GATES):
        raise ArchError(f"se must be [base in {SE_BASES}, divisor >= 1, act, gate in {GATES}], "
                        f"got {se!r}")
    for label in ("dropout", "drop_connect"):
        value = arch[label]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ArchError(f"{label} must be in [0, 1), got {value!r}")


# ---------------------------------------------------------------------------------------------
def round_channels(channels: int, width: float, divisor: int = 8, *, where: str = "a layer"
                   ) -> int:
    """``channels * width`` to the nearest multiple of ``divisor``, never more than 10% down
    (EfficientNet's ``round_filters``). Where the reference code would clamp a width that
    rounds to zero up to ``divisor`` (inflating the layer), this is a :class:`ScaleError`."""
    raw = channels * width
    rounded = int(raw + divisor / 2) // divisor * divisor
    if rounded < 1:
        raise ScaleError(f"width multiplier {width:.4g} gives {where} {raw:.3g} channels "
                         f"({channels} x {width:.4g}), which rounds to a zero-channel layer "
                         f"(channels are multiples of {divisor})")
    if rounded < 0.9 * raw:
        rounded += divisor
    return int(rounded)


DEPTH_ROUNDINGS = ("ceil", "nearest", "network")


def round_repeats(repeats: int, depth: float, rounding: str = "ceil") -> int:
    """``ceil(repeats * depth)`` (EfficientNet's ``round_repeats``; ``rounding="nearest"``
    rounds half up instead), at least 1."""
    if rounding not in DEPTH_ROUNDINGS:
        raise ValueError(f"depth rounding must be one of {DEPTH_ROUNDINGS}, got {rounding!r}")
    if rounding == "network":
        rounding = "nearest"
    scaled = repeats * depth
    return max(1, int(math.ceil(scaled - 1e-9)) if rounding == "ceil" else int(scaled + 0.5))


def stages_of(rows: Sequence[Sequence[Any]]) -> list[list[list[Any]]]:
    """Rows grouped into stages: a stage is a run of rows with the same output channels whose
    later rows have stride 1 (EfficientNet's rows are one stage each; MobileNetV3's, OFA's
    and ProxylessNAS's stages have a row per distinct block)."""
    stages: list[list[list[Any]]] = []
    for row in rows:
        if stages and row[5] == stages[-1][-1][5] and row[3] == 1:
            stages[-1].append(list(row))
        else:
            stages.append([list(row)])
    return stages


def stage_block_counts(counts: Sequence[int], depth: float, rounding: str = "ceil"
                       ) -> list[int]:
    """New block count of every stage: per stage ``round_repeats(n, depth, rounding)``, or
    with ``rounding="network"`` the network's total ``round(sum(n) * depth)`` shared by
    largest remainder (every stage keeps >= 1 block). Per-stage rounding cannot take a block
    from a 2-block stage at depth 0.83 (ceil(1.67) = 2); the network-level count can."""
    if rounding != "network":
        return [round_repeats(n, depth, rounding) for n in counts]
    exact = [n * depth for n in counts]
    new = [max(1, int(e)) for e in exact]
    left = int(sum(exact) + 0.5) - sum(new)
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in order[:max(0, left)]:
        new[i] += 1
    return new


def scale_stage_depth(rows: Sequence[Sequence[Any]], depth: float, rounding: str = "ceil"
                      ) -> list[list[Any]]:
    """Every stage's block count times ``depth``, rounded (:func:`stage_block_counts`): a
    deeper stage repeats its last block, a shallower one keeps its first blocks (as OFA's
    elastic depth)."""
    out: list[list[Any]] = []
    stages = stages_of(rows)
    counts = stage_block_counts([sum(int(r[1]) for r in st) for st in stages], depth, rounding)
    for stage, left in zip(stages, counts):
        kept = []
        for row in stage:
            take = min(int(row[1]), left)
            if take:
                kept.append([row[0], take, *row[2:]])
            left -= take
        kept[-1][1] += left
        out.extend(kept)
    return out


def arch_channels(arch: Arch) -> list[tuple[str, int]]:
    """``(where, channels)`` of every channel count that width scaling multiplies."""
    out = [("the stem", int(arch["stem"][0]))]
    out += [(f"stage {i}", int(row[5])) for i, row in enumerate(arch["blocks"], 1)]
    if arch["head"][0]:
        out.append(("the head", int(arch["head"][0])))
    if arch["feature"]:
        out.append(("the feature layer", int(arch["feature"][0])))
    return out


def scale_mobile(arch: Arch, *, width: float = 1.0, depth: float = 1.0,
                 resolution: int | None = None, dropout: float | None = None,
                 divisor: int = 8, depth_rounding: str = "ceil") -> Arch:
    """Compound-scale a ``mobile`` architecture (Tan & Le 2019, Sec. 3.3).

    Args:
        arch: any architecture of this space.
        width: multiplies every channel count (rounded by :func:`round_channels`).
        depth: multiplies every stage's block count (:func:`scale_stage_depth`; rounded up
            as the paper, or to the nearest with ``depth_rounding="nearest"``).
        resolution: the new input resolution (None keeps the architecture's).
        dropout: the new dropout before the classifier (None keeps it).
        divisor: channel counts are multiples of this (8 in the paper).

    Raises:
        ScaleError: when a layer would get zero channels.
    """
    check_arch(arch)
    if width <= 0 or depth <= 0:
        raise ScaleError(f"width and depth multipliers must be > 0, got {width}, {depth}")
    if resolution is not None and resolution < 1:
        raise ScaleError(f"scaling gives resolution {resolution}; it must be >= 1 pixel")

    where, fewest = min(arch_channels(arch), key=lambda wc: wc[1])
    if fewest * width < divisor / 2:  # rounds to 0 channels
        raise ScaleError(f"width multiplier {width:.4g} gives {where} {fewest * width:.3g} "
                         f"channels ({fewest} x {width:.4g}), which rounds to a zero-channel "
                         f"layer (channels are multiples of {divisor}); the smallest width that "
                         f"keeps every layer is {divisor / (2 * fewest):.4g}")

    def ch(c: int, where: str) -> int:
        return round_channels(int(c), width, divisor, where=where)

    stem = arch["stem"]
    blocks = [[r[0], r[1], r[2], r[3], r[4], ch(r[5], f"stage {i}"), r[6], r[7]]
              for i, r in enumerate(scale_stage_depth(arch["blocks"], depth, depth_rounding), 1)]
    head = [ch(arch["head"][0], "the head") if arch["head"][0] else 0, arch["head"][1]]
    feature = list(arch["feature"])
    if feature:
        feature[0] = ch(feature[0], "the feature layer")
    return make_arch(resolution=int(resolution or arch["resolution"]),
                     stem=[ch(stem[0], "the stem"), *stem[1:]], blocks=blocks, head=head,
                     feature=feature, se=arch["se"],
                     dropout=arch["dropout"] if dropout is None else dropout,
                     drop_connect=arch["drop_connect"])


# ---------------------------------------------------------------------------------------------
# Presets. The block tables are the papers'; each names its source.
_EFF = ("in", 1, "swish", "sigmoid")  # SE on the block's input width, swish, sigmoid
_MNAS = ("in", 1, "relu", "sigmoid")  # MnasNet: the same with ReLU
_MBV3 = ("mid", 8, "relu", "hsigmoid")  # MobileNetV3 Sec. 5.3: expanded width / 4, to 8s


def _rows(*rows: tuple[Any, ...]) -> list[list[Any]]:
    return [list(r) for r in rows]


#: Tan & Le, "EfficientNet", ICML 2019, Table 1 (EfficientNet-B0 baseline network): stage,
#: operator, resolution, channels, layers; MBConv with squeeze-excite 0.25 and swish (Sec. 4),
#: dropout 0.2 and drop-connect 0.2 (Sec. 5.2). 5.3M params, 0.39B FLOPs (Table 2).
EFFICIENTNET_B0 = make_arch(
    resolution=224, stem=[32, 3, 2, "swish"],
    blocks=_rows(("mbconv", 1, 3, 1, 1, 16, 0.25, "swish"),
                 ("mbconv", 2, 3, 2, 6, 24, 0.25, "swish"),
                 ("mbconv", 2, 5, 2, 6, 40, 0.25, "swish"),
                 ("mbconv", 3, 3, 2, 6, 80, 0.25, "swish"),
                 ("mbconv", 3, 5, 1, 6, 112, 0.25, "swish"),
                 ("mbconv", 4, 5, 2, 6, 192, 0.25, "swish"),
                 ("mbconv", 1, 3, 1, 6, 320, 0.25, "swish")),
    head=[1280, "swish"], se=_EFF, dropout=0.2, drop_connect=0.2)

#: (width, depth, resolution, dropout) of EfficientNet-B0..B7: the per-model coefficients of
#: the paper's reference implementation (``efficientnet_params``), whose resolutions are
#: Table 2's; B1..B7 are B0 scaled by them (Tan & Le 2019, Sec. 3.3, Table 2).
EFFICIENTNET_COEFFICIENTS: dict[str, tuple[float, float, int, float]] = {
    "EfficientNet-B0": (1.0, 1.0, 224, 0.2),
    "EfficientNet-B1": (1.0, 1.1, 240, 0.2),
    "EfficientNet-B2": (1.1, 1.2, 260, 0.3),
    "EfficientNet-B3": (1.2, 1.4, 300, 0.3),
    "EfficientNet-B4": (1.4, 1.8, 380, 0.4),
    "EfficientNet-B5": (1.6, 2.2, 456, 0.4),
    "EfficientNet-B6": (1.8, 2.6, 528, 0.5),
    "EfficientNet-B7": (2.0, 3.1, 600, 0.5),
}

#: Tan et al., "MnasNet", CVPR 2019, Fig. 7(a) (MnasNet-A1): SepConv 16, MBConv6 3x3 x2 24,
#: MBConv3 5x5 SE x3 40, MBConv6 3x3 x4 80, MBConv6 3x3 SE x2 112, MBConv6 5x5 SE x3 160,
#: MBConv6 3x3 x1 320; ReLU; SE ratio 0.25 of the block input; 1x1 conv to 1280 before the
#: pool (the reference implementation's head). 3.9M params, 312M multiply-adds (Table 1).
MNASNET_A1 = make_arch(
    resolution=224, stem=[32, 3, 2, "relu"],
    blocks=_rows(("ds", 1, 3, 1, 1, 16, 0, "relu"),
                 ("mbconv", 2, 3, 2, 6, 24, 0, "relu"),
                 ("mbconv", 3, 5, 2, 3, 40, 0.25, "relu"),
                 ("mbconv", 4, 3, 2, 6, 80, 0, "relu"),
                 ("mbconv", 2, 3, 1, 6, 112, 0.25, "relu"),
                 ("mbconv", 3, 5, 2, 6, 160, 0.25, "relu"),
                 ("mbconv", 1, 3, 1, 6, 320, 0, "relu")),
    head=[1280, "relu"], se=_MNAS, dropout=0.2)

#: MnasNet-B1: the network of MnasNet's first version (arXiv:1807.11626v1, Fig. 7), no
#: squeeze-excite: SepConv 16, MBConv3 3x3 x3 24, MBConv3 5x5 x3 40, MBConv6 5x5 x3 80,
#: MBConv6 3x3 x2 96, MBConv6 5x5 x4 192, MBConv6 3x3 x1 320; ReLU; 1x1 conv to 1280.
MNASNET_B1 = make_arch(
    resolution=224, stem=[32, 3, 2, "relu"],
    blocks=_rows(("ds", 1, 3, 1, 1, 16, 0, "relu"),
                 ("mbconv", 3, 3, 2, 3, 24, 0, "relu"),
                 ("mbconv", 3, 5, 2, 3, 40, 0, "relu"),
                 ("mbconv", 3, 5, 2, 6, 80, 0, "relu"),
                 ("mbconv", 2, 3, 1, 6, 96, 0, "relu"),
                 ("mbconv", 4, 5, 2, 6, 192, 0, "relu"),
                 ("mbconv", 1, 3, 1, 6, 320, 0, "relu")),
    head=[1280, "relu"], se=_MNAS, dropout=0.2)

#: Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 (MobileNetV3-Large): each
#: bneck's "exp size" is written as the ratio exp / input channels (64 = 16 x 4, 72 = 24 x 3,
#: 200 = 80 x 2.5, 184 = 80 x 2.3, ...); SE = expanded / 4 rounded to 8s with hard-sigmoid
#: (Sec. 5.3); last stage conv 960, then "conv2d 1x1, NBN" 1280 (with bias), dropout 0.2.
#: 5.4M params, 219M multiply-adds (Table 3).
MOBILENETV3_LARGE = make_arch(
    resolution=224, stem=[16, 3, 2, "hswish"],
    blocks=_rows(("mbconv", 1, 3, 1, 1, 16, 0, "relu"),
                 ("mbconv", 1, 3, 2, 4, 24, 0, "relu"),
                 ("mbconv", 1, 3, 1, 3, 24, 0, "relu"),
                 ("mbconv", 3, 5, 2, 3, 40, 0.25, "relu"),
                 ("mbconv", 1, 3, 2, 6, 80, 0, "hswish"),
                 ("mbconv", 1, 3, 1, 2.5, 80, 0, "hswish"),
                 ("mbconv", 2, 3, 1, 2.3, 80, 0, "hswish"),
                 ("mbconv", 2, 3, 1, 6, 112, 0.25, "hswish"),
                 ("mbconv", 3, 5, 2, 6, 160, 0.25, "hswish")),
    head=[960, "hswish"], feature=[1280, "hswish", True], se=_MBV3, dropout=0.2)

#: Howard et al. 2019, Table 2 (MobileNetV3-Small): exp sizes as ratios (72 = 16 x 4.5,
#: 88 = round(24 x 3.67), 96 = 24 x 4, ...); last stage conv 576 then "conv2d 1x1, NBN" 1024.
#: Table 2 marks SE on the 576 conv; the authors' reference implementation has none there and
#: neither has this preset. 2.5M params, 56M multiply-adds (Table 4).
MOBILENETV3_SMALL = make_arch(
    resolution=224, stem=[16, 3, 2, "hswish"],
    blocks=_rows(("mbconv", 1, 3, 2, 1, 16, 0.25, "relu"),
                 ("mbconv", 1, 3, 2, 4.5, 24, 0, "relu"),
                 ("mbconv", 1, 3, 1, 3.67, 24, 0, "relu"),
                 ("mbconv", 1, 5, 2, 4, 40, 0.25, "hswish"),
                 ("mbconv", 2, 5, 1, 6, 40, 0.25, "hswish"),
                 ("mbconv", 2, 5, 1, 3, 48, 0.25, "hswish"),
                 ("mbconv", 3, 5, 2, 6, 96, 0.25, "hswish")),
    head=[576, "hswish"], feature=[1024, "hswish", True], se=_MBV3, dropout=0.2)


def _proxyless(stem: int, first: int, stages: Sequence[tuple[int, int, Sequence[tuple[int, int]]]],
               head: int) -> Arch:
    """ProxylessNAS network: stem conv, an MBConv1 3x3 block, then per stage (channels,
    stride, [(kernel, expand) of each block that is not a zero op]); ReLU6, no SE."""
    rows: list[list[Any]] = [["mbconv", 1, 3, 1, 1, first, 0, "relu6"]]
    for channels, stride, ops in stages:
        for j, (kernel, expand) in enumerate(ops):
            rows.append(["mbconv", 1, kernel, stride if j == 0 else 1, expand, channels, 0,
                         "relu6"])
    return make_arch(resolution=224, stem=[stem, 3, 2, "relu6"], blocks=rows,
                     head=[head, "relu6"], se=("in", 1, "relu", "sigmoid"), dropout=0.0)


#: Cai et al., "ProxylessNAS", ICLR 2019, Fig. 4 and the released network configurations
#: (mobile: 4.08M params, 320.4M multiply-adds; CPU: 4.36M, 439.2M; GPU: 7.12M, 465.3M, the
#: authors' evaluation logs): per stage the (kernel, expand) of the blocks that are not
#: zero (skipped) ops. The first block of a stage has the stage's stride.
PROXYLESSNAS_MOBILE = _proxyless(32, 16, [
    (32, 2, [(5, 3), (3, 3)]),
    (40, 2, [(7, 3), (3, 3), (5, 3), (5, 3)]),
    (80, 2, [(7, 6), (5, 3), (5, 3), (5, 3)]),
    (96, 1, [(5, 6), (5, 3), (5, 3), (5, 3)]),
    (192, 2, [(7, 6), (7, 6), (7, 3), (7, 3)]),
    (320, 1, [(7, 6)])], 1280)
PROXYLESSNAS_CPU = _proxyless(40, 24, [
    (32, 2, [(3, 6), (3, 3), (3, 3), (3, 3)]),
    (48, 2, [(3, 6), (3, 3), (3, 3), (5, 3)]),
    (88, 2, [(3, 6), (3, 3)]),
    (104, 1, [(5, 6), (3, 3), (3, 3), (3, 3)]),
    (216, 2, [(5, 6), (5, 3), (5, 3), (3, 3)]),
    (360, 1, [(5, 6)])], 1432)
PROXYLESSNAS_GPU = _proxyless(40, 24, [
    (32, 2, [(5, 3)]),
    (56, 2, [(7, 3), (3, 3)]),
    (112, 2, [(7, 6), (5, 3)]),
    (128, 1, [(5, 6), (3, 3), (5, 3)]),
    (256, 2, [(7, 6), (7, 6), (7, 6), (5, 6)]),
    (432, 1, [(7, 6)])], 1728)

PRESETS: dict[str, Arch] = {
    "MnasNet-A1": MNASNET_A1,
    "MnasNet-B1": MNASNET_B1,
    "MobileNetV3-Large": MOBILENETV3_LARGE,
    "MobileNetV3-Small": MOBILENETV3_SMALL,
    "ProxylessNAS-Mobile": PROXYLESSNAS_MOBILE,
    "ProxylessNAS-CPU": PROXYLESSNAS_CPU,
    "ProxylessNAS-GPU": PROXYLESSNAS_GPU,
}
for _name, (_w, _d, _r, _p) in EFFICIENTNET_COEFFICIENTS.items():
    PRESETS[_name] = scale_mobile(EFFICIENTNET_B0, width=_w, depth=_d, resolution=_r, dropout=_p)

#: Published parameters and multiply-adds at the published resolution (the papers' tables;
#: ProxylessNAS: the authors' evaluation logs). ``None``: not published in a table we cite.
PUBLISHED: dict[str, tuple[float | None, float | None, str]] = {
    "EfficientNet-B0": (5.3e6, 0.39e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B1": (7.8e6, 0.70e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B2": (9.2e6, 1.0e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B3": (12e6, 1.8e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B4": (19e6, 4.2e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B5": (30e6, 9.9e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B6": (43e6, 19e9, "Tan & Le 2019, Table 2"),
    "EfficientNet-B7": (66e6, 37e9, "Tan & Le 2019, Table 2"),
    "MnasNet-A1": (3.9e6, 312e6, "Tan et al. 2019, Table 1"),
    "MnasNet-B1": (None, None, "arXiv:1807.11626v1"),
    "MobileNetV3-Large": (5.4e6, 219e6, "Howard et al. 2019, Table 3"),
    "MobileNetV3-Small": (2.5e6, 56e6, "Howard et al. 2019, Table 4"),
    "ProxylessNAS-Mobile": (4.08e6, 320.4e6, "Cai et al. 2019; authors' log"),
    "ProxylessNAS-CPU": (4.36e6, 439.2e6, "Cai et al. 2019; authors' log"),
    "ProxylessNAS-GPU": (7.12e6, 465.3e6, "Cai et al. 2019; authors' log"),
}


def preset(name: str) -> Arch:
    """A preset by name; an unknown name is an :class:`ArchError` listing the known ones."""
    if name not in PRESETS:
        raise ArchError(f"unknown {SPACE_NAME} preset {name!r}; known presets: "
                        f"{', '.join(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------
def from_ofa_arch(space: Any, arch: Arch) -> Arch:
    """A Once-for-All subnet (a ``mobilenetv3`` Arch of ``space``, a
    :class:`~lightning_nas.spaces.mobilenet.MobileNetV3Space`) as a ``mobile`` Arch that
    builds the same network: same layers, same parameter count and FLOPs."""
    space.validate(arch)
    w = space.widths
    rows: list[list[Any]] = [["mbconv", 1, 3, 1, 1, w["stem_width"], 0, "relu"]]
    for i, spec in enumerate(space.stages, start=1):
        for j in range(1, int(arch[f"stage{i}.depth"]) + 1):
            rows.append(["mbconv", 1, arch[f"stage{i}.block{j}.kernel"],
                         spec.stride if j == 1 else 1, arch[f"stage{i}.block{j}.expand"],
                         spec.width, 0.25 if spec.se else 0, spec.act])
    return make_arch(resolution=int(arch["resolution"]),
                     stem=[w["stem_width"], 3, space.stem_stride, "hswish"], blocks=rows,
                     head=[w["final_width"], "hswish"],
                     feature=[w["feature_width"], "hswish", False], se=_MBV3,
                     dropout=space.build_defaults["dropout"])


# ---------------------------------------------------------------------------------------------
def _nearest(value: float, choices: Sequence[int]) -> int:
    """The choice nearest to ``value``; a tie goes to the smaller choice (the cheaper one)."""
    return min(choices, key=lambda c: (abs(c - value), c))


def _fmt_list(values: Sequence[Any]) -> str:
    return ",".join(_fmt(v) for v in values)


def _change(before: Any, after: Any) -> str:
    return f"{before}" if before == after else f"{before} -> {after}"


class Projection(dict):
    """The result of :func:`project_to_ofa`: ``arch`` (the Once-for-All subnet), ``source``
    (what was projected), ``stages`` (per OFA stage: which stages of the source it took and
    its depth / kernels / expands / width / SE / activation before and after) and ``fixed``
    (what the OFA space fixes: stem, first block, head). A dict, so it is JSON-ready;
    :meth:`diff` is the small text diff."""

    @property
    def arch(self) -> Arch:
        return self["arch"]

    def diff(self) -> str:
        """One line per OFA stage and per fixed part: ``before -> after`` where it changed."""
        lines = [f"{self['source']} -> {self['space']} subnet {self['string']}",
                 f"  resolution {_change(*self['resolution'])}"]
        for st in self["stages"]:
            lines.append(
                f"  stage {st['stage']} <- {st['from']}: depth {_change(*st['depth'])}; "
                f"k {_change(*map(_fmt_list, st['kernels']))}; "
                f"e {_change(*map(_fmt_list, st['expands']))}; "
                f"width {_change(*st['width'])}; stride {_change(*st['stride'])}; "
                f"SE {_change(*st['se'])}; act {_change(*st['act'])}")
        lines += [f"  {part} {_change(*values)}" for part, values in self["fixed"].items()
                  if values[0] != values[1]]
        return "\n".join(lines)


def project_to_ofa(arch: Arch | str, space: Any, *, resolution: int | None = None,
                   name: str | None = None) -> Projection:
    """The nearest subnet of a Once-for-All space to a ``mobile`` architecture (a preset or
    any network of this space): a published network as a seed of OFA specialisation.

    A published network is not inside OFA's elastic MobileNetV3 (fixed widths, strides, SE
    placement and activations per stage; kernels {3, 5, 7}, expands {3, 4, 6}, 2-4 blocks).
    The projection keeps what the elastic space can express and reports the rest:

    * **First block.** A leading stride-1 stage of one expand-1 block (MnasNet's SepConv,
      EfficientNet's MBConv1, MobileNetV3-Large's first bneck) is OFA's fixed first block;
      otherwise (MobileNetV3-Small) the fixed block is added.
    * **Stages matched in order.** The source's remaining stages (:func:`stages_of`: a run of
      rows with one output width) are matched to the OFA stages in order. When the source has
      more, its stride-1 stages are merged into the stage before, the last first
      (EfficientNet's 320-channel stage joins the 192-channel one: the resolution they run at
      stays the same), then, if still more, the last stages into the one before. When it has
      fewer, each missing OFA stage repeats the last block taken.
    * **Blocks.** A stage's depth is the space's depth nearest to its block count (clamped to
      the depths: OFA keeps the first blocks, so extra blocks are dropped from the end; a
      short stage repeats its last block); each block's kernel and expand ratio is the
      nearest choice (ties to the smaller). Inactive blocks get the smallest choices
      (:meth:`~lightning_nas.spaces.mobilenet.MobileNetV3Space.canonical`).
    * **Resolution**: the space's resolution nearest to ``resolution`` (default the
      source's).

    Widths, strides, SE, activations, stem and head are the OFA space's; the diff shows them.

    Args:
        arch: a ``mobile`` Arch, a preset name or a string of this space.
        space: a :class:`~lightning_nas.spaces.mobilenet.MobileNetV3Space`.
        resolution: the resolution to project (default the architecture's).
        name: what to call the source in the diff (default the preset name or "network").

    Returns:
        A :class:`Projection`.
    """
    if isinstance(arch, str):
        name = name or (arch if arch in PRESETS else None)
        arch = preset(arch) if "|" not in arch else MobileBlockSpace().parse(arch)
    check_arch(arch)
    if not hasattr(space, "stages") or not hasattr(space, "depths"):
        raise ArchError(f"project_to_ofa needs a Once-for-All MobileNetV3Space, got "
                        f"{type(space).__name__}")
    stages = stages_of(arch["blocks"])
    fixed: dict[str, list[Any]] = {}
    stem = arch["stem"]
    fixed["stem"] = [f"{stem[0]} ch {stem[3]}", f"{space.widths['stem_width']} ch hswish"]
    first = stages[0]
    ofa_first = f"k3 {space.widths['stem_width']} ch SE no relu"
    if all(r[3] == 1 and r[4] == 1 for r in first) and len(stages) > 1:
        row, repeats = first[0], sum(int(r[1]) for r in first)
        fixed["first block"] = [f"k{row[2]} {row[5]} ch SE {'yes' if row[6] else 'no'} "
                                f"{row[7]}" + (f" x{repeats}" if repeats > 1 else ""),
                                ofa_first]
        stages = stages[1:]
    else:
        fixed["first block"] = ["none", ofa_first]
    fixed["head"] = [f"{arch['head'][0]} ch" + (f" + feature {arch['feature'][0]}"
                                                if arch["feature"] else ""),
                     f"{space.widths['final_width']} ch + feature "
                     f"{space.widths['feature_width']}"]

    # source stages as (label, blocks) with blocks = [(kernel, expand, stride, width, se, act)]
    groups = []
    for n, stage in enumerate(stages, start=2 if "none" not in fixed["first block"][0] else 1):
        blocks = [(int(r[2]), r[4], int(r[3]) if j == 0 and i == 0 else 1, int(r[5]), r[6], r[7])
                  for i, r in enumerate(stage) for j in range(int(r[1]))]
        groups.append(([n], blocks))
    n_ofa = len(space.stages)
    while len(groups) > n_ofa:
        stride1 = [g for g in range(1, len(groups)) if groups[g][1][0][2] == 1]
        g = stride1[-1] if stride1 else len(groups) - 1
        (labels, blocks), (prev_labels, prev_blocks) = groups[g], groups[g - 1]
        groups[g - 1] = (prev_labels + labels, prev_blocks + blocks)
        del groups[g]
    if not groups:
        raise ArchError("the architecture has no stage besides its first block to project")

    values: dict[str, Any] = {}
    target_res = int(resolution or arch["resolution"])
    values["resolution"] = _nearest(target_res, space.resolutions)
    matches = []
    last_block = groups[-1][1][-1]
    for i, spec in enumerate(space.stages, start=1):
        if i <= len(groups):
            labels, blocks = groups[i - 1]
            source = ("stage " if len(labels) == 1 else "stages ") + "+".join(map(str, labels))
        else:
            labels, blocks = [], [last_block]
            source = "nothing (repeats the last block)"
        depth = _nearest(len(blocks), space.depths)
        taken = [blocks[min(j, len(blocks) - 1)] for j in range(depth)]
        kernels = [_nearest(b[0], space.kernels) for b in taken]
        expands = [_nearest(b[1], space.expands) for b in taken]
        for j in range(1, space.max_depth + 1):
            values[f"stage{i}.block{j}.kernel"] = kernels[j - 1] if j <= depth else \
                space.kernels[0]
            values[f"stage{i}.block{j}.expand"] = expands[j - 1] if j <= depth else \
                space.expands[0]
        values[f"stage{i}.depth"] = depth
        widths = sorted({b[3] for b in blocks})
        ses = sorted({"yes" if b[4] else "no" for b in blocks}, reverse=True)
        acts = sorted({b[5] for b in blocks})
        matches.append({
            "stage": i, "from": source, "source_stages": labels,
            "depth": [len(blocks) if labels else 0, depth],
            "kernels": [[b[0] for b in blocks] if labels else [], kernels],
            "expands": [[_num(b[1]) for b in blocks] if labels else [], expands],
            "width": [(widths[0] if len(widths) == 1 else "/".join(map(str, widths)))
                      if labels else "-", spec.width],
            "stride": [blocks[0][2] if labels else "-", spec.stride],
            "se": ["/".join(ses) if labels else "-", "yes" if spec.se else "no"],
            "act": ["/".join(acts) if labels else "-", spec.act]})
    ofa_arch = space.validate(Arch(space.name, values))
    label = name or "network"
    return Projection(arch=ofa_arch, source=label, space=type(space).__name__,
                      string=space.to_string(ofa_arch), resolution=[target_res,
                                                                    values["resolution"]],
                      stages=matches, fixed=fixed)


# ---------------------------------------------------------------------------------------------
_TOKEN_NUM = r"(\d+(?:\.\d+)?)"


def _parse_num(text: str) -> int | float:
    return int(text) if re.fullmatch(r"\d+", text) else float(text)


class MobileBlockSpace(SearchSpace):
    """Mobile inverted-bottleneck networks as plain data (module docstring: labels, string).

    Args:
        base: the preset whose layout (channels, strides, activations, stem, head) sampling
            and the categorical view use.
        kernels, expands, repeats, se_ratios: per-stage choices of sampling and mutation.
        num_classes, in_channels: defaults of :meth:`build` (ImageNet: 1000, 3).
        input_size: build every network for this input resolution instead of the
            architecture's (e.g. 32 for CIFAR-10 images: no upsampling to 224).
        stem_stride: override the stem's stride (1 keeps 32x32 inputs at full resolution).
        dropout: override the architecture's dropout (None keeps it).
        constraints: limits enforced by :meth:`validate`.
    """

    name = SPACE_NAME
    presets = PRESETS

    def __init__(self, *, base: str = "EfficientNet-B0", kernels: Sequence[int] = (3, 5, 7),
                 expands: Sequence[float] = (1, 3, 4, 6), repeats: Sequence[int] = (1, 2, 3, 4),
                 se_ratios: Sequence[float] = (0, 0.25), num_classes: int = 1000,
                 in_channels: int = 3, input_size: int | None = None,
                 stem_stride: int | None = None, dropout: float | None = None,
                 constraints: Constraints | None = None):
        super().__init__(constraints)
        self.base_name = base
        self.base = preset(base)
        self.kernels = tuple(int(k) for k in kernels)
        self.expands = tuple(_num(e) for e in expands)
        self.repeats = tuple(int(r) for r in repeats)
        self.se_ratios = tuple(_num(s) for s in se_ratios)
        for name, values in (("kernels", self.kernels), ("expands", self.expands),
                             ("repeats", self.repeats), ("se_ratios", self.se_ratios)):
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct values, got {values!r}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels) or min(self.expands) < 1 \
                or min(self.repeats) < 1 or not all(0 <= s <= 1 for s in self.se_ratios):
            raise ValueError("kernels must be odd >= 1, expands >= 1, repeats >= 1, se_ratios "
                             "in [0, 1]")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, "
                             f"{in_channels}")
        if input_size is not None and input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size}")
        if stem_stride not in (None, 1, 2):
            raise ValueError(f"stem_stride must be None, 1 or 2, got {stem_stride}")
        if dropout is not None and not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.stem_stride, self.dropout = input_size, stem_stride, dropout
        self.build_defaults = {"num_classes": num_classes, "in_channels": in_channels}
        n = len(self.base["blocks"])
        self._decisions: list[tuple[str, tuple[Any, ...]]] = []
        for i in range(1, n + 1):
            self._decisions += [(f"stage{i}.kernel", self.kernels),
                                (f"stage{i}.expand", self.expands),
                                (f"stage{i}.repeats", self.repeats),
                                (f"stage{i}.se", self.se_ratios)]

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (``MobileBlockSpace(**space.config())``)."""
        limits = self.constraints
        return {"base": self.base_name, "kernels": list(self.kernels),
                "expands": list(self.expands), "repeats": list(self.repeats),
                "se_ratios": list(self.se_ratios), **self.build_defaults,
                "input_size": self.input_size, "stem_stride": self.stem_stride,
                "dropout": self.dropout,
                "constraints": None if limits == Constraints() else
                {"max_params": limits.max_params, "max_layers": limits.max_layers}}

    # -- membership ------------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        check_arch(arch)

    def depth(self, arch: Arch) -> int:
        """Number of MBConv blocks."""
        check_arch(arch)
        return sum(int(row[1]) for row in arch["blocks"])

    # -- string form -------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        stem = arch["stem"]
        tokens = [f"r{arch['resolution']}", f"stem_c{stem[0]}_k{stem[1]}_s{stem[2]}_{stem[3]}"]
        for kind, r, k, s, e, c, se, act in arch["blocks"]:
            tokens.append(f"{kind}_r{r}_k{k}_s{s}_e{_fmt(e)}_c{c}_se{_fmt(se)}_{act}")
        head = arch["head"]
        tokens.append(f"head_c{head[0]}_{head[1]}" if head[0] else "head_none")
        feature = arch["feature"]
        tokens.append(f"feature_c{feature[0]}_{feature[1]}_{'bias' if feature[2] else 'nobias'}"
                      if feature else "feature_none")
        se = arch["se"]
        tokens.append(f"se_{se[0]}_d{se[1]}_{se[2]}_{se[3]}")
        tokens.append(f"dropout{_fmt(arch['dropout'])}")
        tokens.append(f"dropconnect{_fmt(arch['drop_connect'])}")
        return "|".join(tokens)

    _BLOCK = re.compile(rf"^({'|'.join(BLOCK_TYPES)})_r(\d+)_k(\d+)_s(\d+)_e{_TOKEN_NUM}_c(\d+)"
                        rf"_se{_TOKEN_NUM}_(\w+)$")
    _STEM = re.compile(r"^stem_c(\d+)_k(\d+)_s(\d+)_(\w+)$")
    _HEAD = re.compile(r"^head_c(\d+)_(\w+)$")
    _FEATURE = re.compile(r"^feature_c(\d+)_(\w+?)_(bias|nobias)$")
    _SE = re.compile(r"^se_(in|mid)_d(\d+)_(\w+?)_(sigmoid|hsigmoid)$")

    def parse(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchError(f"a {self.name} string must be a str, got {type(text).__name__}")
        example = "r224|stem_c32_k3_s2_swish|mbconv_r1_k3_s1_e1_c16_se0.25_swish|...|" \
                  "head_c1280_swish|feature_none|se_in_d1_swish_sigmoid|dropout0.2|dropconnect0.2"
        tokens = text.strip().split("|")
        if len(tokens) < 8 or not re.fullmatch(r"r\d+", tokens[0]):
            raise ArchError(f"a {self.name} string is 'r<res>|stem_...|<block rows>|head_...|"
                            f"feature_...|se_...|dropout<p>|dropconnect<p>', got {text[:120]!r}"
                            f"; example: {example}")
        stem = self._STEM.match(tokens[1])
        if not stem:
            raise ArchError(f"stem token {tokens[1]!r}: expected stem_c<ch>_k<k>_s<s>_<act>")
        blocks = []
        for token in tokens[2:-5]:
            m = self._BLOCK.match(token)
            if not m:
                raise ArchError(f"block token {token!r}: expected <type>_r<repeats>_k<kernel>_"
                                f"s<stride>_e<expand>_c<channels>_se<ratio>_<act> with type in "
                                f"{BLOCK_TYPES}")
            kind, r, k, s, e, c, se, act = m.groups()
            blocks.append([kind, int(r), int(k), int(s), _parse_num(e), int(c), _parse_num(se),
                           act])
        head_t, feature_t, se_t, drop_t, dc_t = tokens[-5:]
        if head_t == "head_none":
            head = [0, "relu"]
        elif m := self._HEAD.match(head_t):
            head = [int(m.group(1)), m.group(2)]
        else:
            raise ArchError(f"head token {head_t!r}: expected head_c<ch>_<act> or head_none")
        if feature_t == "feature_none":
            feature: list[Any] = []
        elif m := self._FEATURE.match(feature_t):
            feature = [int(m.group(1)), m.group(2), m.group(3) == "bias"]
        else:
            raise ArchError(f"feature token {feature_t!r}: expected feature_c<ch>_<act>_bias|"
                            f"nobias or feature_none")
        m = self._SE.match(se_t)
        if not m:
            raise ArchError(f"se token {se_t!r}: expected se_<in|mid>_d<divisor>_<act>_<gate>")
        se = [m.group(1), int(m.group(2)), m.group(3), m.group(4)]
        drop = re.fullmatch(rf"dropout{_TOKEN_NUM}", drop_t)
        dc = re.fullmatch(rf"dropconnect{_TOKEN_NUM}", dc_t)
        if not drop or not dc:
            raise ArchError(f"expected dropout<p>|dropconnect<p> at the end, got "
                            f"{drop_t!r}|{dc_t!r}")
        arch = make_arch(resolution=int(tokens[0][1:]),
                         stem=[int(stem.group(1)), int(stem.group(2)), int(stem.group(3)),
                               stem.group(4)], blocks=blocks, head=head, feature=feature, se=se,
                         dropout=_parse_num(drop.group(1)), drop_connect=_parse_num(dc.group(1)))
        return self.validate(arch)

    # -- sampling and the categorical view ---------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        return self.decode([rng.randrange(len(options)) for _, options in self._decisions])

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """One stage's kernel, expand ratio, repeats or SE ratio changed to another of the
        space's choices (any architecture of the space, e.g. a preset, can be mutated).
        A 'ds' stage given an expansion becomes an 'mbconv' stage."""
        self.validate(arch)
        rows = [list(r) for r in arch["blocks"]]
        fields = {2: self.kernels, 4: self.expands, 1: self.repeats, 6: self.se_ratios}
        open_choices = [(i, f) for i in range(len(rows)) for f, opts in fields.items()
                        if any(v != rows[i][f] for v in opts)]
        if not open_choices:
            raise ArchError("no stage has another choice to mutate to")
        i, f = rng.choice(open_choices)
        rows[i][f] = rng.choice([v for v in fields[f] if v != rows[i][f]])
        if f == 4:
            rows[i][0] = "mbconv" if rows[i][4] != 1 or rows[i][0] == "mbconv" else "ds"
        return self.validate(arch.replace(blocks=rows))

    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Per stage of the base: kernel, expand, repeats, SE ratio."""
        return list(self._decisions)

    def encode(self, arch: Arch) -> list[int]:
        self.validate(arch)
        rows = arch["blocks"]
        base = self.base
        same_layout = (len(rows) == len(base["blocks"]) and all(
            (r[3], r[5], r[7]) == (b[3], b[5], b[7]) for r, b in zip(rows, base["blocks"]))
            and all(arch[k] == base[k] for k in ("stem", "head", "feature", "se")))
        if not same_layout:
            raise ArchError(f"this architecture does not have the layout of the base "
                            f"{self.base_name!r} (stages, channels, strides, activations, stem, "
                            f"head), so it has no categorical encoding in this space")
        indices = []
        for (label, options), (row_i, field) in zip(
                self._decisions, [(i, f) for i in range(len(rows)) for f in (2, 4, 1, 6)]):
            value = rows[row_i][field]
            if value not in options:
                raise ArchError(f"{label}: {value!r} is not a choice of this space ({options})")
            indices.append(options.index(value))
        return indices

    def decode(self, indices: Sequence[int]) -> Arch:
        if len(indices) != len(self._decisions):
            raise ArchError(f"expected {len(self._decisions)} decision indices, got "
                            f"{len(indices)}")
        rows = [list(r) for r in self.base["blocks"]]
        for n, ((label, options), i) in enumerate(zip(self._decisions, indices)):
            if isinstance(i, bool) or not 0 <= int(i) < len(options):
                raise ArchError(f"{label}: option index {i!r} out of range")
            rows[n // 4][(2, 4, 1, 6)[n % 4]] = options[int(i)]
        for row in rows:
            row[0] = "mbconv" if row[4] != 1 else row[0]
        return self.validate(self.base.replace(blocks=rows))

    # -- networks ----------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> MobileBlockNetwork:
        """Standalone network; kwargs override ``num_classes``, ``in_channels``, ``dropout``."""
        self.validate(arch)
        unknown = set(kwargs) - {"num_classes", "in_channels", "dropout"}
        if unknown:
            raise TypeError(f"unknown build options {sorted(unknown)}; {self.name} takes "
                            f"num_classes, in_channels, dropout")
        options = {**self.build_defaults, **kwargs}
        dropout = options.pop("dropout", None)
        if dropout is None:
            dropout = self.dropout if self.dropout is not None else float(arch["dropout"])
        return MobileBlockNetwork(arch, dropout=dropout,
                                  resolution=self.input_size or int(arch["resolution"]),
                                  stem_stride=self.stem_stride, **options)

    def load(self, source: Any) -> Arch:
        """As :meth:`SearchSpace.load`, plus a clear error for a misspelt preset name (a word
        without the string form's ``|``): the known presets are listed."""
        text = str(source)
        if (not isinstance(source, Arch) and "|" not in text and not text.endswith(".json")
                and text not in PRESETS and not _exists(text)):
            preset(text)  # raises, listing the known presets
        return super().load(source)


def _exists(text: str) -> bool:
    from pathlib import Path

    try:
        return Path(text).exists()
    except OSError:
        return False


def count_macs(arch: Arch, *, resolution: int | None = None, space: MobileBlockSpace | None
               = None, num_classes: int = 1000) -> tuple[int, int]:
    """``(parameters, multiply-adds)`` of ``arch`` at ``resolution`` (default its own), batch
    1, counted on the meta device with the project's FLOPs counter (FLOPs = 2 x MACs)."""
    from lightning_nas.hardware.metrics import count_flops, count_parameters

    space = space or MobileBlockSpace()
    r = resolution or int(arch["resolution"])
    with torch.device("meta"):
        net = space.build(arch, num_classes=num_classes)
    return count_parameters(net), count_flops(net, (3, r, r)).macs


__all__ = ["EFFICIENTNET_B0", "EFFICIENTNET_COEFFICIENTS", "MobileBlockNetwork",
           "MobileBlockSpace", "PRESETS", "PUBLISHED", "Projection", "ScaleError", "check_arch",
           "count_macs", "from_ofa_arch", "make_arch", "preset", "project_to_ofa",
           "round_channels", "round_repeats", "scale_mobile", "scale_stage_depth", "stages_of"]
