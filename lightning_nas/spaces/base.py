"""Search-space core: `Arch` (an architecture as plain data) and the `SearchSpace` interface.

An architecture never is an ``nn.Module``: it is a frozen mapping from labels to JSON values
tagged with the name of the space it belongs to. It survives a JSON round trip, has a stable
content hash (for de-duplication in multi-trial search) and each space gives it a canonical
string form that parses back to the same value.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a long architecture string is not a valid file name
        return False


class ArchError(ValueError):
    """An architecture (string, JSON or value) that is malformed or not in the space.

    The message names the offending field and says what would be valid.
    """


def _freeze(value: Any, where: str) -> Any:
    """Turn lists into tuples recursively and refuse values JSON cannot carry."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    raise ArchError(
        f"architecture field {where!r} holds a {type(value).__name__}; only strings, numbers, "
        "booleans and (nested) lists of them are allowed"
    )


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Arch(Mapping[str, Any]):
    """An immutable architecture: ``space`` name plus a label -> value mapping.

    Values are JSON scalars or nested tuples of them (lists are frozen to tuples).
    Equality and hashing use the space name and the values, so two architectures with
    the same choices are the same key in a dict or set, across processes.

    Example:
        >>> a = Arch("nb201", {"edge_1_0": "nor_conv_3x3"})
        >>> Arch.from_json(a.to_json()) == a
        True
    """

    __slots__ = ("_space", "_values", "_digest")

    def __init__(self, space: str, values: Mapping[str, Any]):
        if not isinstance(space, str) or not space:
            raise ArchError("an architecture needs the name of its space (a non-empty string)")
        frozen = {}
        for key in sorted(values):
            if not isinstance(key, str):
                raise ArchError(f"architecture labels must be strings, got {key!r}")
            frozen[key] = _freeze(values[key], key)
        object.__setattr__(self, "_space", space)
        object.__setattr__(self, "_values", frozen)
        object.__setattr__(self, "_digest", None)

    @property
    def space(self) -> str:
        return self._space

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Arch):
            return NotImplemented
        return self._space == other._space and self._values == other._values

    def __hash__(self) -> int:
        return int(self.digest[:15], 16)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Arch is immutable; use .replace(...) to make a changed copy")

    def __repr__(self) -> str:
        return f"Arch({self._space!r}, {self.to_dict()['arch']!r})"

    def __reduce__(self):
        return (Arch, (self._space, self.to_dict()["arch"]))

    @property
    def digest(self) -> str:
        """SHA-1 of the canonical JSON: stable across processes and Python versions."""
        if self._digest is None:
            digest = hashlib.sha1(self.to_json(indent=None).encode()).hexdigest()
            object.__setattr__(self, "_digest", digest)
        return self._digest

    def replace(self, **changes: Any) -> Arch:
        """A copy with some labels set to new values."""
        return Arch(self._space, {**self._values, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {"space": self._space, "arch": {k: _thaw(v) for k, v in self._values.items()}}

    def to_json(self, indent: int | None = 2) -> str:
        separators = (",", ":") if indent is None else None
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, separators=separators)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arch:
        if not isinstance(data, Mapping) or "space" not in data or "arch" not in data:
            raise ArchError(
                'architecture JSON must be an object {"space": <name>, "arch": {<label>: <value>}}'
                f"; got {str(data)[:200]!r}"
            )
        if not isinstance(data["arch"], Mapping):
            raise ArchError('architecture JSON field "arch" must be an object of label: value')
        return cls(data["space"], data["arch"])

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"architecture JSON does not parse: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write ``{"space", "arch", **extra}`` as JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**self.to_dict(), **extra}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"architecture file {str(path)!r} does not exist")
        try:
            return cls.from_json(path.read_text())
        except ArchError as err:
            raise ArchError(f"{path}: {err}") from None


@dataclass(frozen=True)
class Constraints:
    """Limits a valid architecture must respect; ``None`` means no limit.

    Attributes:
        max_params: trainable parameters of the built standalone network.
        max_layers: depth of the built network in the space's own unit (cells or blocks).
    """

    max_params: int | None = None
    max_layers: int | None = None


class SearchSpace(ABC):
    """What can be built: sampling, mutation, validation, string form, network builders.

    Subclasses set ``name`` and implement the abstract methods. ``validate`` is the single
    gate every architecture passes before it is built; it raises :class:`ArchError` naming the
    bad field. ``build`` gives a plain standalone ``nn.Module`` with no search machinery;
    ``supernet`` gives the weight-sharing network one-shot strategies train.
    """

    name: str = ""

    def __init__(self, constraints: Constraints | None = None):
        self.constraints = constraints or Constraints()

    # --- the space itself -------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random architecture drawn with ``rng`` (seeded by the caller)."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """A copy of ``arch`` with one choice changed to a different value."""

    @abstractmethod
    def check(self, arch: Arch) -> None:
        """Raise :class:`ArchError` if ``arch`` is not a member of this space."""

    @abstractmethod
    def to_string(self, arch: Arch) -> str:
        """The canonical string form; ``parse(to_string(a)) == a``."""

    @abstractmethod
    def parse(self, text: str) -> Arch:
        """Parse the canonical string form (raises :class:`ArchError` when malformed)."""

    @abstractmethod
    def build(self, arch: Arch, **kwargs: Any) -> nn.Module:
        """The standalone network for ``arch`` (a plain ``nn.Module``)."""

    def supernet(self, **kwargs: Any) -> nn.Module:
        raise NotImplementedError(f"the {self.name!r} space has no supernet")

    # --- the space as independent categorical decisions (for samplers and encoders) ---------
    def decisions(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The space as a list of independent categorical decisions ``(label, options)``.

        Every combination of options is a valid architecture and every searchable
        architecture is one combination; ``encode``/``decode`` convert. Samplers (policy
        gradients, Bayesian optimisation encodings, evolution) work on this view only.
        """
        raise NotImplementedError(f"the {self.name!r} space has no categorical view")

    def encode(self, arch: Arch) -> list[int]:
        """Index of the chosen option for every decision (same order as ``decisions``)."""
        raise NotImplementedError(f"the {self.name!r} space has no categorical view")

    def decode(self, indices: list[int]) -> Arch:
        """Inverse of :meth:`encode`."""
        raise NotImplementedError(f"the {self.name!r} space has no categorical view")

    def one_hot(self, arch: Arch) -> torch.Tensor:
        """Concatenated one-hot vectors of ``encode(arch)``: shape (sum of option counts,)."""
        parts = []
        for (_, options), index in zip(self.decisions(), self.encode(arch)):
            vec = torch.zeros(len(options))
            vec[index] = 1.0
            parts.append(vec)
        return torch.cat(parts)

    def depth(self, arch: Arch) -> int:
        """Depth of the built network in cells or blocks (checked against ``max_layers``)."""
        raise NotImplementedError(f"the {self.name!r} space does not define depth")

    # --- shared behaviour -------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Check membership and constraints; return ``arch`` unchanged when valid."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise ArchError(
                f"architecture belongs to the {arch.space!r} space, not {self.name!r}; "
                f"load one written by a {self.name!r} search or pick a {self.name!r} preset"
            )
        self.check(arch)
        if getattr(self, "_counting", False):  # build() inside count_params: no recursion
            return arch
        limits = self.constraints
        if limits.max_layers is not None and self.depth(arch) > limits.max_layers:
            raise ArchError(
                f"architecture is {self.depth(arch)} layers deep, over max_layers="
                f"{limits.max_layers}"
            )
        if limits.max_params is not None:
            params = self.count_params(arch)
            if params > limits.max_params:
                raise ArchError(
                    f"architecture has {params:,} parameters, over max_params="
                    f"{limits.max_params:,}"
                )
        return arch

    def count_params(self, arch: Arch, **build_kwargs: Any) -> int:
        """Trainable parameters of ``build(arch)``, counted on the meta device (no memory)."""
        self._counting = True
        try:
            with torch.device("meta"):
                net = self.build(arch, **build_kwargs)
        finally:
            self._counting = False
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    def load(self, source: str | Path | Arch) -> Arch:
        """An architecture from an ``Arch``, a JSON file, the string form or a preset name."""
        if isinstance(source, Arch):
            return self.validate(source)
        text = str(source)
        presets = getattr(self, "presets", {})
        if text in presets:
            return self.validate(presets[text])
        if text.endswith(".json") or _is_file(text):
            return self.validate(Arch.load(text))
        try:
            return self.validate(self.parse(text))
        except ArchError as err:
            hint = f"; presets: {', '.join(sorted(presets))}" if presets else ""
            raise ArchError(
                f"{err}\n(--arch takes an arch.json path, a {self.name} string or a preset{hint})"
            ) from None
