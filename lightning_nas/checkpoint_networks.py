"""The deployable network of a lightning-nas checkpoint, for ``lightning-nas export``.

:func:`network_from_checkpoint` turns a checkpoint into an :class:`ExportTarget` (the
network, its architecture, the input shape it expects and where its weights come from):

* a :class:`~lightning_nas.strategies.fixed.FixedArchitecture` checkpoint (or a
  ``subnet.ckpt`` of ``export --subnet``): the trained network;
* a Once-for-All checkpoint: only with ``subnet`` (``largest``, ``smallest`` or a subnet
  string), the extracted subnet with the supernet's weights; without it
  :class:`SubnetRequiredError` lists the choices (the supernet is many networks);
* a one-shot search checkpoint (DARTS, PC-DARTS, GDAS, ENAS, SPOS): the derived
  architecture's standalone network. When the space extracts a standalone subnet from its
  supernet (NAS-Bench-201 without partial channels, MobileNetV3) the network inherits the
  supernet's weights; otherwise (the DARTS cell space) the space builds it **untrained**.

The input shape (C, H, W) is, in this order: the caller's, the network's own resolution
(MobileNetV3), the data shape the strategy recorded in the checkpoint
(``checkpoint["lightning_nas"]["input_shape"]``), the data module's saved ``in_channels`` and
``image_size``. Every file goes through :func:`~lightning_nas.checkpoints.load_checkpoint`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lightning_nas.checkpoints import CheckpointError, checkpoint_strategy, load_checkpoint
from lightning_nas.spaces.base import Arch, SearchSpace

OFA_STRATEGY = "lightning_nas.strategies.ofa.OnceForAll"
SUBNET_FILE = "lightning_nas.strategies.ofa.save_subnet"
FIXED_STRATEGY = "lightning_nas.strategies.fixed.FixedArchitecture"


class SubnetRequiredError(CheckpointError):
    """A Once-for-All checkpoint exported without saying which subnet."""


@dataclass
class ExportTarget:
    """What ``export`` writes.

    Attributes:
        net: the network in eval mode on the CPU; (B, C, H, W) -> logits (or a tuple whose
            first item is the logits, DARTS).
        space: the space of ``arch``.
        arch: the architecture.
        input_shape: (C, H, W) of one input, or None when nothing in the checkpoint says.
        weights: ``"trained"``, ``"inherited"`` (from a supernet) or ``"untrained"``.
        note: one sentence about the weights for the user.
    """

    net: nn.Module
    space: SearchSpace
    arch: Arch
    input_shape: tuple[int, int, int] | None
    weights: str
    note: str


def middle_subnet(space: Any) -> Arch:
    """The subnet with the median choice of every MobileNetV3 dimension (OFA's 'middle')."""
    def mid(choices):
        return choices[(len(choices) - 1) // 2]
    n = len(space.block_keys)
    return space.make(mid(space.resolutions), [mid(space.depths)] * len(space.stages),
                      [mid(space.kernels)] * n, [mid(space.expands)] * n)


def subnet_choices_message(path: str | Path, space: Any) -> str:
    """The error of an OFA export without ``--subnet``: the choices, with an example."""
    example = space.to_string(middle_subnet(space))
    return (f"{path} is a Once-for-All checkpoint: its supernet holds many networks, so say "
            "which one to export with --subnet: `--subnet largest`, `--subnet smallest`, or "
            f"a subnet string of its space (r<resolution>|d<depth per stage>|k<kernel per "
            f"block>|e<expand ratio per block>), e.g. --subnet '{example}'")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"C,H,W"`` (or ``CxHxW``) -> (C, H, W) positive ints; ValueError saying the format."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input-shape takes C,H,W (three positive integers, e.g. 3,32,32); "
                         f"got {text!r}")
    return shape  # type: ignore[return-value]


def network_from_checkpoint(path: str | Path, *, subnet: str | None = None,
                            input_shape: tuple[int, int, int] | None = None) -> ExportTarget:
    """The network to export from checkpoint ``path`` (module docstring)."""
    checkpoint = load_checkpoint(path)
    info = checkpoint.get("lightning_nas")
    strategy = checkpoint_strategy(checkpoint)
    if subnet is not None or strategy == OFA_STRATEGY:
        target = _ofa_subnet(path, checkpoint, subnet)
    elif not isinstance(info, dict) or "arch" not in info:
        raise CheckpointError(f"{path} was not written by a lightning-nas strategy (no "
                              "architecture inside); export works on checkpoints of "
                              "`lightning-nas fit`")
    elif isinstance(info.get("supernet_spec"), dict):
        target = _one_shot(path, info)
    elif any(k.startswith("net.") for k in checkpoint["state_dict"]):
        target = _fixed(path, checkpoint, info)
    else:
        raise CheckpointError(f"{path} ({strategy}) holds neither a network ('net.*' weights) "
                              "nor a supernet description; export a FixedArchitecture, "
                              "one-shot search or Once-for-All checkpoint")
    target.net.eval()
    target.input_shape = input_shape or _input_shape(target.net, checkpoint, info)
    return target


# -- the three kinds of checkpoint ---------------------------------------------------------
def _ofa_subnet(path: str | Path, checkpoint: dict[str, Any], subnet: str | None
                ) -> ExportTarget:
    from lightning_nas.spaces.mobilenet import MobileNetV3Space
    from lightning_nas.strategies.ofa import load_supernet

    if subnet is None:
        space = MobileNetV3Space(**checkpoint["lightning_nas"]["space"])
        raise SubnetRequiredError(subnet_choices_message(path, space))
    space, supernet = load_supernet(path)  # "not a Once-for-All checkpoint" for other files
    arch = getattr(space, subnet)() if subnet in ("largest", "smallest") else space.parse(subnet)
    return ExportTarget(supernet.extract(arch), space, arch, None, "inherited",
                        "weights inherited from the Once-for-All supernet (batch-norm "
                        "statistics are the supernet's: recalibrate or fine-tune before "
                        "reporting accuracy)")


def _one_shot(path: str | Path, info: dict[str, Any]) -> ExportTarget:
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.supernet import PathNetwork
    from lightning_nas.strategies.common import load_supernet, space_from_spec

    spec = info["supernet_spec"]
    space = space_from_spec(spec["space"])
    arch = space.validate(Arch.from_dict(info["arch"]))
    if not isinstance(space, DartsSpace):  # a standalone subnet with the supernet's weights?
        space, supernet, _ = load_supernet(path)
        net = supernet.subnet(arch)
        if not isinstance(net, PathNetwork):
            return ExportTarget(net, space, arch, None, "inherited",
                                "weights inherited from the search's supernet (batch-norm "
                                "statistics are not calibrated: fine-tune, or train it with "
                                "FixedArchitecture, before deploying)")
    options = spec.get("options") or {}
    net = space.build(arch, **_build_kwargs(space, options.get("num_classes"),
                                            options.get("in_channels")))
    return ExportTarget(net, space, arch, None, "untrained",
                        f"UNTRAINED weights: the {space.name} space builds the derived "
                        "architecture from scratch; train it with FixedArchitecture "
                        "(--model.arch <arch.json>) and export that checkpoint for a "
                        "usable network")


def _fixed(path: str | Path, checkpoint: dict[str, Any], info: dict[str, Any]) -> ExportTarget:
    space = _space_of(path, info)
    arch = space.validate(Arch.from_dict(info["arch"]))
    hparams = checkpoint.get("hyper_parameters") or {}
    net = space.build(arch, **_build_kwargs(space, hparams.get("num_classes"),
                                            hparams.get("in_channels")))
    saved = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith("net.")}
    try:
        net.load_state_dict(saved)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in {path} do not fit the {space.name} network built from its "
            f"architecture and space settings ({str(err).splitlines()[0]} ...); the checkpoint "
            "does not record its space (written before export recorded it): re-save it with "
            "this version, or export with the same space settings") from None
    return ExportTarget(net, space, arch, None, "trained", "trained weights of the checkpoint")


# -- helpers -------------------------------------------------------------------------------
def _space_of(path: str | Path, info: dict[str, Any]) -> SearchSpace:
    """The space a network checkpoint records: a ``{"class_path", "init_args"}`` spec
    (FixedArchitecture), a space config plus the arch's space name (``subnet.ckpt``), or
    the default space of the arch's name (older FixedArchitecture checkpoints)."""
    from lightning_nas.spaces.darts import DartsSpace
    from lightning_nas.spaces.mobilenet import MobileNetV3Space
    from lightning_nas.spaces.nb201 import NB201Space
    from lightning_nas.strategies.common import space_from_spec

    saved = info.get("space")
    if isinstance(saved, dict) and "class_path" in saved:
        return space_from_spec(saved)
    classes = {DartsSpace.name: DartsSpace, NB201Space.name: NB201Space,
               MobileNetV3Space.name: MobileNetV3Space}
    name = Arch.from_dict(info["arch"]).space
    if name not in classes:
        raise CheckpointError(f"{path} holds a {name!r} architecture but not its space; "
                              "export rebuilds only spaces it can name")
    if isinstance(saved, dict):
        return classes[name](**saved)
    if name == DartsSpace.name:  # FixedArchitecture's default space
        return DartsSpace(channels=36, layers=20, auxiliary=True)
    return classes[name]()


def _build_kwargs(space: SearchSpace, num_classes: Any, in_channels: Any) -> dict[str, Any]:
    """``num_classes`` / ``in_channels`` for ``space.build`` where given and accepted."""
    given = {k: int(v) for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
             if v is not None}
    accepted = inspect.signature(space.build).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return given
    return {k: v for k, v in given.items() if k in accepted}


def _input_shape(net: nn.Module, checkpoint: dict[str, Any], info: Any
                 ) -> tuple[int, int, int] | None:
    """(C, H, W) the network takes, from what the checkpoint and the network say."""
    channels = _in_channels(net)
    resolution = getattr(net, "resolution", None)
    if isinstance(resolution, int) and channels:
        return (channels, resolution, resolution)
    recorded = info.get("input_shape") if isinstance(info, dict) else None
    if isinstance(recorded, (list, tuple)) and len(recorded) == 3:
        return tuple(int(s) for s in recorded)  # type: ignore[return-value]
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    size, c = data.get("image_size"), data.get("in_channels", channels)
    if isinstance(size, int) and isinstance(c, int):
        return (c, size, size)
    return None


def _in_channels(net: nn.Module) -> int | None:
    """Input channels of the network's first convolution."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


__all__ = ["ExportTarget", "SubnetRequiredError", "middle_subnet", "network_from_checkpoint",
           "parse_input_shape", "subnet_choices_message"]
