"""A search space written as data: a list of stages, each with its choices, no class to write.

A network is a stem (3x3 conv + BN + ReLU to ``stem_channels``), then per stage a
*transition* (3x3 conv with the stage's ``stride`` + BN + ReLU to the chosen ``width``) and
``depth`` shape-keeping blocks, then global average pooling and a linear classifier. A block
sums its *branches* (parallel paths; one by default); each branch is one op of the operation
registry (:mod:`lightning_nas.spaces.registry`) chosen from its list, and a block may add its
input (``skip`` choice, a residual connection). So every choice keeps the shapes consistent:
the transition changes width and resolution, blocks keep them (checked at construction).

YAML (``space.init_args``)::

    stem_channels: 8
    stages:
      - {name: s1, depth: [1, 2], width: [8, 16], stride: 1,
         ops: [sep_conv_3x3, mbconv_3x3_e3, skip_connect], skip: [false, true]}
      - {name: s2, depth: 2, width: [16, 24], stride: 2,
         branches: [[sep_conv_3x3, self_attention], [none, squeeze_excite]]}

As an :class:`Arch`: ``{"s1.depth": 2, "s1.width": 16, "s1.block0.op": "sep_conv_3x3",
"s1.block0.skip": true, ...}``; blocks beyond the chosen depth are not part of it (one
network, one Arch). Branch choices are ``<stage>.block<i>.branch<b>``. The string form is
``s1:d2:w16:sep_conv_3x3+,skip_connect | s2:d2:w24:sep_conv_3x3&none,...`` (``&`` joins
branches, a trailing ``+`` marks a residual block).

The weight-sharing supernet (:class:`DeclarativeSupernet`, one path per step: SPOS / ENAS's
interface) holds one transition per width and one module per (op, width) for every block and
branch, so paths share the weights of the same op at the same width; ``subnet(arch)`` copies
them into the standalone network, which then computes the same function.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.registry import ZERO_OP, build_op, op_entries, resolve_ops
from lightning_nas.spaces.supernet import Decision

_STAGE_KEYS = {"name", "depth", "width", "stride", "ops", "branches", "skip"}
_PROBE = 8  # side of the probe input for the shape check


def _choices(value: Any, field: str, kind: type, check=lambda v: True, what: str = ""
             ) -> tuple[Any, ...]:
    """A scalar or a list of choices as a non-empty tuple of distinct ``kind`` values."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{field} must be a value or a list of distinct choices, got {value!r}")
    for v in values:
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)) or not check(v):
            raise ValueError(f"{field}: {v!r} is not {what or kind.__name__}")
    return tuple(values)


def stage_fields(stage: Any, index: int, spec: Any, keys: set[str]) -> str:
    """Check the fields every stage-list space shares and set ``stage.name``, ``.depth``,
    ``.width`` (choice tuples) and ``.stride``; returns ``"stages[i]"`` for error messages."""
    where = f"stages[{index}]"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a mapping of {sorted(keys)}, got {spec!r}")
    unknown = set(spec) - keys
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; a stage has "
                         f"{sorted(keys)}")
    stage.name = str(spec.get("name", f"stage{index}"))
    if not stage.name.isidentifier():
        raise ValueError(f"{where}.name must be an identifier, got {stage.name!r}")
    stage.depth = _choices(spec.get("depth", 1), f"{where}.depth", int, lambda v: v >= 1,
                           "a block count >= 1")
    stage.width = _choices(spec.get("width"), f"{where}.width", int, lambda v: v >= 1,
                           "a channel count >= 1")
    stride = spec.get("stride", 1)
    if stride not in (1, 2) or isinstance(stride, bool):
        raise ValueError(f"{where}.stride must be 1 or 2, got {stride!r}")
    stage.stride = int(stride)
    return where


class _Stage:
    """One stage's choices, checked (errors name ``stages[i].<field>``)."""

    def __init__(self, index: int, spec: Mapping[str, Any]):
        where = stage_fields(self, index, spec, _STAGE_KEYS)
        if ("ops" in spec) == ("branches" in spec):
            raise ValueError(f"{where}: give either ops (one path per block) or branches "
                             "(parallel paths, each a list of ops)")
        lists = [spec["ops"]] if "ops" in spec else spec["branches"]
        if not isinstance(lists, (list, tuple)) or not lists:
            raise ValueError(f"{where}.branches must be a non-empty list of op lists")
        field = f"{where}.ops" if "ops" in spec else None
        self.branches = tuple(resolve_ops(ops, field_name=field or f"{where}.branches[{b}]")
                              for b, ops in enumerate(lists))
        if all(set(ops) == {ZERO_OP} for ops in self.branches):
            raise ValueError(f"{where}: every branch is 'none' only; the blocks would output "
                             "zeros")
        self.skip = _choices(spec.get("skip", False), f"{where}.skip", bool)
        self.spec = dict(spec)

    def labels(self, block: int) -> list[str]:
        base = f"{self.name}.block{block}"
        ops = [f"{base}.op"] if len(self.branches) == 1 else [
            f"{base}.branch{b}" for b in range(len(self.branches))]
        return ops + [f"{base}.skip"]

    def config(self) -> dict[str, Any]:
        out = {k: v for k, v in self.spec.items() if k not in ("ops", "branches")}
        lists = [op_entries(ops) for ops in self.branches]
        return {**out, **({"ops": lists[0]} if "ops" in self.spec else {"branches": lists})}


def _check_shape(stage: _Stage, index: int) -> None:
    """Every op of every branch keeps (B, width, H, W) at every width (a probe input), with
    a clear error naming the field otherwise (e.g. attention heads vs channels)."""
    for b, ops in enumerate(stage.branches):
        field = (f"stages[{index}].ops" if "ops" in stage.spec
                 else f"stages[{index}].branches[{b}]")
        for k, op in enumerate(ops):
            for w in stage.width:
                try:
                    module = build_op(op, w, w, 1)
                    with torch.no_grad():
                        out = module.eval()(torch.zeros(2, w, _PROBE, _PROBE))
                except Exception as err:  # the op's own words, with where it was asked for
                    raise ValueError(f"{field}[{k}] {op!r} at width {w}: {err}") from None
                if tuple(out.shape) != (2, w, _PROBE, _PROBE):
                    raise ValueError(f"{field}[{k}] {op!r} changes the shape (2, {w}, {_PROBE}, "
                                     f"{_PROBE}) -> {tuple(out.shape)}; a block's branches keep "
                                     "width and resolution (the stage's transition changes "
                                     "them)")


def _transition(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=False))


class Block(nn.Module):
    """Sum of branch ops (B, C, H, W) -> (B, C, H, W), plus the input when ``skip``."""

    def __init__(self, branches: Sequence[nn.Module], skip: bool):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = sum(branch(x) for branch in self.branches)
        return x + out if self.skip else out


class DeclarativeNetwork(nn.Module):
    """The standalone network of one architecture: (B, C_in, H, W) -> logits (B, classes)."""

    def __init__(self, space: DeclarativeSpace, arch: Arch, *, num_classes: int,
                 in_channels: int):
        super().__init__()
        c = space.stem_channels
        self.stem = _transition(in_channels, c, 1)
        self.stages = nn.ModuleList()
        for stage in space.stages:
            width = arch[f"{stage.name}.width"]
            blocks = [Block([build_op(op, width, width, 1) for op in space.block_ops(arch, stage,
                                                                                     i)],
                            arch[f"{stage.name}.block{i}.skip"])
                      for i in range(arch[f"{stage.name}.depth"])]
            self.stages.append(nn.ModuleDict({"transition": _transition(c, width, stage.stride),
                                              "blocks": nn.Sequential(*blocks)}))
            c = width
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage["blocks"](stage["transition"](x))
        return self.classifier(x.mean((2, 3)))  # global average pool -> (B, C)


class OptionalDecisions:
    """``sample``, ``mutate``, ``encode``, ``decode`` and ``depth`` of a stage-list space
    whose Arch holds a subset of its ``decisions()`` (blocks beyond the chosen depth, fields
    of the block type not chosen are absent) and whose ``arch_of(choices)`` keeps the ones
    that apply."""

    def depth(self, arch: Arch) -> int:
        """Layers of the built network: stem, transitions and blocks."""
        return 1 + sum(1 + arch[f"{s.name}.depth"] for s in self.stages)

    def sample(self, rng: random.Random) -> Arch:
        return self.arch_of({label: rng.choice(options) for label, options in self.decisions()})

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """Change one decision of ``arch`` to another of its options; decisions the change
        brings in (a deeper stage's blocks, another block type's fields) are sampled."""
        self.validate(arch)
        options = dict(self.decisions())
        candidates = [k for k in arch if len(options[k]) > 1]
        if not candidates:
            raise ArchError(f"the {self.name!r} space has one architecture: nothing to mutate")
        label = rng.choice(candidates)
        choices = {k: arch.get(k, rng.choice(v)) for k, v in options.items()}
        choices[label] = rng.choice([v for v in options[label] if v != arch[label]])
        return self.arch_of(choices)

    def encode(self, arch: Arch) -> list[int]:
        """One index per decision; 0 for a decision ``arch`` does not hold."""
        self.validate(arch)
        return [options.index(arch[label]) if label in arch else 0
                for label, options in self.decisions()]

    def decode(self, indices: Sequence[int]) -> Arch:
        decisions = self.decisions()
        if len(indices) != len(decisions):
            raise ArchError(f"expected {len(decisions)} decision indices, got {len(indices)}")
        return self.arch_of({label: options[int(i)]
                             for (label, options), i in zip(decisions, indices)})


class DeclarativeSpace(OptionalDecisions, SearchSpace):
    """A space from a YAML list of stages (module docstring).

    Args:
        stages: per stage ``name``, ``depth`` (choices of block counts), ``width`` (output
            channel choices), ``stride`` (1 or 2, of the transition), ``ops`` (one op list:
            each block chooses one) or ``branches`` (a list of op lists: each block chooses
            one op per branch and sums them), ``skip`` (choices of a residual connection).
        name: the space name written into every Arch (keeps archs of different declarative
            spaces apart).
        stem_channels: channels of the stem conv.
        num_classes, in_channels: build defaults.
        constraints: limits enforced by :meth:`validate`.
    """

    def __init__(self, *, stages: list[dict[str, Any]], name: str = "declarative",
                 stem_channels: int = 16, num_classes: int = 10, in_channels: int = 3,
                 constraints: Constraints | None = None):
        super().__init__(constraints)
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError("stages must be a non-empty list of stage mappings")
        if stem_channels < 1:
            raise ValueError(f"stem_channels must be >= 1, got {stem_channels}")
        self.name = name
        self.stem_channels = int(stem_channels)
        self.stages = [_Stage(i, spec) for i, spec in enumerate(stages)]
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be distinct, got {names}")
        for i, stage in enumerate(self.stages):
            _check_shape(stage, i)
        self.build_defaults = {"num_classes": num_classes, "in_channels": in_channels}

    def config(self) -> dict[str, Any]:
        limits = self.constraints
        return {"stages": [s.config() for s in self.stages], "name": self.name,
                "stem_channels": self.stem_channels, **self.build_defaults,
                "constraints": None if limits == Constraints() else
                {"max_params": limits.max_params, "max_layers": limits.max_layers}}

    # -- the decisions ----------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Per stage: depth, width, then per block (up to the largest depth) its branch ops
        and skip. Blocks past an arch's depth are not part of it (encoded as option 0)."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        for stage in self.stages:
            out += [(f"{stage.name}.depth", stage.depth), (f"{stage.name}.width", stage.width)]
            for i in range(max(stage.depth)):
                *ops, skip = stage.labels(i)
                out += [(label, branch) for label, branch in zip(ops, stage.branches)]
                out.append((skip, stage.skip))
        return out

    def block_ops(self, arch: Arch, stage: _Stage, i: int) -> list[str]:
        return [arch[label] for label in stage.labels(i)[:-1]]

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        """The Arch of a full set of choices (blocks past each stage's depth dropped)."""
        values: dict[str, Any] = {}
        for stage in self.stages:
            depth = choices[f"{stage.name}.depth"]
            values[f"{stage.name}.depth"] = depth
            values[f"{stage.name}.width"] = choices[f"{stage.name}.width"]
            for i in range(depth):
                for label in stage.labels(i):
                    values[label] = choices[label]
        return Arch(self.name, values)

    # -- membership, strings -----------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        options = dict(self.decisions())
        expected = set()
        for stage in self.stages:
            depth = arch.get(f"{stage.name}.depth")
            if depth not in stage.depth:
                raise ArchError(f"{stage.name}.depth: {depth!r} is not one of {list(stage.depth)}")
            expected |= {f"{stage.name}.depth", f"{stage.name}.width"}
            expected |= {label for i in range(depth) for label in stage.labels(i)}
        if set(arch) != expected:
            raise ArchError(f"labels {sorted(set(arch) ^ expected)} are missing or not part of "
                            "this architecture (blocks past a stage's depth are left out)")
        for label in arch:
            if arch[label] not in options[label]:
                raise ArchError(f"{label}: {arch[label]!r} is not one of {list(options[label])}")

    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        parts = []
        for stage in self.stages:
            depth = arch[f"{stage.name}.depth"]
            blocks = ["&".join(self.block_ops(arch, stage, i))
                      + ("+" if arch[f"{stage.name}.block{i}.skip"] else "")
                      for i in range(depth)]
            parts.append(f"{stage.name}:d{depth}:w{arch[f'{stage.name}.width']}:"
                         + ",".join(blocks))
        return " | ".join(parts)

    def parse(self, text: str) -> Arch:
        parts = [p.strip() for p in str(text).split("|")]
        if len(parts) != len(self.stages):
            raise ArchError(f"expected {len(self.stages)} stages joined by ' | ', got "
                            f"{len(parts)} in {text!r}")
        values: dict[str, Any] = {}
        for stage, part in zip(self.stages, parts):
            try:
                name, depth, width, blocks = part.split(":", 3)
                depth, width = int(depth.removeprefix("d")), int(width.removeprefix("w"))
            except ValueError:
                raise ArchError(f"stage {part!r} must read name:d<depth>:w<width>:ops,...; "
                                f"e.g. {stage.name}:d1:w{stage.width[0]}:"
                                f"{stage.branches[0][0]}") from None
            if name != stage.name:
                raise ArchError(f"expected stage {stage.name!r}, got {name!r}")
            values[f"{name}.depth"], values[f"{name}.width"] = depth, width
            items = blocks.split(",")
            if len(items) != depth:
                raise ArchError(f"stage {name}: depth {depth} but {len(items)} blocks")
            for i, item in enumerate(items):
                *labels, skip = stage.labels(i)
                ops = item.removesuffix("+").split("&")
                if len(ops) != len(labels):
                    raise ArchError(f"{name}.block{i}: {len(labels)} branch(es), got {item!r}")
                values.update(zip(labels, ops))
                values[skip] = item.endswith("+")
        return self.validate(Arch(self.name, values))

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> DeclarativeNetwork:
        self.validate(arch)
        return DeclarativeNetwork(self, arch, **{**self.build_defaults, **kwargs})

    def supernet(self, **kwargs: Any) -> DeclarativeSupernet:
        kwargs.pop("channels", None)  # widths are choices of the space
        return DeclarativeSupernet(self, **{**self.build_defaults, **kwargs})


class DeclarativeSupernet(nn.Module):
    """One-path weight sharing over a :class:`DeclarativeSpace` (SPOS / ENAS interface).

    Holds a transition per (stage, width), a module per (stage, block, branch, op, width) and
    a classifier per last-stage width; ``forward_path(x, arch)`` runs only ``arch``'s modules
    (B, C_in, H, W) -> (B, classes).
    """

    def __init__(self, space: DeclarativeSpace, *, num_classes: int, in_channels: int):
        super().__init__()
        self.space = space
        c = space.stem_channels
        self.stem = _transition(in_channels, c, 1)
        self.stages = nn.ModuleList()
        inputs = (c,)
        for stage in space.stages:
            blocks = nn.ModuleList(
                nn.ModuleList(nn.ModuleDict({f"{op}_w{w}": build_op(op, w, w, 1)
                                             for op in ops for w in stage.width})
                              for ops in stage.branches)
                for _ in range(max(stage.depth)))
            self.stages.append(nn.ModuleDict({
                "transition": nn.ModuleDict({f"c{c_in}_w{w}": _transition(c_in, w, stage.stride)
                                             for c_in in inputs for w in stage.width}),
                "blocks": blocks}))
            inputs = stage.width
        self.classifier = nn.ModuleDict({f"w{w}": nn.Linear(w, num_classes) for w in inputs})

    def decisions(self) -> list[Decision]:
        return [Decision(label, options) for label, options in self.space.decisions()]

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        return self.space.arch_of(choices)

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        """Every decision's value (blocks past the depth: their first option)."""
        self.space.validate(arch)
        return {label: arch.get(label, options[0]) for label, options in self.space.decisions()}

    def _modules_of(self, arch: Arch):
        """(stem, [(transition, [(branch modules, skip)])], classifier) of ``arch``."""
        c = self.space.stem_channels
        stages = []
        for stage, modules in zip(self.space.stages, self.stages):
            w = arch[f"{stage.name}.width"]
            blocks = [([modules["blocks"][i][b][f"{op}_w{w}"]
                        for b, op in enumerate(self.space.block_ops(arch, stage, i))],
                       arch[f"{stage.name}.block{i}.skip"])
                      for i in range(arch[f"{stage.name}.depth"])]
            stages.append((modules["transition"][f"c{c}_w{w}"], blocks))
            c = w
        return self.stem, stages, self.classifier[f"w{c}"]

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        self.space.validate(arch)
        stem, stages, classifier = self._modules_of(arch)
        x = stem(x)
        for transition, blocks in stages:
            x = transition(x)
            for branches, skip in blocks:
                out = sum(branch(x) for branch in branches)
                x = x + out if skip else out
        return classifier(x.mean((2, 3)))

    def subnet(self, arch: Arch) -> DeclarativeNetwork:
        """The standalone network of ``arch`` holding copies of this supernet's weights (and
        batch-norm statistics): the same function as ``forward_path(x, arch)``."""
        net = self.space.build(arch, num_classes=self.classifier[next(iter(self.classifier))]
                               .out_features, in_channels=self.stem[0].in_channels)
        stem, stages, classifier = self._modules_of(arch)
        net.stem.load_state_dict(stem.state_dict())
        for target, (transition, blocks) in zip(net.stages, stages):
            target["transition"].load_state_dict(transition.state_dict())
            for block, (branches, _) in zip(target["blocks"], blocks):
                for mine, theirs in zip(block.branches, branches):
                    mine.load_state_dict(theirs.state_dict())
        net.classifier.load_state_dict(classifier.state_dict())
        return net.to(next(self.parameters()).device)
