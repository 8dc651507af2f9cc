"""The NAS-Bench-201 cell space (Dong & Yang, "NAS-Bench-201", ICLR 2020).

A cell is a DAG of 4 nodes; node 0 is the cell input, node 3 its output, and every edge
``j <- i`` (i < j) carries one of 5 operations, so a cell is 6 choices out of 5 and the
space holds 5**6 = 15,625 cells. Node ``j`` is the sum over ``i < j`` of
``op_{j<-i}(node i)``.

As an :class:`Arch` a cell is ``{"1<-0": op, "2<-0": op, "2<-1": op, "3<-0": op,
"3<-1": op, "3<-2": op}``; its canonical string is the benchmark's own
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (one ``|...|`` group per node 1, 2, 3, listing the
edges from lower nodes in order).

**Index order.** The benchmark numbers its cells 0..15624. The rule (checked cell by cell
against ``nb201/nb201_accuracy.csv``): enumerate all cells with the first edge ``1<-0`` as the
most significant digit and ``3<-2`` the least, each digit running over :data:`OPS` in the
order ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``; then shuffle that list
with Python's ``random.seed(88); random.shuffle(...)``. :func:`arch_index` /
:func:`arch_from_index` give the two directions.

**Networks.** :meth:`NB201Space.build` gives the benchmark's standalone network: a 3x3 conv
stem + BN to ``channels`` (16), three stages of ``cells_per_stage`` (5) cells separated by a
stride-2 ResNet basic block that doubles the channels, then BN-ReLU, global average pooling
and a linear classifier. Conv ops are ReLU-Conv-BN; the 3x3 average pool has stride 1,
padding 1 and does not count the padding. With the defaults the all-``nor_conv_3x3`` cell on
10 classes has 1,531,546 parameters and a cell without convolutions 73,306 (the benchmark's
published 1.531546 MB / 0.073306 MB).
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.ops import ReLUConvBN, Zero
from lightning_nas.spaces.registry import ZERO_OP, build_op, op_entries, space_ops
from lightning_nas.spaces.supernet import Decision

SPACE_NAME = "nb201"
#: The 5 operations, in the benchmark's order (the order of index generation and one-hot).
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Nodes of a cell: 0 = input, 3 = output.
NUM_NODES = 4
#: The 6 edges as ``(to, from)`` in the order of the string form and of :meth:`decisions`.
EDGES: tuple[tuple[int, int], ...] = tuple(
    (j, i) for j in range(1, NUM_NODES) for i in range(j)
)
#: Arch labels of the edges, ``"j<-i"``.
EDGE_LABELS: tuple[str, ...] = tuple(f"{j}<-{i}" for j, i in EDGES)
#: Number of cells in the space.
NUM_ARCHS = len(OPS) ** len(EDGES)


def cell_edges(nodes: int = NUM_NODES) -> tuple[tuple[int, int], ...]:
    """The ``(to, from)`` edges of a cell of ``nodes`` nodes, in string / decision order."""
    return tuple((j, i) for j in range(1, nodes) for i in range(j))


def edge_labels(nodes: int = NUM_NODES) -> tuple[str, ...]:
    """Arch labels ``"j<-i"`` of a cell of ``nodes`` nodes."""
    return tuple(f"{j}<-{i}" for j, i in cell_edges(nodes))


def nodes_of(num_edges: int) -> int:
    """Node count of a cell with ``num_edges`` edges (n (n - 1) / 2 of them)."""
    n = round((1 + (1 + 8 * num_edges) ** 0.5) / 2)
    if n * (n - 1) // 2 != num_edges or n < 2:
        raise ArchError(f"{num_edges} edges do not make a complete cell DAG (n (n - 1) / 2 "
                        "edges for n nodes)")
    return n


#: Ops without parameters: they add no depth (:meth:`NB201Space.cell_depth`).
_PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"})
#: Seed of the benchmark's shuffle of the generated order.
_INDEX_SHUFFLE_SEED = 88


# ---------------------------------------------------------------------------------------
# string form and index order
# ---------------------------------------------------------------------------------------
def _ops_to_string(ops: Sequence[str]) -> str:
    groups, k = [], 0
    for j in range(1, nodes_of(len(ops))):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


_GROUP = re.compile(r"^\|(.*)\|$")


def _parse_ops(text: str, allowed: Sequence[str] = OPS, nodes: int = NUM_NODES
               ) -> tuple[str, ...]:
    """The op names of an official string, in edge order; ArchError names what is wrong
    (``allowed``: the space's op set; ``nodes``: its cells' node count)."""
    if not isinstance(text, str):
        raise ArchError(f"an NB201 architecture string must be a str, got {type(text).__name__}")
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    stripped = text.strip()
    groups = stripped.split("+")
    if len(groups) != nodes - 1:
        raise ArchError(f"an NB201 string has {nodes - 1} node groups joined by '+', got "
                        f"{len(groups)} in {text!r}; example: {example}")
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        match = _GROUP.match(group)
        if not match:
            raise ArchError(f"node {j} group {group!r} must start and end with '|' "
                            f"(in {text!r})")
        edges = match.group(1).split("|")
        if len(edges) != j:
            raise ArchError(f"node {j} must list {j} incoming edge(s) (from nodes 0..{j - 1}), "
                            f"got {len(edges)}: {group!r}")
        for i, edge in enumerate(edges):
            op, sep, source = edge.partition("~")
            if not sep:
                raise ArchError(f"edge {edge!r} of node {j} must be 'op~input', e.g. "
                                f"'nor_conv_3x3~{i}'")
            if source != str(i):
                raise ArchError(f"edge {edge!r} of node {j}: expected input node {i} in position "
                                f"{i} (edges are listed from node 0 upwards), got {source!r}")
            if op not in allowed:
                raise ArchError(f"edge {edge!r} of node {j}: unknown operation {op!r}; the "
                                f"space's operations are {', '.join(allowed)}")
            ops.append(op)
    return tuple(ops)


@functools.lru_cache(maxsize=1)
def _benchmark_order() -> tuple[str, ...]:
    """All 15,625 strings in the benchmark's index order (generated, then seeded shuffle)."""
    generated = [_ops_to_string(ops) for ops in itertools.product(OPS, repeat=len(EDGES))]
    random.Random(_INDEX_SHUFFLE_SEED).shuffle(generated)
    return tuple(generated)


@functools.lru_cache(maxsize=1)
def _index_of() -> dict[str, int]:
    return {s: i for i, s in enumerate(_benchmark_order())}


def arch_from_ops(ops: Sequence[str], allowed: Sequence[str] = OPS, nodes: int = NUM_NODES
                  ) -> Arch:
    """An NB201 Arch from the op names in edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2 for
    the benchmark's 4 nodes); ``allowed``: the space's op set (default the benchmark's 5)."""
    labels = edge_labels(nodes)
    if len(ops) != len(labels):
        raise ArchError(f"an NB201 cell of {nodes} nodes has {len(labels)} edges, got "
                        f"{len(ops)} ops")
    for label, op in zip(labels, ops):
        if op not in allowed:
            raise ArchError(f"edge {label}: unknown operation {op!r}; the space's operations "
                            f"are {', '.join(allowed)}")
    return Arch(SPACE_NAME, dict(zip(labels, ops)))


def arch_ops(arch: Arch) -> tuple[str, ...]:
    """The op names of ``arch`` in edge order."""
    return tuple(arch[label] for label in edge_labels(nodes_of(len(arch))))


def arch_index(arch: Arch | str) -> int:
    """Benchmark index (0..15624) of an NB201 Arch or string."""
    if isinstance(arch, str):
        text = _ops_to_string(_parse_ops(arch))  # canonical form; precise error if malformed
    else:
        if arch.space != SPACE_NAME:
            raise ArchError(f"architecture belongs to the {arch.space!r} space, not "
                            f"{SPACE_NAME!r}")
        text = _ops_to_string(arch_ops(arch))
    return _index_of()[text]


def arch_from_index(index: int) -> Arch:
    """The NB201 Arch with benchmark index ``index``."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_ARCHS:
        raise ArchError(f"NB201 indices run from 0 to {NUM_ARCHS - 1}, got {index!r}")
    return arch_from_ops(_parse_ops(_benchmark_order()[index]))


# ---------------------------------------------------------------------------------------
# standalone network
# ---------------------------------------------------------------------------------------
def make_op(name: str, c: int, affine: bool = True, track_running_stats: bool = True) -> nn.Module:
    """One cell op on ``c`` channels, stride 1: (B, c, H, W) -> (B, c, H, W): the benchmark's
    5 as its code builds them, any other from the operation registry."""
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        k = 1 if name == "nor_conv_1x1" else 3
        op = ReLUConvBN(c, c, k, 1, k // 2, affine=affine)
        if not track_running_stats:  # batch statistics only, as in one-shot search
            op[2] = nn.BatchNorm2d(c, affine=affine, track_running_stats=False)
        return op
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    op = build_op(name, c, c, 1, affine=affine)
    if not track_running_stats:  # batch statistics only, as in one-shot search
        for m in op.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None
    return op


class ResNetBasicBlock(nn.Module):
    """The stride-2 block between stages: (B, c_in, H, W) -> (B, c_out, H/2, W/2).

    ReLU-Conv3x3(stride 2)-BN, ReLU-Conv3x3-BN, plus a shortcut AvgPool2x2 -> Conv1x1.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """A discrete cell: ``edges[k]`` is the op of edge :data:`EDGES` ``[k]``; (B,C,H,W) kept."""

    def __init__(self, ops: Sequence[str], c: int):
        super().__init__()
        self.op_names = tuple(ops)
        self.edges = nn.ModuleList(make_op(name, c) for name in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, nodes_of(len(self.edges))):
            total = None
            for i in range(j):
                term = self.edges[k](nodes[i])
                total = term if total is None else total + term
                k += 1
            nodes.append(total)
        return nodes[-1]


class _Body(nn.Module):
    """Stem, stages and head shared by the standalone network and the supernet."""

    def __init__(self, make_cell, *, num_classes: int, channels: int, cells_per_stage: int,
                 in_channels: int):
        super().__init__()
        if channels < 1 or cells_per_stage < 0 or num_classes < 1:
            raise ValueError(f"need channels >= 1, cells_per_stage >= 0, num_classes >= 1; got "
                             f"{channels}, {cells_per_stage}, {num_classes}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        cells: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                cells.append(ResNetBasicBlock(c, 2 * c))
                c *= 2
            cells += [make_cell(c) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)


class NB201Network(_Body):
    """The NB201 standalone network for one cell; ``forward(x)`` gives logits (B, num_classes).

    Input (B, in_channels, H, W) with H, W divisible by 4 (32x32 CIFAR, 16x16 ImageNet16).
    """

    def __init__(self, arch: Arch, *, num_classes: int = 10, channels: int = 16,
                 cells_per_stage: int = 5, in_channels: int = 3):
        ops = arch_ops(arch)
        super().__init__(lambda c: NB201Cell(ops, c), num_classes=num_classes, channels=channels,
                         cells_per_stage=cells_per_stage, in_channels=in_channels)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


# ---------------------------------------------------------------------------------------
# supernet (every edge a weighted mix of the 5 ops)
# ---------------------------------------------------------------------------------------
class NB201MixedOp(nn.Module):
    """All 5 ops of one edge: ``sum_k w_k op_k(x)``; 'none' adds ``w * 0`` and is skipped.

    ``partial_channels`` K > 1: PC-DARTS's partial channels (the ops see C/K channels, the
    rest bypasses them, then a channel shuffle with K groups)."""

    def __init__(self, c: int, affine: bool, track_running_stats: bool,
                 partial_channels: int = 1, ops: Sequence[str] = OPS):
        super().__init__()
        if partial_channels < 1 or c % partial_channels:
            raise ValueError(f"partial_channels K={partial_channels} must divide the edge's "
                             f"{c} channels")
        self.partial = partial_channels
        c_op = c // partial_channels
        self.ops = nn.ModuleDict(
            (name, make_op(name, c_op, affine, track_running_stats))
            for name in ops if name != ZERO_OP
        )
        self.index = [list(ops).index(name) for name in self.ops]

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                active: Sequence[int] | None = None) -> torch.Tensor | None:
        """``x``: (B, C, H, W); ``weights``: (num_ops,) in the space's op order; ``active``:
        the op indices that run (default all). None when no op with an output runs
        (the edge adds nothing)."""
        if self.partial == 1:
            return self._mix(x, weights, active)
        from lightning_nas.spaces.darts import channel_shuffle

        c_op = x.shape[1] // self.partial
        part, rest = x[:, :c_op], x[:, c_op:]
        out = self._mix(part, weights, active)
        if out is None:
            out = torch.zeros_like(part)
        return channel_shuffle(torch.cat([out, rest], dim=1), self.partial)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor,
             active: Sequence[int] | None) -> torch.Tensor | None:
        out = None
        for k, op in zip(self.index, self.ops.values()):
            if active is not None and k not in active:
                continue
            term = weights[k] * op(x)
            out = term if out is None else out + term
        if active is not None and weights.requires_grad:
            # GDAS: ops that do not run add their straight-through weight (0 in value), so
            # every alpha of the edge gets a gradient
            idle = [k for k in range(weights.shape[0]) if k not in active]
            if idle:
                out = (torch.zeros_like(x) if out is None else out) + weights[idle].sum()
        return out


class NB201SearchCell(nn.Module):
    def __init__(self, c: int, affine: bool, track_running_stats: bool,
                 partial_channels: int = 1, ops: Sequence[str] = OPS, nodes: int = NUM_NODES):
        super().__init__()
        self.nodes = nodes
        self.edges = nn.ModuleList(
            NB201MixedOp(c, affine, track_running_stats, partial_channels, ops)
            for _ in cell_edges(nodes)
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                active: Sequence[Sequence[int]] | None = None,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: (6, num_ops), row k for edge :data:`EDGES` ``[k]``; ``active[k]``: the op
        indices edge k runs (default all); ``edge_weights``: (6,) factors of the edges'
        outputs (PC-DARTS). A node all of whose edges add nothing is zero."""
        nodes = [x]
        k = 0
        for j in range(1, self.nodes):
            total = None
            for i in range(j):
                term = self.edges[k](nodes[i], weights[k],
                                     None if active is None else active[k])
                if term is not None:
                    if edge_weights is not None:
                        term = edge_weights[k] * term
                    total = term if total is None else total + term
                k += 1
            nodes.append(torch.zeros_like(x) if total is None else total)
        return nodes[-1]


class NB201Supernet(_Body):
    """The NB201 network with every cell edge a :class:`NB201MixedOp`.

    Holds only operation weights; the architecture weights come in through
    ``forward(x, weights)`` with ``weights`` (6, 5) (e.g. softmaxed alphas, or one-hot rows
    for a single path), shared by all 15 cells. Returns logits (B, num_classes). Cell BNs
    follow ``affine``/``track_running_stats`` (the benchmark's DARTS-style search uses
    non-affine BN); stem, residual blocks and head are as in the standalone network.
    """

    def __init__(self, *, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5,
                 in_channels: int = 3, affine: bool = False, track_running_stats: bool = False,
                 partial_channels: int = 1, ops: Sequence[str] = OPS,
                 nodes: int = NUM_NODES):
        ops = tuple(ops)
        super().__init__(lambda c: NB201SearchCell(c, affine, track_running_stats,
                                                   partial_channels, ops, nodes),
                         num_classes=num_classes, channels=channels,
                         cells_per_stage=cells_per_stage, in_channels=in_channels)
        self.build_options = {"num_classes": num_classes, "channels": channels,
                              "cells_per_stage": cells_per_stage, "in_channels": in_channels}
        self.partial_channels = partial_channels
        self.op_names = ops
        self.nodes = nodes
        self.edge_labels = edge_labels(nodes)
        # NB201Space.supernet sets its own
        self.space = NB201Space(**self.build_options, ops=None if ops == OPS else list(ops),
                                nodes=nodes)

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                active: Sequence[Sequence[int]] | None = None,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes) with every cell's edges mixed by ``weights`` (6, num_ops);
        ``active[k]`` restricts edge k to those op indices (one path, GDAS); ``edge_weights``
        (6,) scale the edges' outputs (PC-DARTS)."""
        if weights.shape != (len(self.edge_labels), len(self.op_names)):
            raise ValueError(f"weights must be ({len(self.edge_labels)}, {len(self.op_names)}) "
                             f"(edges x "
                             f"ops), got {tuple(weights.shape)}")
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, weights, active, edge_weights) if isinstance(cell, NB201SearchCell) \
                else cell(x)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))

    # -- the supernet interface (lightning_nas.spaces.supernet) ------------------------------
    def decisions(self) -> list[Decision]:
        """One op per edge, in :data:`EDGES` order."""
        return [Decision(label, self.op_names) for label in self.edge_labels]

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        return arch_from_ops([choices[label] for label in self.edge_labels], self.op_names,
                             self.nodes)

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        self.space.validate(arch)
        return {label: arch[label] for label in self.edge_labels}

    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        return {"cell": (len(self.edge_labels), len(self.op_names))}

    def edge_groups(self) -> dict[str, list[list[int]]]:
        """The edge rows into node 1, 2 and 3."""
        return {"cell": [[k for k, (j, _) in enumerate(cell_edges(self.nodes)) if j == node]
                         for node in range(1, self.nodes)]}

    def forward_weighted(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor],
                         active: Mapping[str, Sequence[Sequence[int]]] | None = None,
                         edge_weights: Mapping[str, torch.Tensor] | None = None
                         ) -> torch.Tensor:
        return self(x, weights["cell"], None if active is None else active["cell"],
                    None if edge_weights is None else edge_weights["cell"])

    def path_weights(self, arch: Arch) -> tuple[torch.Tensor, list[list[int]]]:
        """One-hot (6, num_ops) weights of ``arch`` and the op index each edge runs."""
        index = [self.op_names.index(op) for op in arch_ops(self.space.validate(arch))]
        edges = len(self.edge_labels)
        weights = torch.zeros(edges, len(self.op_names), device=self.classifier.weight.device)
        weights[torch.arange(edges), torch.tensor(index)] = 1.0
        return weights, [[k] for k in index]

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        weights, active = self.path_weights(arch)
        return self(x, weights, active)

    def derive(self, weights: Mapping[str, torch.Tensor],
               edge_weights: Mapping[str, torch.Tensor] | None = None) -> Arch:
        """The strongest op of every edge, 'none' included (as NAS-Bench-201's DARTS; every
        edge stays, so edge weights do not change the choice)."""
        best = weights["cell"].detach().argmax(-1).tolist()
        return arch_from_ops([self.op_names[k] for k in best], self.op_names, self.nodes)

    def subnet(self, arch: Arch) -> nn.Module:
        """The standalone network of ``arch`` with this supernet's weights (its batch-norm
        running statistics to be recalibrated; see :func:`extract_subnet`); with partial
        channels the ops are narrower than a standalone network's, so the path inside a copy
        of the supernet (:class:`~lightning_nas.spaces.supernet.PathNetwork`)."""
        if self.partial_channels > 1:
            from lightning_nas.spaces.supernet import PathNetwork

            return PathNetwork(self, arch)
        return extract_subnet(self, arch)[0]


def extract_subnet(supernet: NB201Supernet, arch: Arch) -> tuple[NB201Network, list[str]]:
    """Build ``arch`` standalone and copy its weights out of ``supernet``.

    Cell edge ``k`` of the subnet takes the parameters and buffers of op ``arch``'s choice on
    edge ``k`` of the supernet; stem, residual blocks and head are copied as they are.
    Returns ``(network, missing)``: ``missing`` lists subnet tensors the supernet does not
    have (affine BN weights of a non-affine supernet stay at 1/0, which is the same function;
    running statistics of a supernet without them stay at 0/1 and need recalibrating on data).
    """
    ops = arch_ops(arch)
    net = NB201Network(arch, **supernet.build_options)
    source = supernet.state_dict()
    target = net.state_dict()
    missing = []
    for key in target:
        src_key = key
        match = re.match(r"^(cells\.\d+\.edges\.(\d+))\.(.*)$", key)
        if match:
            src_key = f"{match.group(1)}.ops.{ops[int(match.group(2))]}.{match.group(3)}"
        if src_key in source and source[src_key].shape == target[key].shape:
            target[key] = source[src_key].clone()
        else:
            missing.append(key)
    net.load_state_dict(target)
    return net, missing


# ---------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------
class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space: 6 edges x 5 ops, 15,625 cells (or another op set).

    Args:
        num_classes: classifier outputs of :meth:`build` (10 CIFAR-10, 100 CIFAR-100,
            120 ImageNet16-120).
        channels: channels of the first stage (16 in the benchmark).
        cells_per_stage: cells per stage (5 in the benchmark).
        in_channels: input image channels.
        ops: the operation set (names of :mod:`lightning_nas.spaces.registry` or ``{name,
            class_path, init_args}`` entries); None: the benchmark's 5 (:data:`OPS`). The
            benchmark's index and tabular accuracies exist for the default set only.
        nodes: nodes per cell (4 in the benchmark: input, two inner nodes, output); every
            earlier node feeds every later one, so ``nodes * (nodes - 1) / 2`` edges.
        constraints: limits enforced by :meth:`validate`.
    """

    name = SPACE_NAME
    ops = OPS  # the default set (an instance holds its own)
    edges = EDGE_LABELS  # the default cell's (an instance holds its own)

    def __init__(self, *, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5,
                 in_channels: int = 3, ops: list[str | dict[str, Any]] | None = None,
                 nodes: int = NUM_NODES, constraints: Constraints | None = None):
        super().__init__(constraints)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 2:
            raise ValueError(f"nodes must be an integer >= 2 (input and output), got {nodes!r}")
        self.nodes = nodes
        self.edges = edge_labels(nodes)
        #: the op set, in the order of the (6, num_ops) weights and of the encoding
        self.ops = space_ops(ops, OPS, space="NB201Space")
        if channels < 1 or cells_per_stage < 0 or num_classes < 1 or in_channels < 1:
            raise ValueError("num_classes, channels and in_channels must be >= 1 and "
                             f"cells_per_stage >= 0; got num_classes={num_classes}, channels="
                             f"{channels}, cells_per_stage={cells_per_stage}, in_channels="
                             f"{in_channels}")
        self.build_defaults = {"num_classes": num_classes, "channels": channels,
                               "cells_per_stage": cells_per_stage, "in_channels": in_channels}

    def __len__(self) -> int:
        return len(self.ops) ** len(self.edges)

    @property
    def is_benchmark(self) -> bool:
        """Whether op set and node count are the benchmark's (so its index and table apply)."""
        return self.ops == OPS and self.nodes == NUM_NODES

    def _require_benchmark(self, what: str) -> None:
        if not self.is_benchmark:
            raise ArchError(f"{what} exists for the benchmark's op set {list(OPS)} and "
                            f"{NUM_NODES}-node cells only; this space's ops are {list(self.ops)}"
                            f" with {self.nodes} nodes (no tabular accuracies: train or use a "
                            "supernet evaluator)")

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (``NB201Space(**space.config())``)."""
        limits = self.constraints
        ops = {} if self.ops == OPS else {"ops": op_entries(self.ops)}
        if self.nodes != NUM_NODES:
            ops["nodes"] = self.nodes
        return {**self.build_defaults, **ops, "constraints": None if limits == Constraints() else
                {"max_params": limits.max_params, "max_layers": limits.max_layers}}

    # -- membership ------------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        if set(arch) != set(self.edges):
            raise ArchError(f"an NB201 cell of {self.nodes} nodes has edges {list(self.edges)}; "
                            f"got {sorted(arch)}")
        for label in self.edges:
            if arch[label] not in self.ops:
                raise ArchError(f"edge {label}: unknown operation {arch[label]!r}; the space's "
                                f"operations are {', '.join(self.ops)}")

    def depth(self, arch: Arch) -> int:
        """Cells plus the two residual blocks of the built network (17 by default)."""
        return 3 * int(self.build_defaults["cells_per_stage"]) + 2

    @staticmethod
    def cell_depth(arch: Arch) -> int:
        """Longest path of parametrised ops (convolutions) from input to output of the cell.

        Paths may pass through skip/pool edges (which add no depth); 0 when every path from
        input to output goes through 'none' or no path has a conv.
        """
        nodes = nodes_of(len(arch))
        best: list[int | None] = [0] + [None] * (nodes - 1)
        for (j, i), label in zip(cell_edges(nodes), edge_labels(nodes)):
            op = arch[label]
            if op == "none" or best[i] is None:
                continue
            value = best[i] + (0 if op in _PARAMETER_FREE else 1)
            best[j] = value if best[j] is None else max(best[j], value)
        return best[-1] or 0

    # -- string form and index -------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        return _ops_to_string(arch_ops(arch))

    def parse(self, text: str) -> Arch:
        return self.validate(arch_from_ops(_parse_ops(text, self.ops, self.nodes), self.ops,
                                           self.nodes))

    def index(self, arch: Arch | str) -> int:
        """The benchmark index (0..15624) of an Arch or string (benchmark op set only)."""
        self._require_benchmark("the NAS-Bench-201 index")
        if isinstance(arch, Arch):
            self.validate(arch)
        return arch_index(arch)

    def from_index(self, index: int) -> Arch:
        """The Arch with benchmark index ``index`` (benchmark op set only)."""
        self._require_benchmark("the NAS-Bench-201 index")
        return arch_from_index(index)

    # -- sampling --------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Arch:
        return arch_from_ops([rng.choice(self.ops) for _ in self.edges], self.ops, self.nodes)

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """Change the op of one uniformly chosen edge to one of the other ops."""
        self.validate(arch)
        label = rng.choice(self.edges)
        return arch.replace(**{label: rng.choice([op for op in self.ops if op != arch[label]])})

    # -- categorical view ------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """One decision per edge (in :data:`EDGES` order) over the space's ops."""
        return [(label, self.ops) for label in self.edges]

    def encode(self, arch: Arch) -> list[int]:
        self.validate(arch)
        return [self.ops.index(arch[label]) for label in self.edges]

    def decode(self, indices: Sequence[int]) -> Arch:
        if len(indices) != len(self.edges):
            raise ArchError(f"expected {len(self.edges)} decision indices, got {len(indices)}")
        for label, i in zip(self.edges, indices):
            if not 0 <= int(i) < len(self.ops):
                raise ArchError(f"edge {label}: op index {i} out of range "
                                f"0..{len(self.ops) - 1}")
        return arch_from_ops([self.ops[int(i)] for i in indices], self.ops, self.nodes)

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> NB201Network:
        self.validate(arch)
        unknown = set(kwargs) - set(self.build_defaults)
        if unknown:
            raise TypeError(f"unknown build options {sorted(unknown)}; NB201 takes "
                            f"{sorted(self.build_defaults)}")
        return NB201Network(arch, **{**self.build_defaults, **kwargs})

    def supernet(self, **kwargs: Any) -> NB201Supernet:
        """The weight-sharing network (:class:`NB201Supernet`, non-affine batch-norm with
        batch statistics, as the benchmark's one-shot searches); ``kwargs`` override the
        build defaults."""
        net = NB201Supernet(**{**self.build_defaults, "ops": self.ops, "nodes": self.nodes,
                               **kwargs})
        net.space = self
        return net

    def extract(self, supernet: NB201Supernet, arch: Arch) -> tuple[NB201Network, list[str]]:
        """Standalone network for ``arch`` with weights from ``supernet`` (see
        :func:`extract_subnet`)."""
        self.validate(arch)
        return extract_subnet(supernet, arch)
