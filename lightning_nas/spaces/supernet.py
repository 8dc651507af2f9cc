"""The one interface every weight-sharing supernet implements, so a one-shot strategy is
written once and runs on every space (DARTS cells, NAS-Bench-201, Once-for-All MobileNetV3).

A supernet answers a few questions (:class:`Supernet`):

* **its path decisions** (:meth:`~Supernet.decisions`): the ordered categorical choices that
  make one architecture, as ENAS's controller samples them. A decision is an operation
  (``kind="op"``), or an input node of a cell (``kind="input"``: ENAS samples those with
  attention over the cell's earlier nodes; the inputs of one node are distinct);
  :meth:`~Supernet.arch_of` / :meth:`~Supernet.choices_of` convert between choices and an
  :class:`~lightning_nas.spaces.base.Arch`;
* **a forward pass along one path** (:meth:`~Supernet.forward_path`, ENAS / SPOS / OFA): only
  the chosen operations run;
* for the cell spaces, **a forward pass driven by weights per decision**
  (:meth:`~Supernet.forward_weighted`): one ``(edges, ops)`` matrix per cell type
  (:meth:`~Supernet.alpha_shapes`), either continuous (DARTS: every op runs, mixed by
  softmaxed alphas) or hard with a gradient path (GDAS: ``active`` names the op of each edge
  that runs; the weights carry the straight-through gradient, and the ops that do not run
  add their weight's zero so every alpha gets a gradient), optionally with a factor per edge
  (PC-DARTS's edge normalisation over each node's incoming edges, ``edge_groups``), and the
  discretisation of such weights into an :class:`~lightning_nas.spaces.base.Arch`
  (:meth:`~Supernet.derive`). Both cell supernets take ``partial_channels`` (PC-DARTS);
* **a network for one path** to evaluate inherited accuracy (:meth:`~Supernet.subnet`): a
  module whose batch-norm layers keep running statistics, to be recalibrated on training
  images before evaluation (SPOS, OFA).

``space.supernet(**options)`` returns one; a space without a supernet raises
:class:`NoSupernetError`. :func:`supernet_of` is the checked way strategies get one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from lightning_nas.spaces.base import Arch, SearchSpace


class NoSupernetError(TypeError):
    """A space that has no weight-sharing supernet (one-shot strategies cannot search it)."""


@dataclass(frozen=True)
class Decision:
    """One categorical choice of a path.

    Attributes:
        label: unique name, e.g. ``"normal.node2.input0"`` or ``"3<-1"``.
        options: the values to choose from (op names, node indices, kernel sizes ...).
        kind: ``"op"``, or ``"input"`` when the options are earlier nodes of ``group``'s
            cell (a pointer over nodes in ENAS).
        group: decisions that belong together (the node of a cell); the ``input``
            decisions of one group take distinct values.
    """

    label: str
    options: tuple[Any, ...]
    kind: str = "op"
    group: str = ""


@runtime_checkable
class Supernet(Protocol):
    """What one-shot strategies need from a supernet (module docstring)."""

    space: SearchSpace

    def decisions(self) -> list[Decision]: ...

    def arch_of(self, choices: Mapping[str, Any]) -> Arch: ...

    def choices_of(self, arch: Arch) -> dict[str, Any]: ...

    def forward_path(self, x: torch.Tensor, arch: Arch) -> torch.Tensor: ...

    def subnet(self, arch: Arch) -> nn.Module: ...


@runtime_checkable
class WeightedSupernet(Supernet, Protocol):
    """A supernet that differentiable strategies (DARTS, GDAS) can drive."""

    op_names: tuple[str, ...]

    def alpha_shapes(self) -> dict[str, tuple[int, int]]: ...

    def edge_groups(self) -> dict[str, list[list[int]]]: ...

    def forward_weighted(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor],
                         active: Mapping[str, Sequence[Sequence[int]]] | None = None,
                         edge_weights: Mapping[str, torch.Tensor] | None = None
                         ) -> torch.Tensor: ...

    def derive(self, weights: Mapping[str, torch.Tensor],
               edge_weights: Mapping[str, torch.Tensor] | None = None) -> Arch: ...


def supernet_of(space: SearchSpace, *, weighted: bool = False, strategy: str = "this strategy",
                **options: Any) -> Supernet:
    """``space.supernet(**options)``, checked: a clear error when the space has none, or
    (``weighted``) when its supernet cannot be driven by weights per decision."""
    try:
        net = space.supernet(**options)
    except NotImplementedError:
        raise NoSupernetError(
            f"the {space.name!r} space has no weight-sharing supernet, so {strategy} cannot "
            "search it; one-shot strategies run on the DARTS, NAS-Bench-201 and MobileNetV3 "
            "spaces (use a multi-trial search for other spaces)") from None
    if not isinstance(net, Supernet):
        raise NoSupernetError(f"{type(net).__name__} (the {space.name!r} supernet) does not "
                              "implement the supernet interface (lightning_nas.spaces.supernet)")
    if weighted and not isinstance(net, WeightedSupernet):
        raise NoSupernetError(
            f"the {space.name!r} supernet has no weights per decision (its choices are "
            f"kernel sizes, depths and widths, not mixed operations), so {strategy} cannot "
            "search it; use a path strategy (ENAS, SPOS, Once-for-All) on this space")
    return net


def with_running_stats(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` whose batch-norm layers keep running statistics (zeroed),
    for recalibration: supernets trained with batch statistics only (DARTS, NB201) get
    buffers they can fill with :func:`~lightning_nas.spaces.mobilenet_supernet.recalibrate_bn`.
    """
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            device = next((p.device for p in m.parameters()), None)
            if device is None:
                device = torch.device("cpu")
            m.track_running_stats = True
            m.register_buffer("running_mean", torch.zeros(m.num_features, device=device))
            m.register_buffer("running_var", torch.ones(m.num_features, device=device))
            m.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                  device=device))
    return net


class PathNetwork(nn.Module):
    """One path of a supernet as a module: ``forward(x) = supernet.forward_path(x, arch)``.

    Holds a copy of the supernet whose batch-norm layers keep running statistics (see
    :func:`with_running_stats`); recalibrate them before evaluating in eval mode.
    """

    def __init__(self, supernet: nn.Module, arch: Arch):
        super().__init__()
        self.supernet = with_running_stats(supernet)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_path(x, self.arch)


__all__ = ["Decision", "NoSupernetError", "PathNetwork", "Supernet", "WeightedSupernet",
           "supernet_of", "with_running_stats"]
