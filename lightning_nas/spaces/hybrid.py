"""A hybrid convolution-attention space whose supernet entangles weights (AutoFormer-style).

A network is a conv stem (3x3 conv + BN + ReLU to ``stem_channels``, stride ``stem_stride``),
then per stage a *transition* (3x3 conv with the stage's ``stride`` + BN + ReLU to the chosen
``width``, the stage's embedding width) and ``depth`` residual blocks that keep the shape,
each of a chosen type:

* ``mbconv``: an inverted bottleneck ``x + BN(W_p act(BN(dw_k act(BN(W_e x)))))`` with a
  chosen depthwise ``kernel`` and ``expand`` ratio (hidden width ``round(C * expand)``; Sandler
  et al. 2018, Table 1, without the stride-2 form: the transition reduces);
* ``transformer``: a pre-norm vision-transformer block on the H*W tokens (Dosovitskiy et al.
  2021, Eq. 2-3): ``t + proj(MHSA(LN(t)))``, ``t + fc2(GELU(fc1(LN(t))))`` with a chosen
  number of ``heads`` (head size ``C / heads``: heads must divide every width of the stage) and
  ``mlp_ratio`` (hidden width ``round(C * mlp_ratio)``); the attention adds a learned relative
  position bias per head (as :class:`~lightning_nas.spaces.attention.SelfAttentionOp`).

then global average pooling and a linear classifier. YAML (``space.init_args``)::

    stem_channels: 16
    stem_stride: 2
    stages:
      - {name: s1, depth: [1, 2], width: [16, 24], stride: 1, blocks: [mbconv],
         kernel: [3, 5], expand: [2, 4]}
      - {name: s2, depth: [1, 2], width: [32, 48], stride: 2, blocks: [mbconv, transformer],
         kernel: [3], expand: [2, 4], heads: [2, 4], mlp_ratio: [2, 4]}

As an :class:`Arch`: ``{"s1.depth": 2, "s1.width": 24, "s1.block0.type": "mbconv",
"s1.block0.kernel": 5, "s1.block0.expand": 4, "s2.block0.type": "transformer",
"s2.block0.heads": 4, "s2.block0.mlp_ratio": 2, ...}``: a block has the fields of its type
only, and blocks past the stage's depth are left out (one network, one Arch). String form:
``s1:d2:w24:mb_k5_e4,mb_k3_e2 | s2:d1:w48:vit_h4_r2``.

**Weight entanglement** (:class:`HybridSupernet`; Chen et al., "AutoFormer", ICCV 2021,
Sec. 3.1): each block position holds ONE largest MBConv and ONE largest transformer block
(the stage's largest width, kernel, expand ratio, heads, MLP ratio); a smaller choice uses
the leading slices of the big weights: the first ``C`` rows/columns of the q, k, v,
projection and MLP matrices and of the LayerNorm / batch-norm / bias vectors, the first
``heads`` columns of the position-bias table, the first ``hidden`` MLP / expansion channels,
and the centre ``k x k`` of the largest depthwise kernel (Once-for-All's elastic kernel
without its transformation matrices). The transitions and the classifier are sliced the
same way. So every path trains the weights it shares with every other path;
``subnet(arch)`` copies the slices into the standalone network, which computes the same
function as ``forward_path(x, arch)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lightning_nas.spaces.attention import RelativePositionBias
from lightning_nas.spaces.base import Arch, ArchError, Constraints, SearchSpace
from lightning_nas.spaces.declarative import OptionalDecisions, _choices, stage_fields
from lightning_nas.spaces.supernet import Decision

BLOCK_TYPES = ("mbconv", "transformer")
_FIELDS = {"mbconv": ("kernel", "expand"), "transformer": ("heads", "mlp_ratio")}
_DEFAULTS = {"kernel": [3], "expand": [4], "heads": [2], "mlp_ratio": [2]}
_STAGE_KEYS = {"name", "depth", "width", "stride", "blocks", *_DEFAULTS}
_TAGS = {"mbconv": ("mb", "k", "e"), "transformer": ("vit", "h", "r")}


def hidden_width(channels: int, ratio: float) -> int:
    """Hidden channels of an MBConv expansion or a transformer MLP: ``round(C * ratio)``."""
    return max(1, round(channels * ratio))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


class _Stage:
    """One stage's choices, checked (errors name ``stages[i].<field>``)."""

    def __init__(self, index: int, spec: Mapping[str, Any]):
        where = stage_fields(self, index, spec, _STAGE_KEYS)
        blocks = spec.get("blocks", ["mbconv"])
        if isinstance(blocks, (list, tuple)):
            for k, kind in enumerate(blocks):
                if kind not in BLOCK_TYPES:
                    raise ValueError(f"{where}.blocks[{k}]: unknown block type {kind!r}; the "
                                     f"block types are {list(BLOCK_TYPES)}")
        self.blocks = _choices(blocks, f"{where}.blocks", str, lambda v: v in BLOCK_TYPES,
                               f"one of {list(BLOCK_TYPES)}")
        for field in ("kernel", "expand", "heads", "mlp_ratio"):
            kind = next(k for k, fields in _FIELDS.items() if field in fields)
            if field in spec and kind not in self.blocks:
                raise ValueError(f"{where}.{field} applies to {kind} blocks, which "
                                 f"{where}.blocks {list(self.blocks)} does not list")
        self.kernel = _choices(spec.get("kernel", _DEFAULTS["kernel"]), f"{where}.kernel", int,
                               lambda v: v >= 1 and v % 2 == 1, "an odd kernel size >= 1")
        self.expand = _choices(spec.get("expand", _DEFAULTS["expand"]), f"{where}.expand",
                               (int, float), _number, "a positive expand ratio")
        self.heads = _choices(spec.get("heads", _DEFAULTS["heads"]), f"{where}.heads", int,
                              lambda v: v >= 1, "a head count >= 1")
        self.mlp_ratio = _choices(spec.get("mlp_ratio", _DEFAULTS["mlp_ratio"]),
                                  f"{where}.mlp_ratio", (int, float), _number,
                                  "a positive MLP ratio")
        if "transformer" in self.blocks:
            for h in self.heads:
                for w in self.width:
                    if w % h:
                        raise ValueError(
                            f"{where}.heads: {h} heads do not divide the embedding width {w} "
                            f"({where}.width {list(self.width)}); every head count must divide "
                            "every width of the stage (head size = width / heads)")
        self.spec = dict(spec)

    def options(self, field: str) -> tuple[Any, ...]:
        return getattr(self, field)

    def block_labels(self, i: int) -> list[tuple[str, str | None]]:
        """``(label, field)`` of block ``i``'s decisions: its type, then each type's fields."""
        base = f"{self.name}.block{i}"
        out: list[tuple[str, str | None]] = [(f"{base}.type", None)]
        for kind in self.blocks:
            out += [(f"{base}.{field}", field) for field in _FIELDS[kind]]
        return out

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "depth": list(self.depth),
                               "width": list(self.width), "stride": self.stride,
                               "blocks": list(self.blocks)}
        for kind in self.blocks:
            out.update({f: list(getattr(self, f)) for f in _FIELDS[kind]})
        return out


def _format(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


class HybridSpace(OptionalDecisions, SearchSpace):
    """Conv-stem / vision-transformer hybrid networks, each block MBConv or attention
    (module docstring).

    Args:
        stages: per stage ``name``, ``depth`` (block count choices), ``width`` (embedding
            width choices), ``stride`` (1 or 2, of the transition), ``blocks`` (the block
            types to choose from: ``mbconv``, ``transformer``), ``kernel`` and ``expand``
            (MBConv choices), ``heads`` and ``mlp_ratio`` (transformer choices; heads must
            divide every width).
        name: the space name written into every Arch.
        stem_channels: channels of the stem conv; ``stem_stride``: its stride (1 or 2).
        max_distance: the relative position bias's clipping distance (pixels).
        num_classes, in_channels: build defaults.
        constraints: limits enforced by :meth:`validate`.
    """

    def __init__(self, *, stages: list[dict[str, Any]], name: str = "hybrid",
                 stem_channels: int = 16, stem_stride: int = 1, max_distance: int = 7,
                 num_classes: int = 10, in_channels: int = 3,
                 constraints: Constraints | None = None):
        super().__init__(constraints)
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError("stages must be a non-empty list of stage mappings")
        if isinstance(stem_channels, bool) or not isinstance(stem_channels, int) \
                or stem_channels < 1:
            raise ValueError(f"stem_channels must be an integer >= 1, got {stem_channels!r}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {max_distance}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.stem_channels, self.stem_stride = int(stem_channels), int(stem_stride)
        self.max_distance = int(max_distance)
        self.stages = [_Stage(i, spec) for i, spec in enumerate(stages)]
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be distinct, got {names}")
        self.build_defaults = {"num_classes": num_classes, "in_channels": in_channels}

    def config(self) -> dict[str, Any]:
        limits = self.constraints
        return {"stages": [s.config() for s in self.stages], "name": self.name,
                "stem_channels": self.stem_channels, "stem_stride": self.stem_stride,
                "max_distance": self.max_distance, **self.build_defaults,
                "constraints": None if limits == Constraints() else
                {"max_params": limits.max_params, "max_layers": limits.max_layers}}

    # -- the decisions ----------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Per stage: depth, width, then per block (up to the largest depth) its type and
        every type's fields. Blocks past an arch's depth and the fields of the other block
        type are not part of it (encoded as option 0)."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        for stage in self.stages:
            out += [(f"{stage.name}.depth", stage.depth), (f"{stage.name}.width", stage.width)]
            for i in range(max(stage.depth)):
                out += [(label, stage.blocks if field is None else stage.options(field))
                        for label, field in stage.block_labels(i)]
        return out

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        """The Arch of a full set of choices (blocks past each depth and the other type's
        fields dropped)."""
        values: dict[str, Any] = {}
        for stage in self.stages:
            depth = choices[f"{stage.name}.depth"]
            values[f"{stage.name}.depth"] = depth
            values[f"{stage.name}.width"] = choices[f"{stage.name}.width"]
            for i in range(depth):
                base = f"{stage.name}.block{i}"
                kind = values[f"{base}.type"] = choices[f"{base}.type"]
                for field in _FIELDS.get(kind, ()):
                    values[f"{base}.{field}"] = choices[f"{base}.{field}"]
        return Arch(self.name, values)

    def blocks_of(self, arch: Arch) -> list[list[tuple[str, dict[str, Any]]]]:
        """Per stage the ``(type, {field: value})`` of each block of ``arch``."""
        return [[(arch[f"{s.name}.block{i}.type"],
                  {f: arch[f"{s.name}.block{i}.{f}"]
                   for f in _FIELDS[arch[f"{s.name}.block{i}.type"]]})
                 for i in range(arch[f"{s.name}.depth"])] for s in self.stages]

    def attention_blocks(self, arch: Arch) -> int:
        """How many transformer blocks ``arch`` has (0: a convolution-only network)."""
        return sum(kind == "transformer" for blocks in self.blocks_of(arch)
                   for kind, _ in blocks)

    # -- membership, strings -----------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        options = dict(self.decisions())
        for stage in self.stages:
            for label in (f"{stage.name}.depth", f"{stage.name}.width"):
                if arch.get(label) not in options[label]:
                    raise ArchError(f"{label}: {arch.get(label)!r} is not one of "
                                    f"{list(options[label])}")
            for i in range(arch[f"{stage.name}.depth"]):
                label = f"{stage.name}.block{i}.type"
                if arch.get(label) not in stage.blocks:
                    raise ArchError(f"{label}: {arch.get(label)!r} is not one of "
                                    f"{list(stage.blocks)}")
        expected = set(self.arch_of({k: arch.get(k, v[0]) for k, v in options.items()}))
        if set(arch) != expected:
            raise ArchError(f"labels {sorted(set(arch) ^ expected)} are missing or not part of "
                            "this architecture (a block has its type's fields only; blocks "
                            "past a stage's depth are left out)")
        for label in arch:
            if arch[label] not in options[label]:
                raise ArchError(f"{label}: {arch[label]!r} is not one of {list(options[label])}")

    def to_string(self, arch: Arch) -> str:
        self.validate(arch)
        parts = []
        for stage, blocks in zip(self.stages, self.blocks_of(arch)):
            items = []
            for kind, fields in blocks:
                tag, *letters = _TAGS[kind]
                items.append("_".join([tag] + [f"{letter}{_format(fields[f])}" for letter, f
                                               in zip(letters, _FIELDS[kind])]))
            parts.append(f"{stage.name}:d{len(blocks)}:w{arch[f'{stage.name}.width']}:"
                         + ",".join(items))
        return " | ".join(parts)

    def parse(self, text: str) -> Arch:
        parts = [p.strip() for p in str(text).split("|")]
        if len(parts) != len(self.stages):
            raise ArchError(f"expected {len(self.stages)} stages joined by ' | ', got "
                            f"{len(parts)} in {text!r}")
        values: dict[str, Any] = {}
        by_tag = {tag: kind for kind, (tag, *_) in _TAGS.items()}
        for stage, part in zip(self.stages, parts):
            try:
                name, depth, width, blocks = part.split(":", 3)
                depth, width = int(depth.removeprefix("d")), int(width.removeprefix("w"))
            except ValueError:
                raise ArchError(f"stage {part!r} must read name:d<depth>:w<width>:blocks; e.g. "
                                f"{stage.name}:d1:w{stage.width[0]}:mb_k3_e4") from None
            if name != stage.name:
                raise ArchError(f"expected stage {stage.name!r}, got {name!r}")
            values[f"{name}.depth"], values[f"{name}.width"] = depth, width
            items = [b.strip() for b in blocks.split(",")]
            if len(items) != depth:
                raise ArchError(f"stage {name}: depth {depth} but {len(items)} blocks")
            for i, item in enumerate(items):
                tag, *fields = item.split("_")
                kind = by_tag.get(tag)
                if kind is None or len(fields) != 2:
                    raise ArchError(f"{name}.block{i}: {item!r} is not mb_k<kernel>_e<expand> "
                                    "or vit_h<heads>_r<mlp ratio>")
                values[f"{name}.block{i}.type"] = kind
                for field, letter, text_value in zip(_FIELDS[kind], _TAGS[kind][1:], fields):
                    if not text_value.startswith(letter):
                        raise ArchError(f"{name}.block{i}: {item!r}: expected {letter}<{field}>")
                    try:
                        number = float(text_value[1:])
                    except ValueError:
                        raise ArchError(f"{name}.block{i}.{field}: {text_value[1:]!r} is not a "
                                        "number") from None
                    # the option itself (4 and 4.0 are the same choice)
                    values[f"{name}.block{i}.{field}"] = next(
                        (o for o in stage.options(field) if o == number), number)
        return self.validate(Arch(self.name, values))

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Arch, **kwargs: Any) -> HybridNetwork:
        self.validate(arch)
        return HybridNetwork(self, arch, **{**self.build_defaults, **kwargs})

    def supernet(self, **kwargs: Any) -> HybridSupernet:
        kwargs.pop("channels", None)  # widths are choices of the space
        return HybridSupernet(self, **{**self.build_defaults, **kwargs})


# -- the standalone modules ------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    """k x k conv (no bias) + BN + ReLU: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class MBConvBlock(nn.Module):
    """Residual inverted bottleneck (B, C, H, W) -> (B, C, H, W): 1x1 expand to
    ``round(C * expand)`` + BN + ReLU6, k x k depthwise + BN + ReLU6, 1x1 project + BN."""

    def __init__(self, channels: int, kernel: int, expand: float):
        super().__init__()
        hidden = hidden_width(channels, expand)
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, kernel, 1, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        return x + self.bn3(self.project(y))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
               bias: torch.Tensor) -> torch.Tensor:
    """(B, N, C) queries, keys, values -> (B, N, C): ``heads`` heads of size C / heads,
    ``softmax(q k^T / sqrt(d) + bias) v`` with ``bias`` (heads, N, N)."""
    b, n, c = q.shape
    q, k, v = (t.reshape(b, n, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # (B, h, N, d)
    return out.transpose(1, 2).reshape(b, n, c)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on a feature map's tokens: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, heads: int, mlp_ratio: float, max_distance: int = 7):
        super().__init__()
        if channels % heads:
            raise ValueError(f"transformer block: heads={heads} must divide the width "
                             f"{channels}")
        self.heads = heads
        hidden = hidden_width(channels, mlp_ratio)
        self.norm1 = nn.LayerNorm(channels)
        self.q, self.k, self.v = (nn.Linear(channels, channels) for _ in range(3))
        self.proj = nn.Linear(channels, channels)
        self.position_bias = RelativePositionBias(heads, max_distance)
        self.norm2 = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C) tokens, row-major positions
        y = self.norm1(t)
        t = t + self.proj(_attention(self.q(y), self.k(y), self.v(y), self.heads,
                                     self.position_bias(h, w)))
        t = t + self.fc2(F.gelu(self.fc1(self.norm2(t))))
        return t.transpose(1, 2).reshape(b, c, h, w)


def _block(kind: str, channels: int, fields: Mapping[str, Any], max_distance: int
           ) -> nn.Module:
    if kind == "mbconv":
        return MBConvBlock(channels, fields["kernel"], fields["expand"])
    return TransformerBlock(channels, fields["heads"], fields["mlp_ratio"], max_distance)


class HybridNetwork(nn.Module):
    """The standalone network of one architecture: (B, C_in, H, W) -> logits (B, classes)."""

    def __init__(self, space: HybridSpace, arch: Arch, *, num_classes: int, in_channels: int):
        super().__init__()
        c = space.stem_channels
        self.stem = ConvBNReLU(in_channels, c, 3, space.stem_stride)
        self.stages = nn.ModuleList()
        for stage, blocks in zip(space.stages, space.blocks_of(arch)):
            width = arch[f"{stage.name}.width"]
            self.stages.append(nn.Sequential(
                ConvBNReLU(c, width, 3, stage.stride),
                *(_block(kind, width, fields, space.max_distance) for kind, fields in blocks)))
            c = width
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x.mean((2, 3)))  # global average pool -> (B, C)


# -- the entangled supernet ------------------------------------------------------------------
def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, c: int) -> torch.Tensor:
    """``bn`` on its first ``c`` channels (running statistics of those channels updated in
    place when training, as nn.BatchNorm2d does)."""
    if c == bn.num_features or getattr(bn, "accepts_fewer_channels", False):
        return bn(x)  # e.g. GlobalBatchNorm2d under DDP: statistics of all ranks, sliced
    training = bn.training or bn.running_mean is None
    momentum = bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    stats = (bn.running_mean[:c], bn.running_var[:c]) if bn.running_mean is not None \
        else (None, None)
    return F.batch_norm(x, *stats, bn.weight[:c], bn.bias[:c], training,
                        0.0 if momentum is None else momentum, bn.eps)


def _centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre ``kernel`` x ``kernel`` of a (C, 1, K, K) depthwise kernel."""
    start = (weight.shape[-1] - kernel) // 2
    return weight[..., start:start + kernel, start:start + kernel]


class ElasticConvBNReLU(ConvBNReLU):
    """The largest transition; ``forward(x, c_out)`` uses the first ``c_out`` filters of the
    first ``x.shape[1]`` input channels."""

    def forward(self, x: torch.Tensor,  # type: ignore[override]
                c_out: int | None = None) -> torch.Tensor:
        conv, bn = self[0], self[1]
        c_out = c_out or conv.out_channels
        y = F.conv2d(x, conv.weight[:c_out, : x.shape[1]], None, conv.stride, conv.padding)
        return F.relu(_bn(y, bn, c_out))


class ElasticMBConv(MBConvBlock):
    """The largest MBConv of a block position; ``forward(x, kernel, expand)`` on
    ``C = x.shape[1]`` channels uses the leading slices (centre of the depthwise kernel)."""

    def forward(self, x: torch.Tensor, kernel: int | None = None,  # type: ignore[override]
                expand: float | None = None) -> torch.Tensor:
        c = x.shape[1]
        hidden = self.expand.out_channels if expand is None else hidden_width(c, expand)
        kernel = kernel or self.dw.kernel_size[0]
        y = F.relu6(_bn(F.conv2d(x, self.expand.weight[:hidden, :c]), self.bn1, hidden))
        y = F.conv2d(y, _centre(self.dw.weight[:hidden], kernel), None, 1, kernel // 2, 1,
                     hidden)
        y = F.relu6(_bn(y, self.bn2, hidden))
        return x + _bn(F.conv2d(y, self.project.weight[:c, :hidden]), self.bn3, c)

    def extract(self, channels: int, kernel: int, expand: float) -> MBConvBlock:
        return _copy_slices(MBConvBlock(channels, kernel, expand), self, centre=("dw.weight",))


class ElasticTransformer(TransformerBlock):
    """The largest transformer block of a block position; ``forward(x, heads, mlp_ratio)``
    on ``C = x.shape[1]`` channels uses the leading slices of every matrix and vector and
    the first ``heads`` columns of the position-bias table (AutoFormer's entanglement)."""

    def forward(self, x: torch.Tensor, heads: int | None = None,  # type: ignore[override]
                mlp_ratio: float | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        heads = heads or self.heads
        hidden = self.fc1.out_features if mlp_ratio is None else hidden_width(c, mlp_ratio)

        def linear(layer: nn.Linear, t: torch.Tensor, rows: int) -> torch.Tensor:
            return F.linear(t, layer.weight[:rows, : t.shape[-1]], layer.bias[:rows])

        def norm(layer: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(t, (c,), layer.weight[:c], layer.bias[:c], layer.eps)

        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        y = norm(self.norm1, t)
        bias = self.position_bias(h, w)[:heads]  # (heads, N, N)
        t = t + linear(self.proj, _attention(linear(self.q, y, c), linear(self.k, y, c),
                                             linear(self.v, y, c), heads, bias), c)
        t = t + linear(self.fc2, F.gelu(linear(self.fc1, norm(self.norm2, t), hidden)), c)
        return t.transpose(1, 2).reshape(b, c, h, w)

    def extract(self, channels: int, heads: int, mlp_ratio: float) -> TransformerBlock:
        return _copy_slices(TransformerBlock(channels, heads, mlp_ratio,
                                             self.position_bias.max_distance), self)


def _copy_slices(small: nn.Module, big: nn.Module, centre: Sequence[str] = ()) -> nn.Module:
    """Load into ``small`` the leading slice of each of ``big``'s same-named tensors (the
    centre of the kernel for the names in ``centre``); returns ``small``."""
    theirs = big.state_dict()
    state = {}
    for name, mine in small.state_dict().items():
        t = theirs[name]
        if name in centre:
            t = _centre(t[: mine.shape[0]], mine.shape[-1])
        elif mine.dim():
            t = t[tuple(slice(0, s) for s in mine.shape)]
        state[name] = t.clone()
    small.load_state_dict(state)
    return small


class HybridSupernet(nn.Module):
    """One-path supernet over a :class:`HybridSpace` with entangled weights (SPOS / ENAS
    interface; module docstring). Per stage one transition of the largest width, per block
    position one largest :class:`ElasticMBConv` and one largest :class:`ElasticTransformer`
    (for the types the stage lists), one classifier of the last stage's largest width.
    ``forward_path(x, arch)``: (B, C_in, H, W) -> (B, classes) along ``arch``.
    """

    def __init__(self, space: HybridSpace, *, num_classes: int, in_channels: int):
        super().__init__()
        self.space = space
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        c = space.stem_channels
        self.stem = ConvBNReLU(in_channels, c, 3, space.stem_stride)
        self.stages = nn.ModuleList()
        for stage in space.stages:
            w = max(stage.width)
            block = {}
            if "mbconv" in stage.blocks:
                block["mbconv"] = lambda: ElasticMBConv(w, max(stage.kernel), max(stage.expand))
            if "transformer" in stage.blocks:
                block["transformer"] = lambda: ElasticTransformer(
                    w, max(stage.heads), max(stage.mlp_ratio), space.max_distance)
            self.stages.append(nn.ModuleDict({
                "transition": ElasticConvBNReLU(c, w, 3, stage.stride),
                "blocks": nn.ModuleList(nn.ModuleDict({k: make() for k, make in block.items()})
                                        for _ in range(max(stage.depth)))}))
            c = w
        self.classifier = nn.Linear(c, num_classes)

    def decisions(self) -> list[Decision]:
        return [Decision(label, options) for label, options in self.space.decisions()]

    def arch_of(self, choices: Mapping[str, Any]) -> Arch:
        return self.space.arch_of(choices)

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        """Every decision's value (blocks past the depth, other types' fields: option 0)."""
        self.space.validate(arch)
        return {label: arch.get(label, options[0]) for label, options in self.space.decisions()}

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        self.space.validate(arch)
        x = self.stem(x)
        for stage, modules, blocks in zip(self.space.stages, self.stages,
                                          self.space.blocks_of(arch)):
            x = modules["transition"](x, arch[f"{stage.name}.width"])
            for i, (kind, fields) in enumerate(blocks):
                x = modules["blocks"][i][kind](x, *fields.values())
        c = x.shape[1]
        return F.linear(x.mean((2, 3)), self.classifier.weight[:, :c], self.classifier.bias)

    def subnet(self, arch: Arch) -> HybridNetwork:
        """The standalone network of ``arch`` holding copies of the weight slices (and
        batch-norm statistics) it uses here: the same function as ``forward_path``."""
        net = self.space.build(arch, num_classes=self.num_classes, in_channels=self.in_channels)
        net.stem.load_state_dict(self.stem.state_dict())
        for target, modules, blocks in zip(net.stages, self.stages, self.space.blocks_of(arch)):
            _copy_slices(target[0], modules["transition"])
            for i, (kind, fields) in enumerate(blocks):
                big = modules["blocks"][i][kind]
                target[i + 1].load_state_dict(big.extract(target[0][0].out_channels,
                                                          *fields.values()).state_dict())
        _copy_slices(net.classifier, self.classifier)
        return net.to(self.classifier.weight.device)


__all__ = ["BLOCK_TYPES", "ElasticMBConv", "ElasticTransformer", "HybridNetwork", "HybridSpace",
           "HybridSupernet", "MBConvBlock", "TransformerBlock", "hidden_width"]
