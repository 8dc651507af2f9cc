"""The operation registry: every cell op by name, built by ``builder(C_in, C_out, stride)``.

A builder maps ``(C_in, C_out, stride)`` to an ``nn.Module`` that maps (B, C_in, H, W) to
(B, C_out, H / stride, W / stride); a builder that also takes a keyword ``affine`` gets the
space's batch-norm flag (``False`` in the supernets of differentiable search, as in the DARTS
code). The built-in ops are DARTS's 8 (Liu et al. 2019, A.1), the NASNet/AmoebaNet extras,
NAS-Bench-201's 5 (Dong & Yang 2020), the attention and squeeze-excite ops of
:mod:`lightning_nas.spaces.attention`, and the zero/identity pair ``none`` / ``skip_connect``
that any space may list.

Users add ops in two ways:

* from Python: ``@register_op("my_op")`` over a builder (function or class), or
  ``register_op("my_op", builder)``;
* from YAML, without code in the package: an entry of a cell space's ``ops`` list written
  jsonargparse-style, ``{name: my_op, class_path: my_module.MyOp, init_args: {...}}``;
  :func:`resolve_ops` imports the class and registers ``MyOp(C_in, C_out, stride,
  **init_args)`` under ``my_op``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

#: The zero op: adds nothing, so a space that needs a path of real ops excludes it.
ZERO_OP = "none"
#: Op names are identifiers, so they fit every string form (genotypes, NB201's ``op~i``).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Builder = Callable[..., nn.Module]  # (c_in, c_out, stride[, affine=]) -> module


class UnknownOpError(ValueError):
    """An op name that is not registered; the message lists the registered ones."""


class OpBuilderError(TypeError):
    """A builder that cannot be called as ``builder(C_in, C_out, stride)``."""


@dataclass(frozen=True)
class RegisteredOp:
    """One registry entry: the builder, whether it takes ``affine``, and where it came from
    (``source``: a ``class_path`` spec for ops registered from YAML, else None)."""

    name: str
    builder: Builder
    takes_affine: bool
    source: Mapping[str, Any] | None = field(default=None, compare=False)


_REGISTRY: dict[str, RegisteredOp] = {}


def _check_builder(name: str, builder: Any) -> bool:
    """Whether ``builder`` takes ``affine``; :class:`OpBuilderError` unless it can be called
    with three positional arguments (C_in, C_out, stride)."""
    if not callable(builder):
        raise OpBuilderError(f"op {name!r}: the builder must be callable as builder(C_in, C_out, "
                             f"stride), got {builder!r}")
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return False
    try:
        signature.bind(1, 1, 1)
    except TypeError as err:
        raise OpBuilderError(f"op {name!r}: the builder must take (C_in, C_out, stride) as its "
                             f"first three positional arguments; {builder!r} has the signature "
                             f"{signature} ({err})") from None
    params = signature.parameters
    return "affine" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def register_op(name: str, builder: Builder | None = None, *, overwrite: bool = False,
                source: Mapping[str, Any] | None = None):
    """Register ``builder`` under ``name``; without ``builder``, a decorator.

    Args:
        name: an identifier (letters, digits, underscore), unique unless ``overwrite``.
        builder: ``builder(C_in, C_out, stride[, affine=...]) -> nn.Module``.
        overwrite: replace an existing entry (else a second registration is an error).
        source: the YAML spec it came from (kept for the space's config).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"an op name must be an identifier (letters, digits, '_'), got {name!r}")

    def register(fn: Builder) -> Builder:
        takes_affine = _check_builder(name, fn)
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"op {name!r} is registered already (by "
                             f"{_describe(_REGISTRY[name])}); choose another name or pass "
                             "overwrite=True")
        _REGISTRY[name] = RegisteredOp(name, fn, takes_affine, source)
        return fn

    return register if builder is None else register(builder)


def _describe(entry: RegisteredOp) -> str:
    if entry.source is not None:
        return f"class_path {entry.source.get('class_path')!r}"
    fn = entry.builder
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def unregister_op(name: str) -> None:
    """Remove ``name`` (tests, interactive sessions)."""
    _REGISTRY.pop(name, None)


def registered_ops() -> tuple[str, ...]:
    """Registered op names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_op(name: str) -> RegisteredOp:
    """The entry of ``name``; :class:`UnknownOpError` listing the registered names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownOpError(f"unknown operation {name!r}; registered operations: "
                             f"{', '.join(registered_ops())} (register your own with "
                             "lightning_nas.spaces.registry.register_op or a {name, class_path,"
                             " init_args} entry in the space's ops)") from None


def build_op(name: str, c_in: int, c_out: int, stride: int, *, affine: bool = True
             ) -> nn.Module:
    """The op ``name`` as a module: (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
    entry = get_op(name)
    module = (entry.builder(c_in, c_out, stride, affine=affine) if entry.takes_affine
              else entry.builder(c_in, c_out, stride))
    if not isinstance(module, nn.Module):
        raise OpBuilderError(f"op {name!r}: the builder returned {type(module).__name__}, not "
                             "an nn.Module")
    return module


# ---------------------------------------------------------------------------------------
# op lists of a space (strings or class_path entries from YAML)
# ---------------------------------------------------------------------------------------
def _import(path: str, where: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{where}: class_path must be a dotted import path "
                         f"'package.module.Class', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{where}: cannot import {module_name!r} for class_path {path!r} "
                         f"({err}); is its folder on PYTHONPATH?") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{where}: module {module_name!r} has no {attr!r} (class_path "
                         f"{path!r})") from None


def _spec_op(entry: Mapping[str, Any], where: str) -> str:
    """Register (or find registered) the op of a ``{name, class_path, init_args}`` entry."""
    unknown = set(entry) - {"name", "class_path", "init_args"}
    if unknown or "name" not in entry or "class_path" not in entry:
        raise ValueError(f"{where}: an op given by class_path needs the keys name and "
                         f"class_path (and optionally init_args); got {sorted(entry)}")
    name, path = entry["name"], entry["class_path"]
    init_args = dict(entry.get("init_args") or {})
    source = {"name": name, "class_path": path, "init_args": init_args}
    existing = _REGISTRY.get(name)
    if existing is not None:
        if existing.source == source:
            return name
        raise ValueError(f"{where}: op {name!r} is registered already (by "
                         f"{_describe(existing)}) with other settings; give this one "
                         "another name")
    target = _import(str(path), where)
    try:
        _check_builder(name, target)
    except OpBuilderError as err:
        raise OpBuilderError(f"{where}: {err}") from None
    try:
        inspect.signature(target).bind(1, 1, 1, **init_args)
    except TypeError as err:
        raise OpBuilderError(f"{where}: {path} does not take init_args {sorted(init_args)} "
                             f"after (C_in, C_out, stride): {err}") from None
    except ValueError:
        pass
    builder = functools.partial(target, **init_args) if init_args else target
    register_op(str(name), builder, source=source)
    return name


def resolve_ops(entries: Sequence[str | Mapping[str, Any]], *, field_name: str = "ops"
                ) -> tuple[str, ...]:
    """The op names of a space's ``ops`` list, registering ``class_path`` entries.

    Each entry is a registered name or ``{name, class_path, init_args}``. Errors name the
    field and the entry: an empty list, duplicates, unknown names (listing the registered
    ones), builders that do not take (C_in, C_out, stride).
    """
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"{field_name} must be a list of op names or {{name, class_path}} "
                         f"entries, got {entries!r}")
    if not entries:
        raise ValueError(f"{field_name} is empty; list the operations of the space, e.g. "
                         "[none, skip_connect, sep_conv_3x3]")
    names: list[str] = []
    for k, entry in enumerate(entries):
        where = f"{field_name}[{k}]"
        if isinstance(entry, Mapping):
            name = _spec_op(entry, where)
        elif isinstance(entry, str):
            try:
                get_op(entry)
            except UnknownOpError as err:
                raise UnknownOpError(f"{where}: {err}") from None
            name = entry
        else:
            raise ValueError(f"{where} must be an op name or a {{name, class_path, init_args}} "
                             f"mapping, got {entry!r}")
        if name in names:
            raise ValueError(f"{field_name} lists {name!r} twice (entries {names.index(name)} "
                             f"and {k}); each operation once")
        names.append(name)
    return tuple(names)


def space_ops(entries: Sequence[str | Mapping[str, Any]] | None, default: Sequence[str], *,
              space: str, min_nonzero: int = 1, min_ops: int = 2) -> tuple[str, ...]:
    """A cell space's op set: ``default`` when ``entries`` is None, else :func:`resolve_ops`
    with at least ``min_ops`` ops of which ``min_nonzero`` are not the zero op (a space
    whose paths all add nothing, or with nothing to choose, is an error naming the field)."""
    if entries is None:
        return tuple(default)
    names = resolve_ops(entries, field_name=f"{space}: ops")
    nonzero = [n for n in names if n != ZERO_OP]
    if len(nonzero) < min_nonzero:
        raise ValueError(f"{space}: ops {list(names)} need at least {min_nonzero} operation(s) "
                         f"other than {ZERO_OP!r}: every path of this space must compute "
                         "something")
    if len(names) < min_ops:
        raise ValueError(f"{space}: ops {list(names)} leave nothing to choose; list at least "
                         f"{min_ops} operations")
    return names


def op_entries(names: Sequence[str]) -> list[str | dict[str, Any]]:
    """The ``ops`` list of a space's config: names, and the YAML spec of ops registered from
    a ``class_path`` (so a checkpoint's space spec registers them again)."""
    out: list[str | dict[str, Any]] = []
    for name in names:
        entry = _REGISTRY.get(name)
        out.append(dict(entry.source) if entry is not None and entry.source is not None
                   else name)
    return out


#: Module prefixes a user named as trusted (``lightning-nas export --allow-import``): a
#: checkpoint's space may import modules under them. Empty unless :func:`allowed_imports`.
_TRUSTED_PREFIXES: list[str] = []
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@contextlib.contextmanager
def allowed_imports(prefixes: Sequence[str]) -> Iterator[None]:
    """Within the block, a checkpoint's space spec may import modules named ``prefix`` or
    ``prefix.<anything>`` for each of ``prefixes`` (the user's explicit trust, e.g.
    ``lightning-nas export --allow-import my_ops``); outside it only lightning-nas modules
    and modules already imported are used.

    Raises:
        ValueError: a prefix that is not a dotted module name.
    """
    for prefix in prefixes:
        if not isinstance(prefix, str) or not _MODULE.match(prefix):
            raise ValueError(f"--allow-import takes a module name or prefix such as my_ops or "
                             f"my_pkg.ops, got {prefix!r}")
    before = list(_TRUSTED_PREFIXES)
    _TRUSTED_PREFIXES.extend(prefixes)
    try:
        yield
    finally:
        _TRUSTED_PREFIXES[:] = before


def import_allowed(module: str) -> bool:
    """Whether a module named in a file may be used: lightning-nas's own, one already
    imported, or one under a prefix the user trusts (:func:`allowed_imports`)."""
    return (module.startswith("lightning_nas.") or module in sys.modules
            or any(module == p or module.startswith(p + ".") for p in _TRUSTED_PREFIXES))


def refusal_hint(module: str) -> str:
    """How a user allows ``module``: import it first, or name it trusted."""
    return (f"import {module!r} before loading it, or, if you trust that code, name it "
            f"trusted: lightning-nas export ... --allow-import {module.split('.')[0]} (a file "
            "never imports code by itself)")


def check_loadable(entries: Any) -> None:
    """A space spec read from a file may name ops by ``class_path`` (anywhere in its
    arguments): only lightning-nas modules, modules already imported and modules under a
    trusted prefix (:func:`allowed_imports`) are used (a file never imports other code)."""
    if isinstance(entries, Mapping):
        if "class_path" in entries and "name" in entries:
            module = str(entries["class_path"]).rpartition(".")[0]
            if not import_allowed(module):
                raise ValueError(f"the checkpoint's space uses op {entries.get('name')!r} from "
                                 f"{entries['class_path']!r}; {refusal_hint(module)}")
        for value in entries.values():
            check_loadable(value)
    elif isinstance(entries, Sequence) and not isinstance(entries, str):
        for entry in entries:
            check_loadable(entry)


def channels_kept(name: str, c_in: int, c_out: int) -> None:
    """For ops that cannot change the channel count (pools, identity)."""
    if c_in != c_out:
        raise ValueError(f"op {name!r} keeps the channel count; got C_in={c_in}, C_out={c_out}")


# the built-in ops register themselves on import (after the functions above exist)
from lightning_nas.spaces import builtin_ops as _builtin_ops  # noqa: E402,F401
