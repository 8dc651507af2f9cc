"""The DARTS cell search space (Liu, Simonyan & Yang, "DARTS", ICLR 2019).

A genotype describes two cells, *normal* and *reduction*. Each cell has two input nodes
(the outputs of the two previous cells, indices 0 and 1) and ``steps`` intermediate nodes
(indices 2 .. steps+1); every intermediate node sums two edges ``(op, input_index)`` taken
from earlier nodes. The cell output concatenates the nodes listed in ``*_concat``.

As an :class:`Arch` a genotype is ``{"normal": [[op, input], ...], "normal_concat": [...],
"reduce": [...], "reduce_concat": [...]}``; its canonical string is the familiar
``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.batch_stats_norm import (
    BatchStatsNorm,
    batch_norm,
    normalise,
    uses_batch_stats_only,
)
from lightning_nas.spaces.depthwise import use_fast_depthwise
from lightning_nas.spaces.registry import (
    ZERO_OP,
    UnknownOpError,
    build_op,
    get_op,
    op_entries,
    space_ops,
)
from lightning_nas.spaces.ops import (
    DARTS_OPS,
    EXTRA_OPS,
    DilConv,
    FactorizedReduce,
    ReLUConvBN,
    SepConv,
    drop_path,
)
from lightning_nas.spaces.supernet import Decision, PathNetwork

#: Operations of the search space, in the order the architecture parameters use.
PRIMITIVES: tuple[str, ...] = tuple(DARTS_OPS)
#: The ops of the published presets (the search ops plus NASNet/AmoebaNet extras); a
#: standalone network builds any op of the registry (:mod:`lightning_nas.spaces.registry`).
BUILDABLE_OPS = {**DARTS_OPS, **EXTRA_OPS}
CELL_TYPES = ("normal", "reduce")
SPACE_NAME = "darts"


class Genotype(NamedTuple):
    """The DARTS code base's genotype: edge lists ``[(op, input), ...]`` and concat lists."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]

    def __str__(self) -> str:
        def edges(cell: Sequence[tuple[str, int]]) -> str:
            return "[" + ", ".join(f"('{op}', {j})" for op, j in cell) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def to_arch(self) -> Arch:
        return Arch(SPACE_NAME, self._asdict())

    @classmethod
    def from_arch(cls, arch: Arch) -> Genotype:
        return cls(
            normal=[(op, int(j)) for op, j in arch["normal"]],
            normal_concat=[int(i) for i in arch["normal_concat"]],
            reduce=[(op, int(j)) for op, j in arch["reduce"]],
            reduce_concat=[int(i) for i in arch["reduce_concat"]],
        )


def _genotype(normal, normal_concat, reduce, reduce_concat) -> Arch:
    return Genotype(normal, list(normal_concat), reduce, list(reduce_concat)).to_arch()


# Published cells, as given in the DARTS / PC-DARTS code bases (the DARTS paper Table 1 and
# the PC-DARTS paper, Xu et al. ICLR 2020). NASNet-A, AmoebaNet-A and ENAS have 5 nodes.
PRESETS: dict[str, Arch] = {
    "NASNet": _genotype(
        normal=[("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0),
                ("sep_conv_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 0),
                ("avg_pool_3x3", 0), ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 1)],
        normal_concat=[2, 3, 4, 5, 6],
        reduce=[("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1),
                ("sep_conv_7x7", 0), ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
                ("skip_connect", 3), ("avg_pool_3x3", 2), ("sep_conv_3x3", 2),
                ("max_pool_3x3", 1)],
        reduce_concat=[4, 5, 6],
    ),
    "AmoebaNet": _genotype(
        normal=[("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 2), ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
                ("sep_conv_3x3", 1), ("skip_connect", 1), ("skip_connect", 0),
                ("avg_pool_3x3", 1)],
        normal_concat=[4, 5, 6],
        reduce=[("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0),
                ("sep_conv_7x7", 2), ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
                ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("conv_7x1_1x7", 0),
                ("sep_conv_3x3", 5)],
        reduce_concat=[3, 4, 6],
    ),
    "ENAS": _genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 1), ("sep_conv_5x5", 1),
                ("skip_connect", 0), ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("avg_pool_3x3", 1), ("sep_conv_5x5", 1),
                ("avg_pool_3x3", 0)],
        normal_concat=[2, 3, 4, 5, 6],
        reduce=[("sep_conv_5x5", 0), ("avg_pool_3x3", 1), ("sep_conv_3x3", 1),
                ("avg_pool_3x3", 1), ("sep_conv_3x3", 1), ("avg_pool_3x3", 1),
                ("sep_conv_5x5", 4), ("avg_pool_3x3", 1), ("sep_conv_3x3", 5),
                ("sep_conv_5x5", 0)],
        reduce_concat=[2, 3, 6],
    ),
    "DARTS_V1": _genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                ("max_pool_3x3", 0), ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3, 4, 5],
    ),
    "DARTS_V2": _genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
                ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=[2, 3, 4, 5],
    ),
    "PC_DARTS": _genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0),
                ("dil_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
                ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1),
                ("sep_conv_5x5", 2), ("sep_conv_3x3", 0), ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=[2, 3, 4, 5],
    ),
}
PRESETS["DARTS"] = PRESETS["DARTS_V2"]


# ---------------------------------------------------------------------------------------
# canonical string form
# ---------------------------------------------------------------------------------------
def _literal(node: ast.AST, field: str) -> Any:
    """Evaluate a literal, also accepting ``range(a, b)`` as published genotypes use it."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        args = [ast.literal_eval(a) for a in node.args]
        return list(range(*args))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ArchError(f"genotype field {field!r} is not a literal list: "
                        f"{ast.unparse(node)[:80]!r}") from None


def parse_genotype(text: str) -> Arch:
    """Parse ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ArchError(f"genotype string does not parse ({err.msg} at column {err.offset}): "
                        f"{text[:120]!r}") from None
    if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "Genotype"):
        raise ArchError("a DARTS genotype string must look like Genotype(normal=[('sep_conv_3x3', "
                        f"0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...]);"
                        f" got {text[:120]!r}")
    if tree.args:
        raise ArchError("Genotype(...) takes keyword fields only: normal, normal_concat, reduce, "
                        "reduce_concat")
    fields = {kw.arg: _literal(kw.value, kw.arg) for kw in tree.keywords}
    missing = [f for f in Genotype._fields if f not in fields]
    extra = [f for f in fields if f not in Genotype._fields]
    if missing or extra:
        raise ArchError(f"genotype fields: missing {missing}, unknown {extra}; expected "
                        f"{list(Genotype._fields)}")
    return Arch(SPACE_NAME, fields)


# ---------------------------------------------------------------------------------------
# standalone evaluation networks (DARTS Appendix A.2)
# ---------------------------------------------------------------------------------------
class EvalCell(nn.Module):
    """A discrete cell: preprocess both inputs to ``c`` channels, then sum two ops per node.

    Inputs ``s0`` (B, c_pp, H0, W0) and ``s1`` (B, c_p, H, W); output
    (B, len(concat) * c, H', W') with H' = H / 2 in a reduction cell.
    """

    def __init__(self, edges: Sequence[tuple[str, int]], concat: Sequence[int], c_pp: int,
                 c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.inputs = [int(j) for _, j in edges]
        self.concat = [int(i) for i in concat]
        self.ops = nn.ModuleList(
            build_op(op, c, c, 2 if reduction and j < 2 else 1) for op, j in edges
        )
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(len(self.ops) // 2):
            total = 0
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the 2/3-depth feature map (DARTS A.2, from NASNet).

    CIFAR: expects 8x8 input (32x32 image), pools 5x5 stride 3 -> 2x2. ImageNet: expects
    14x14, pools 5x5 stride 2 -> 5x5, then the 2x2 conv gives 4x4 before global pooling.
    """

    def __init__(self, c: int, num_classes: int, imagenet: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 5:
            raise ValueError(
                f"the auxiliary head needs a feature map of at least 5x5 at 2/3 depth, got "
                f"{tuple(x.shape[-2:])}; use auxiliary=False for inputs this small"
            )
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """The DARTS evaluation network: stem, ``layers`` cells, global pool, linear classifier.

    Reduction cells sit at ``layers // 3`` and ``2 * layers // 3`` and double the channels.
    ``stem="cifar"``: 3x3 conv to ``3 * channels``; ``stem="imagenet"``: three stride-2 3x3
    convs (the paper's ImageNet mobile setting, input 224x224 -> 28x28 at the first cell).
    ``forward`` returns ``(logits, aux_logits)``; ``aux_logits`` is None unless training
    with ``auxiliary=True``. ``drop_path_prob`` is an attribute the training module sets.
    """

    def __init__(self, genotype: Genotype, *, num_classes: int, channels: int, layers: int,
                 auxiliary: bool, stem: str = "cifar", in_channels: int = 3,
                 drop_path_prob: float = 0.0):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if layers < 3:
            raise ValueError(f"a DARTS network needs at least 3 cells, got layers={layers}")
        self.drop_path_prob = drop_path_prob
        self.aux_position = 2 * layers // 3
        self.stem_type = stem
        if stem == "cifar":
            c_curr = 3 * channels  # stem multiplier 3
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
            )
            c_pp, c_p, c_curr = c_curr, c_curr, channels
            reduction_prev = False
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            c_pp, c_p, c_curr = channels, channels, channels
            reduction_prev = True
        self.cells = nn.ModuleList()
        c_aux = c_p
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            edges = genotype.reduce if reduction else genotype.normal
            concat = genotype.reduce_concat if reduction else genotype.normal_concat
            cell = EvalCell(edges, concat, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_position:
                c_aux = c_p
        self.auxiliary = AuxiliaryHead(c_aux, num_classes, stem == "imagenet") if auxiliary else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        return self.classifier(self.pool(s1).flatten(1)), aux_logits


# ---------------------------------------------------------------------------------------
# the supernet (continuous relaxation, DARTS Sec. 2.2)
# ---------------------------------------------------------------------------------------
class MixedOp(nn.Module):
    """All candidate ops on one edge, mixed by softmax weights: sum_k w_k * op_k(x).

    The 'none' op contributes w_none * 0 = 0 to the output and nothing to any gradient, so
    it is not computed. The leading ReLU of the conv ops and of FactorizedReduce is applied
    once and shared. Pools are followed by a non-affine BN as in the DARTS code.

    ``partial_channels`` K > 1 is PC-DARTS's partial channel connection (Xu et al., ICLR
    2020, Sec. 3.1): the ops see the first C/K channels, the other channels bypass them
    (max-pooled on a reduction edge), and the concatenation is channel-shuffled with K
    groups.
    """

    def __init__(self, c: int, stride: int, primitives: Sequence[str],
                 partial_channels: int = 1):
        super().__init__()
        if partial_channels < 1 or c % partial_channels:
            raise ValueError(f"partial_channels K={partial_channels} must divide the edge's "
                             f"{c} channels (PC-DARTS: K=4 with 16, 32, 64 channels)")
        self.stride = stride
        self.partial = partial_channels
        c_op = c // partial_channels
        self.index: list[int] = []
        self.preact: list[bool] = []
        self.ops = nn.ModuleList()
        for k, name in enumerate(primitives):
            if name == "none":
                continue
            op = _search_op(name, c_op, stride)
            self.ops.append(op)
            self.index.append(k)
            self.preact.append(name.startswith(("sep_conv", "dil_conv"))
                               or (name == "skip_connect" and stride > 1))
        self.any_preact = any(self.preact)
        # (body, final BN) of the ops that end in a BN, else None: the mixing weight then
        # enters as that BN's affine scale (a plain list: the modules are registered in ops)
        self.split = [_split_final_bn(op) for op in self.ops]
        self.bypass = nn.MaxPool2d(2, 2) if partial_channels > 1 and stride > 1 else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                active: Sequence[int] | None = None,
                shared: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor | None:
        """``x``: (B, C, H, W); ``weights``: (num_primitives,) softmax of this edge's alphas;
        ``active``: the primitive indices that run (default all; one path, GDAS);
        ``shared``: ``{primitive index: output}`` of ops the cell computed once for all edges
        out of this state (:meth:`SearchCell.shared_outputs`).
        None when no op with an output runs (the edge adds nothing)."""
        if self.partial == 1:
            return self._mix(x, weights, active, shared)
        c_op = x.shape[1] // self.partial
        part, rest = x[:, :c_op], x[:, c_op:]  # (B, C/K, H, W), (B, C - C/K, H, W)
        part = _dense(part, like=x)  # a channel slice is strided: 2x slower BN and convs
        if self.bypass is not None:
            rest = self.bypass(rest)
        out = self._mix(part, weights, active, shared)
        if out is None:
            out = torch.zeros_like(rest[:, :c_op])
        return channel_shuffle(torch.cat([out, rest], dim=1), self.partial)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None,
             shared: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor | None:
        shared = shared or {}
        run = [(i, op, k, pre) for i, (op, k, pre) in enumerate(zip(self.ops, self.index,
                                                                     self.preact))
               if active is None or k in active]
        relu_x = torch.relu(x) if any(pre for *_, pre in run) else x
        out = None
        for i, op, k, pre in run:
            inp = relu_x if pre else x
            if k in shared:
                term = weights[k] * shared[k]
            elif self.split[i] is None or not uses_batch_stats_only(self.split[i][1]):
                # (a subclass, e.g. GlobalBatchNorm2d under DDP, normalises its own way)
                term = weights[k] * op(inp)
            else:  # w_k * BN(h) as BN(h) with scale w_k: no product to store or compute.
                # The scale is a contiguous copy: a stride-0 expand gives wrong input
                # gradients in torch 2.13's CPU BN on channels-last (B, C, 1, 1) tensors.
                body, bn = self.split[i]
                h = body(inp)
                term = batch_norm(h, weights[k].expand(h.shape[1]).contiguous(), bn.eps)
            # in place: no autograd node keeps a term (products and BN save their inputs)
            out = term if out is None else out.add_(term)
        if active is not None and weights.requires_grad:
            # GDAS: the ops that do not run add their straight-through weight (0 in value),
            # so every alpha of the edge gets a gradient (Dong & Yang 2019, Eq. 5, their code)
            idle = [k for k in range(weights.shape[0]) if k not in active]
            if idle:
                if out is None:
                    out = torch.zeros_like(x[:, :, ::self.stride, ::self.stride])
                out = out + weights[idle].sum()
        return out


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, H, W) -> the channels of ``groups`` groups interleaved (ShuffleNet): output
    channel ``i * groups + g`` is input channel ``g * C / groups + i``. Keeps the memory
    format (a 5-D reshape of a channels-last tensor would return NCHW, and every later op
    would pay a layout conversion: 10 copies of 16 MB per PC-DARTS step)."""
    b, c, h, w = x.shape
    if _memory_format(x) is torch.channels_last:
        nhwc = x.permute(0, 2, 3, 1)  # a dense (B, H, W, C) view
        out = nhwc.reshape(b, h, w, groups, c // groups).transpose(3, 4).reshape(b, h, w, c)
        return out.permute(0, 3, 1, 2)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _split_final_bn(op: nn.Module) -> tuple[nn.Module, nn.BatchNorm2d] | None:
    """``op`` as (its layers before its final BN, that BN) when it is a Sequential (possibly
    nested) that ends in a non-affine BatchNorm2d; else None. The body is a flat view of the
    same layers, its BNs called through :class:`BatchStatsNorm`."""
    if not isinstance(op, nn.Sequential) or len(op) == 0:
        return None
    layers = _leaves(op)
    if not isinstance(layers[-1], nn.BatchNorm2d) or layers[-1].affine:
        return None
    body = [BatchStatsNorm(m) if isinstance(m, nn.BatchNorm2d) else m for m in layers[:-1]]
    return nn.Sequential(*body), layers[-1]


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The layers of nested Sequentials, in call order."""
    if not isinstance(module, nn.Sequential):
        return [module]
    return [leaf for child in module.children() for leaf in _leaves(child)]


def _search_op(name: str, c: int, stride: int) -> nn.Module:
    """An op without its leading ReLU (MixedOp applies it), BN non-affine (DARTS search)."""
    if name == "sep_conv_3x3":
        return use_fast_depthwise(SepConv(c, c, 3, stride, 1, affine=False, preact=False))
    if name == "sep_conv_5x5":
        return use_fast_depthwise(SepConv(c, c, 5, stride, 2, affine=False, preact=False))
    if name == "dil_conv_3x3":
        return use_fast_depthwise(DilConv(c, c, 3, stride, 2, 2, affine=False, preact=False))
    if name == "dil_conv_5x5":
        return use_fast_depthwise(DilConv(c, c, 5, stride, 4, 2, affine=False, preact=False))
    if name == "skip_connect" and stride > 1:
        return FactorizedReduce(c, c, affine=False, preact=False)
    if name not in DARTS_OPS:  # any other registered op, with non-affine BN
        return build_op(name, c, c, stride, affine=False)
    op = DARTS_OPS[name](c, stride, False)
    if "pool" in name:
        return nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
    return op


def _batch_stats_only(module: nn.Module) -> nn.Module:
    """Make every BN of ``module`` use batch statistics in train and eval mode.

    Supernet weights move fast and are shared by all paths, so running averages describe no
    sub-network (NAS-Bench-201's supernet does the same). It also keeps recomputation under
    activation checkpointing exact: nothing is updated twice.
    """
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return module


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward hands on a dense gradient in the input's memory format.

    The gradient of a cell's output concatenation arrives at each node as a channel slice
    (strided in every layout), and every op of the node's edges would read it so: the BN
    backward of the DARTS ops ran 4-6x slower on such slices than on a dense tensor (torch
    2.13, CPU). One copy per node makes them dense.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.memory_format = _memory_format(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.memory_format)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _dense(x: torch.Tensor, *, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a dense tensor in the memory format of ``like`` (a copy if it is a slice)."""
    return x.contiguous(memory_format=_memory_format(like))


def _dense_grad(x: torch.Tensor) -> torch.Tensor:
    return _DenseGrad.apply(x) if x.requires_grad else x


class SearchCell(nn.Module):
    """A cell with a MixedOp on every edge j -> i (j < i): 2 + 3 + ... + (steps + 1) edges.

    With ``checkpoint_edges`` each MixedOp's activations are recomputed in the backward pass
    instead of stored (see ``DartsSupernet``'s ``checkpoint_cells``).
    """

    def __init__(self, steps: int, multiplier: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, primitives: Sequence[str],
                 checkpoint_edges: bool = False, partial_channels: int = 1):
        super().__init__()
        self.reduction = reduction
        self.checkpoint_edges = checkpoint_edges
        self.steps = steps
        self.multiplier = multiplier
        self.pre0 = (FactorizedReduce(c_pp, c, affine=False) if reduction_prev
                     else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False))
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1, primitives, partial_channels)
            for i in range(steps) for j in range(2 + i)
        )
        # The pools (+ non-affine BN) have no parameters, so every edge out of one state
        # computes the same output: the cell computes it once per state (5 instead of 14
        # times per 4-node cell). Keyed "<primitive index>_s<stride>".
        self.partial = partial_channels
        self.share_pools = True
        self.pools = nn.ModuleDict({
            f"{k}_s{stride}": _search_op(name, c // partial_channels, stride)
            for k, name in enumerate(primitives) if name in ("max_pool_3x3", "avg_pool_3x3")
            for stride in ((1, 2) if reduction else (1,))})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                active: Sequence[Sequence[int]] | None = None,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: (num_edges, num_primitives), rows are softmaxed alphas; ``active[e]``:
        the primitive indices edge e runs (default all; empty: the edge is off the path);
        ``edge_weights``: (num_edges,) factors of the edges' outputs (PC-DARTS' edge
        normalisation)."""
        states = [self.pre0(s0), self.pre1(s1)]
        shared: list[dict[int, torch.Tensor]] = []  # per state, see shared_outputs
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                e = offset + j
                ops = None if active is None else active[e]
                if j == len(shared):  # the first edge out of state j: its pools, once
                    shared.append(self.shared_outputs(h, self.edges[e].stride,
                                                      self._needed(active, j)))
                if ops is not None and not ops:
                    continue
                edge = self.edges[e]
                if self.checkpoint_edges and torch.is_grad_enabled():
                    term = checkpoint(edge, h, weights[e], ops, shared[j], use_reentrant=False)
                else:
                    term = edge(h, weights[e], ops, shared[j])
                if term is not None:
                    if edge_weights is not None:
                        term = edge_weights[e] * term
                    node = term if node is None else node + term
            offset += len(states)
            states.append(torch.zeros_like(states[1]) if node is None else _dense_grad(node))
        return torch.cat(states[-self.multiplier:], dim=1)

    def shared_outputs(self, h: torch.Tensor, stride: int, needed: set[int] | None
                       ) -> dict[int, torch.Tensor]:
        """``{primitive index: BN(pool(h))}`` for the pools that some edge out of state
        ``h`` runs (``needed``; None: all), on the edges' channels (PC-DARTS: the first
        C/K). Empty when sharing is off or a BN tracks running statistics (sharing would
        update them once instead of once per edge)."""
        if not self.share_pools or any(m.running_mean is not None for m in self.pools.modules()
                                       if isinstance(m, nn.BatchNorm2d)):
            return {}
        part = _dense(h[:, :h.shape[1] // self.partial], like=h)
        out = {}
        for key, (pool, bn) in self.pools.items():
            k, s = key.split("_s")
            if int(s) == stride and (needed is None or int(k) in needed):
                out[int(k)] = normalise(bn, pool(part))
        return out

    def _needed(self, active: Sequence[Sequence[int]] | None, j: int) -> set[int] | None:
        """The primitives that some edge out of state ``j`` runs (None: all)."""
        if active is None:
            return None
        # node i reads states 0 .. i + 1; its edge from state j is row sum_{n<i}(2+n) + j
        return {k for i in range(max(0, j - 1), self.steps)
                for k in active[sum(2 + n for n in range(i)) + j]}


class DartsSupernet(nn.Module):
    """The DARTS search network: every edge of every cell is a MixedOp.

    Holds only the operation weights; the architecture parameters (alphas) belong to the
    strategy and come in through ``forward(x, weights_normal, weights_reduce)`` as
    softmaxed (num_edges, num_primitives) matrices. Returns logits (B, num_classes).

    BN layers are non-affine and use batch statistics only (see ``_batch_stats_only``).
    ``checkpoint_cells``: the first N cells recompute their MixedOp activations in backward
    instead of storing them (None: the cells up to the first reduction, layers // 3 + 1,
    which hold most of the activation memory; 0: none). At the paper's search configuration
    (batch 64, 16 channels, 8 cells) a first-order step's peak RSS is 6.4 GB with none, 4.6 GB
    with 2, 3.75 GB with the default 3 (under 40% of NNI 3.0's 10.3 GB) and 2.8 GB with 5;
    each recomputed cell costs its forward again (scripts/results/bench_darts).
    ``channels_last`` keeps activations NHWC, which runs the depthwise convs through oneDNN
    on CPU (about 1.8x faster per step on 2 cores) and suits tensor cores on GPU.
    """

    def __init__(self, *, num_classes: int, channels: int = 16, layers: int = 8,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                 in_channels: int = 3, primitives: Sequence[str] = PRIMITIVES,
                 checkpoint_cells: int | None = None, channels_last: bool = True,
                 partial_channels: int = 1, stem: str = "cifar"):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.stem_type = stem
        if checkpoint_cells is None:
            checkpoint_cells = layers // 3 + 1
        if not 0 <= checkpoint_cells <= layers:
            raise ValueError(f"checkpoint_cells must be in 0..{layers} (or None), got "
                             f"{checkpoint_cells}")
        self.channels_last = channels_last
        if layers < 3:
            raise ValueError(f"a DARTS supernet needs at least 3 cells, got layers={layers}")
        self.primitives = tuple(primitives)
        self.partial_channels = partial_channels
        self.steps = steps
        self.multiplier = multiplier
        self.num_edges = sum(2 + i for i in range(steps))
        if stem == "cifar":
            c_curr = stem_multiplier * channels
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
            )
            c_pp, c_p, c_curr = c_curr, c_curr, channels
            reduction_prev = False
        else:  # PC-DARTS's ImageNet search stem: three stride-2 convs, 224 -> 56 (s0), 28 (s1)
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2), nn.ReLU(),
                nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(), nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            c_pp, c_p, c_curr = channels, channels, channels
            reduction_prev = True  # s0 is twice s1's size: the first cell reduces it
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = SearchCell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev,
                              self.primitives, checkpoint_edges=i < checkpoint_cells,
                              partial_channels=partial_channels)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        # DartsSpace.supernet sets its own space (build defaults, constraints)
        self.space = DartsSpace(steps=steps, num_classes=num_classes, in_channels=in_channels,
                                ops=None if self.primitives == PRIMITIVES else self.primitives)
        _batch_stats_only(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, weights_normal: torch.Tensor,
                weights_reduce: torch.Tensor,
                active: Mapping[str, Sequence[Sequence[int]]] | None = None,
                edge_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (B, num_classes); ``active`` (``{"normal": ..., "reduce": ...}``) restricts
        each edge to the listed primitive indices (one path, GDAS); ``edge_weights`` scale
        the edges' outputs per cell type (PC-DARTS)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
        else:
            s0 = self.stem0(x)  # (B, C, H/4, W/4)
            s1 = self.stem1(s0)  # (B, C, H/8, W/8)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal,
                              None if active is None else active[kind],
                              None if edge_weights is None else edge_weights[kind])
        return self.classifier(self.pool(s1).flatten(1))

    # -- the supernet interface (lightning_nas.spaces.supernet) ------------------------------
    @property
    def op_names(self) -> tuple[str, ...]:
        return self.primitives

    def _edge(self, node: int, j: int) -> int:
        """Row of edge ``j -> node`` (node 2..steps+1) in the (num_edges, ops) matrices."""
        return sum(2 + i for i in range(node - 2)) + j

    def decisions(self) -> list[Decision]:
        """Per cell type and node, as ENAS's micro controller samples them: two distinct
        inputs among the earlier nodes, then the op on each (no 'none')."""
        ops = tuple(p for p in self.primitives if p != "none")
        out = []
        for cell in CELL_TYPES:
            for node in range(2, 2 + self.steps):
                group = f"{cell}.node{node}"
                out += [Decision(f"{group}.input{k}", tuple(range(node)), "input", group)
                        for k in (0, 1)]
                out += [Decision(f"{group}.op{k}", ops, "op", group) for k in (0, 1)]
        return out

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        cells = {}
        for cell in CELL_TYPES:
            edges = []
            for node in range(2, 2 + self.steps):
                pair = [(choices[f"{cell}.node{node}.op{k}"], int(choices[
                    f"{cell}.node{node}.input{k}"])) for k in (0, 1)]
                edges += sorted(pair, key=lambda e: e[1])  # canonical: by input index
            cells[cell] = edges
        concat = list(range(2 + self.steps - self.multiplier, 2 + self.steps))
        return Genotype(cells["normal"], concat, cells["reduce"], concat).to_arch()

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        self._check_path(arch)
        out: dict[str, Any] = {}
        for cell in CELL_TYPES:
            for node in range(2, 2 + self.steps):
                edges = arch[cell][2 * (node - 2): 2 * (node - 1)]
                for k, (_, j) in enumerate(edges):
                    out[f"{cell}.node{node}.input{k}"] = int(j)
                for k, (op, _) in enumerate(edges):
                    out[f"{cell}.node{node}.op{k}"] = op
        return out  # in decision order

    def _check_path(self, arch: Arch) -> None:
        if arch.space != SPACE_NAME:
            raise ArchError(f"architecture belongs to the {arch.space!r} space, not "
                            f"{SPACE_NAME!r}")
        for cell in CELL_TYPES:
            if len(arch[cell]) != 2 * self.steps:
                raise ArchError(f"the supernet has {self.steps} nodes per cell; {cell!r} "
                                f"lists {len(arch[cell]) // 2}")
            for op, _ in arch[cell]:
                if op not in self.primitives or op == "none":
                    raise ArchError(f"{cell}: operation {op!r} is not one of the supernet's "
                                    f"{', '.join(p for p in self.primitives if p != 'none')}")

    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        return {cell: (self.num_edges, len(self.primitives)) for cell in CELL_TYPES}

    def edge_groups(self) -> dict[str, list[list[int]]]:
        """Per cell type, the edge rows of each node's incoming edges (node 2, 3, ...)."""
        groups, start = [], 0
        for i in range(self.steps):
            groups.append(list(range(start, start + 2 + i)))
            start += 2 + i
        return {cell: [list(g) for g in groups] for cell in CELL_TYPES}

    def forward_weighted(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor],
                         active: Mapping[str, Sequence[Sequence[int]]] | None = None,
                         edge_weights: Mapping[str, torch.Tensor] | None = None
                         ) -> torch.Tensor:
        return self(x, weights["normal"], weights["reduce"], active, edge_weights)

    def path_weights(self, arch: Arch) -> tuple[dict[str, torch.Tensor],
                                                 dict[str, list[list[int]]]]:
        """One-hot (num_edges, ops) weights per cell type of ``arch`` (zero rows for edges
        off the path) and the primitive indices each edge runs."""
        self._check_path(arch)
        weights, active = {}, {}
        device = self.classifier.weight.device
        for cell in CELL_TYPES:
            w = torch.zeros(self.num_edges, len(self.primitives), device=device)
            runs: list[list[int]] = [[] for _ in range(self.num_edges)]
            for k, (op, j) in enumerate(arch[cell]):
                e, p = self._edge(2 + k // 2, int(j)), self.primitives.index(op)
                w[e, p] = 1.0
                runs[e].append(p)
            weights[cell], active[cell] = w, runs
        return weights, active

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        weights, active = self.path_weights(arch)
        return self.forward_weighted(x, weights, active)

    def derive(self, weights: Mapping[str, torch.Tensor],
               edge_weights: Mapping[str, torch.Tensor] | None = None) -> Arch:
        """DARTS' discretisation of (softmaxed) weights: :func:`derive_genotype`; with
        ``edge_weights`` (PC-DARTS) each edge's row is scaled by its edge weight first."""
        if edge_weights is not None:
            weights = {c: weights[c] * edge_weights[c][:, None] for c in CELL_TYPES}
        return derive_genotype(weights["normal"], weights["reduce"], steps=self.steps,
                               multiplier=self.multiplier, primitives=self.primitives)

    def subnet(self, arch: Arch) -> nn.Module:
        """``arch``'s path as a module (:class:`~lightning_nas.spaces.supernet.PathNetwork`:
        a copy of this supernet with batch-norm running statistics to recalibrate)."""
        self._check_path(arch)
        return PathNetwork(self, arch)


def derive_genotype(weights_normal: torch.Tensor, weights_reduce: torch.Tensor, *,
                    steps: int = 4, multiplier: int = 4,
                    primitives: Sequence[str] = PRIMITIVES) -> Arch:
    """Discretise softmaxed alphas as in the DARTS paper (Sec. 2.4).

    For every intermediate node keep the 2 incoming edges whose strongest non-'none' op has
    the largest weight, and on each kept edge that strongest op. Ties go to the lower index.
    """
    none = primitives.index("none") if "none" in primitives else None

    def cell(weights: torch.Tensor) -> list[tuple[str, int]]:
        w = weights.detach().double().cpu()
        if none is not None:
            w[:, none] = -1.0
        edges: list[tuple[str, int]] = []
        start = 0
        for i in range(steps):
            rows = w[start:start + 2 + i]  # (2 + i, num_primitives): edges into node i + 2
            strength, best = rows.max(dim=1)
            order = sorted(range(2 + i), key=lambda j: (-float(strength[j]), j))[:2]
            edges += [(primitives[int(best[j])], j) for j in sorted(order)]
            start += 2 + i
        return edges

    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(cell(weights_normal), concat, cell(weights_reduce), concat).to_arch()


# ---------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------
class DartsSpace(SearchSpace):
    """The DARTS cell space: 8 ops, 2 input + ``steps`` intermediate nodes, 2 cells.

    ``sample``/``mutate``/``supernet`` work on the ``steps``-node space with its ``ops``
    (default :data:`PRIMITIVES`). ``check`` accepts any well-formed genotype whose ops are
    registered (so the 5-node NASNet/AmoebaNet/ENAS presets train too). Build defaults
    (classes, channels, cells, auxiliary head, stem) are constructor arguments, overridable
    per call.

    Args:
        steps: intermediate nodes per cell (4 in the paper).
        ops: the candidate operations, in the order of the alpha columns: names of the
            operation registry (:mod:`lightning_nas.spaces.registry`) or ``{name, class_path,
            init_args}`` entries that register a user's op; None: the paper's 8
            (:data:`PRIMITIVES`). 'none' is optional (never sampled; derive skips it); at
            least two others.
        num_classes, channels, layers, auxiliary, stem, in_channels: network defaults for
            :meth:`build` (the paper's CIFAR evaluation network is 36 channels, 20 cells).
        constraints: limits enforced by :meth:`validate`.
    """

    name = SPACE_NAME
    presets = PRESETS

    def __init__(self, *, steps: int = 4, num_classes: int = 10, channels: int = 36,
                 layers: int = 20, auxiliary: bool = False, stem: str = "cifar",
                 in_channels: int = 3, ops: list[str | dict[str, Any]] | None = None,
                 constraints: Constraints | None = None):
        super().__init__(constraints)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        #: the op set (alpha column order); ``search_ops`` without the zero op
        self.ops = space_ops(ops, PRIMITIVES, space="DartsSpace", min_nonzero=2)
        self.search_ops = tuple(p for p in self.ops if p != ZERO_OP)
        self.build_defaults = dict(num_classes=num_classes, channels=channels, layers=layers,
                                   auxiliary=auxiliary, stem=stem, in_channels=in_channels)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (``DartsSpace(**space.config())``)."""
        limits = self.constraints
        ops = {} if self.ops == PRIMITIVES else {"ops": op_entries(self.ops)}
        return {"steps": self.steps, **self.build_defaults, **ops,
                "constraints": None if limits == Constraints() else
                {"max_params": limits.max_params, "max_layers": limits.max_layers}}

    # -- membership ------------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        keys = set(arch)
        if keys != set(Genotype._fields):
            raise ArchError(f"a DARTS genotype has fields {list(Genotype._fields)}; got "
                            f"{sorted(keys)}")
        for cell in CELL_TYPES:
            edges = arch[cell]
            if not isinstance(edges, tuple) or len(edges) == 0 or len(edges) % 2:
                raise ArchError(f"{cell!r} must be a non-empty list of (op, input) pairs, two per "
                                f"node; got {len(edges) if isinstance(edges, tuple) else edges!r}")
            nodes = len(edges) // 2
            for k, edge in enumerate(edges):
                where = f"{cell}[{k}]"
                if not (isinstance(edge, tuple) and len(edge) == 2 and isinstance(edge[0], str)
                        and isinstance(edge[1], int) and not isinstance(edge[1], bool)):
                    raise ArchError(f"{where} must be an (op name, input index) pair, got {edge!r}")
                op, j = edge
                try:
                    get_op(op)
                except UnknownOpError as err:
                    raise ArchError(f"{where}: {err}") from None
                if not 0 <= j < 2 + k // 2:
                    raise ArchError(f"{where}: input {j} is not an earlier node of node "
                                    f"{2 + k // 2} (valid inputs: 0..{1 + k // 2})")
            concat = arch[f"{cell}_concat"]
            if (not isinstance(concat, tuple) or not concat
                    or not all(isinstance(i, int) and 0 <= i < 2 + nodes for i in concat)
                    or len(set(concat)) != len(concat)):
                raise ArchError(f"{cell}_concat must list distinct node indices in 0..{1 + nodes}, "
                                f"got {concat!r}")

    def in_search_space(self, arch: Arch) -> bool:
        """True when ``arch`` has ``steps`` nodes and only search ops (sampleable)."""
        self.validate(arch)
        return all(
            len(arch[c]) == 2 * self.steps and all(op in self.search_ops
                                                   for op, _ in arch[c])
            for c in CELL_TYPES
        )

    def depth(self, arch: Arch) -> int:
        return int(self.build_defaults["layers"])

    # -- string form -----------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        return str(Genotype.from_arch(arch))

    def parse(self, text: str) -> Arch:
        return self.validate(parse_genotype(text))

    # -- sampling --------------------------------------------------------------------------
    def _concat(self) -> list[int]:
        return list(range(2, 2 + self.steps))

    def sample(self, rng: random.Random) -> Arch:
        ops = self.search_ops

        def cell() -> list[tuple[str, int]]:
            edges = []
            for i in range(self.steps):
                for j in sorted(rng.sample(range(2 + i), 2)):
                    edges.append((rng.choice(ops), j))
            return edges

        return Genotype(cell(), self._concat(), cell(), self._concat()).to_arch()

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """Change one op, or move one edge to another input of the same node."""
        self.validate(arch)
        g = Genotype.from_arch(arch)
        cell_name = rng.choice(CELL_TYPES)
        edges = list(getattr(g, cell_name))
        k = rng.randrange(len(edges))
        op, j = edges[k]
        node = 2 + k // 2
        other = edges[k ^ 1][1]
        free_inputs = [i for i in range(node) if i not in (j, other)]
        if free_inputs and rng.random() < 0.5:
            edges[k] = (op, rng.choice(free_inputs))
        else:
            edges[k] = (rng.choice([p for p in self.search_ops if p != op]), j)
        return g._replace(**{cell_name: edges}).to_arch()

    # -- categorical view ------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Per cell and node: the pair of inputs (j1 < j2), then the op on each of the two."""
        ops = self.search_ops
        out: list[tuple[str, tuple[Any, ...]]] = []
        for cell in CELL_TYPES:
            for node in range(2, 2 + self.steps):
                pairs = tuple((a, b) for a in range(node) for b in range(a + 1, node))
                out += [(f"{cell}.node{node}.inputs", pairs), (f"{cell}.node{node}.op0", ops),
                        (f"{cell}.node{node}.op1", ops)]
        return out

    def encode(self, arch: Arch) -> list[int]:
        if not self.in_search_space(arch):
            raise ArchError(f"only {self.steps}-node genotypes of the search ops have a "
                            "categorical encoding")
        decisions = dict(self.decisions())
        indices = []
        for cell in CELL_TYPES:
            for node in range(2, 2 + self.steps):
                (op_a, a), (op_b, b) = arch[cell][2 * (node - 2)], arch[cell][2 * (node - 2) + 1]
                if a == b:
                    raise ArchError(f"{cell} node {node} takes input {a} twice; the search space "
                                    "uses two distinct inputs per node")
                if a > b:
                    (op_a, a), (op_b, b) = (op_b, b), (op_a, a)
                ops = decisions[f"{cell}.node{node}.op0"]
                indices += [decisions[f"{cell}.node{node}.inputs"].index((a, b)),
                            ops.index(op_a), ops.index(op_b)]
        return indices

    def decode(self, indices: list[int]) -> Arch:
        decisions = self.decisions()
        if len(indices) != len(decisions):
            raise ArchError(f"expected {len(decisions)} decision indices, got {len(indices)}")
        chosen = {label: options[i] for (label, options), i in zip(decisions, indices)}
        cells = {}
        for cell in CELL_TYPES:
            edges = []
            for node in range(2, 2 + self.steps):
                a, b = chosen[f"{cell}.node{node}.inputs"]
                edges += [(chosen[f"{cell}.node{node}.op0"], a),
                          (chosen[f"{cell}.node{node}.op1"], b)]
            cells[cell] = edges
        return Genotype(cells["normal"], self._concat(), cells["reduce"], self._concat()).to_arch()

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> DartsNetwork:
        self.validate(arch)
        options = {**self.build_defaults, **kwargs}
        return DartsNetwork(Genotype.from_arch(arch), **options)

    def supernet(self, **kwargs: Any) -> DartsSupernet:
        options = {"num_classes": self.build_defaults["num_classes"],
                   "in_channels": self.build_defaults["in_channels"], "steps": self.steps,
                   "primitives": self.ops, **kwargs}
        net = DartsSupernet(**options)
        net.space = self
        return net
