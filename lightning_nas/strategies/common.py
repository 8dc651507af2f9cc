"""Helpers shared by the strategy LightningModules (functions, not a base class)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch


class ScoredArch(NamedTuple):
    """An architecture a strategy derived or scored this epoch (``scored_architectures()``).

    ``accuracy`` is a fraction in [0, 1] from the strategy's own estimate (one-shot: the
    supernet's; None when the epoch had no validation)."""

    name: str
    arch: Any
    accuracy: float | None


def logged_value(module: Any, key: str) -> float | None:
    """``trainer.callback_metrics[key]`` as a float (None when absent or not attached)."""
    trainer = getattr(module, "_trainer", None)
    value = None if trainer is None else trainer.callback_metrics.get(key)
    return None if value is None else float(value)


def average_gradients(trainer: Any, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """All-reduce (mean) a list of gradients across ranks with one flat collective.

    On one process this returns the gradients unchanged. Under DDP every rank gets the same
    result, so optimiser steps stay identical on all ranks (DARTS alphas included).
    """
    if trainer is None or trainer.world_size <= 1:
        return list(grads)
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = trainer.strategy.reduce(flat, reduce_op="mean")
    out, offset = [], 0
    for g in grads:
        out.append(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return out


def assign_gradients(params: Sequence[torch.nn.Parameter], grads: Sequence[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        p.grad = g.detach().clone() if p.grad is None else p.grad.copy_(g)


def _scaler(trainer: Any) -> Any:
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def loss_scale(trainer: Any) -> float:
    """The current loss scale of the trainer's precision plugin (``16-mixed``'s GradScaler),
    1.0 without one (32-bit, ``bf16-mixed``) or without a trainer."""
    scaler = _scaler(trainer)
    return 1.0 if scaler is None else float(scaler.get_scale())


def scaled_grad(trainer: Any, loss: torch.Tensor, inputs: Sequence[torch.Tensor],
                **kwargs: Any) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(loss, inputs)`` under the trainer's precision.

    With a loss scaler (``16-mixed``) the gradient of ``scale * loss`` is computed, so small
    float16 gradients do not flush to zero, and divided by the scale again: the result is
    the true gradient, non-finite where float16 overflowed. The strategies step through
    :func:`prepare_step`, which hands the plugin scaled gradients again.
    """
    scaler = _scaler(trainer)
    if scaler is None:
        return torch.autograd.grad(loss, inputs, **kwargs)
    grads = torch.autograd.grad(scaler.scale(loss), inputs, **kwargs)
    scale = float(scaler.get_scale())
    return tuple(None if g is None else g / scale for g in grads)


def prepare_step(trainer: Any, params: Sequence[torch.nn.Parameter]) -> None:
    """Before ``optimizer.step()`` of a manually optimised strategy: multiply the gradients by
    the loss scale, since the ``16-mixed`` precision plugin's step unscales them and skips the
    step (lowering the scale) when any is non-finite. A power-of-two scale makes the round
    trip exact. No-op without a scaler."""
    scaler = _scaler(trainer)
    if scaler is None:
        return
    params = [p for p in params if p.grad is not None]
    if params:
        scaler.scale(params[0].grad.new_zeros(()))  # creates the scale tensor on first use
        scale = float(scaler.get_scale())
        for p in params:
            p.grad.mul_(scale)


def overflow_skips_step(trainer: Any) -> bool:
    """True under a loss scaler: non-finite gradients are float16 overflow, which the
    precision plugin handles by skipping the step, so they must not stop the run."""
    return loss_scale(trainer) != 1.0


def raise_if_not_finite(what: str, values: torch.Tensor, *, epoch: int, step: int,
                        advice: str) -> None:
    """Stop the run with an error that names the quantity, the place and what to change."""
    if not bool(torch.isfinite(values).all()):
        raise FloatingPointError(
            f"non-finite {what} at epoch {epoch}, step {step}: {advice}. Checkpoints and "
            "architecture files already written are kept; resume from the last checkpoint "
            "after changing the setting."
        )


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU RNG states (saved in checkpoints, convention 4)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain types and tensors only, so Lightning's weights_only checkpoint loading accepts it
    state = {"python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cosine_schedule(module: Any, optimizer: torch.optim.Optimizer, lr_min: float
                    ) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine learning-rate schedule to ``lr_min`` over the trainer's ``max_epochs`` (stepped
    once per epoch by the strategy)."""
    trainer = getattr(module, "_trainer", None)
    epochs = max(1, trainer.max_epochs or 1) if trainer is not None else 1
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min)


def checkpoint_record(module: Any, arch: Any, **extra: Any) -> dict[str, Any]:
    """``checkpoint["lightning_nas"]`` of a strategy: its class, the architecture (dict and
    string, for ``lightning-nas export``), the data's input shape, the RNG states and
    ``extra``."""
    return {"strategy": f"{type(module).__module__}.{type(module).__qualname__}",
            "arch": arch.to_dict(), "string": module.space.to_string(arch),
            "input_shape": data_input_shape(module), **extra, "rng": rng_state()}


def data_input_shape(module: Any) -> list[int] | None:
    """``[C, H, W]`` of the images of the data module the module is trained on (its
    ``in_channels`` and ``image_size``), for ``lightning-nas export``; None without one."""
    trainer = getattr(module, "_trainer", None)
    data = getattr(trainer, "datamodule", None) if trainer is not None else None
    channels, size = getattr(data, "in_channels", None), getattr(data, "image_size", None)
    if isinstance(channels, int) and isinstance(size, int):
        return [channels, size, size]
    return None


def path_gradients(trainer: Any, loss: torch.Tensor, params: Sequence[torch.nn.Parameter]
                   ) -> list[torch.Tensor | None]:
    """Gradients of ``loss`` for a one-path step (ENAS, SPOS): None for parameters off the
    path, the others averaged across ranks in one all-reduce (every rank runs the same
    path, so the set of used parameters is the same)."""
    grads = scaled_grad(trainer, loss, params, allow_unused=True)
    used = [i for i, g in enumerate(grads) if g is not None]
    averaged = average_gradients(trainer, [grads[i] for i in used])
    out: list[torch.Tensor | None] = [None] * len(params)
    for i, g in zip(used, averaged):
        out[i] = g
    return out


def set_path_gradients(params: Sequence[torch.nn.Parameter],
                       grads: Sequence[torch.Tensor | None]) -> None:
    """``p.grad = g`` (None off the path: optimisers skip those parameters, so neither
    weight decay nor momentum moves a weight the step did not use)."""
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.detach().clone()


# -- supernets in checkpoints -------------------------------------------------------------------
def space_spec(space: Any) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a space with ``config()`` (rebuilt by
    :func:`space_from_spec`)."""
    return {"class_path": f"{type(space).__module__}.{type(space).__qualname__}",
            "init_args": space.config()}


def space_from_spec(spec: dict[str, Any]) -> Any:
    """The space a checkpoint names. Only a :class:`~lightning_nas.spaces.base.SearchSpace`
    subclass from lightning-nas, from a module already imported or from a module the user
    trusts (:func:`~lightning_nas.spaces.registry.allowed_imports`, ``export
    --allow-import``) is built: a name in a file never imports or calls anything else."""
    import importlib

    from lightning_nas.spaces.base import Constraints, SearchSpace
    from lightning_nas.spaces.registry import check_loadable, import_allowed, refusal_hint

    path = str(spec.get("class_path", ""))
    module_name, _, name = path.rpartition(".")
    if not import_allowed(module_name):
        raise ValueError(f"the checkpoint names the space class {path!r}; only lightning-nas "
                         "spaces, classes of modules already imported or of trusted modules "
                         f"are rebuilt from a file: {refusal_hint(module_name)}")
    cls = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ValueError(f"{path!r} in the checkpoint is not a search space class")
    args = dict(spec.get("init_args") or {})
    check_loadable(args)  # ops by class_path: only from modules imported or trusted
    if isinstance(args.get("constraints"), dict):
        args["constraints"] = Constraints(**args["constraints"])
    return cls(**args)


def supernet_options(space: Any, *, num_classes: int, in_channels: int,
                     channels: int | None = None, layers: int | None = None,
                     checkpoint_cells: int | None = None, channels_last: bool = False,
                     partial_channels: int = 1, stem: str = "cifar") -> dict[str, Any]:
    """Keyword arguments of ``space.supernet`` for a strategy: classes, channels; width
    (``channels``), PC-DARTS's ``partial_channels`` K (cell spaces) and, for the DARTS space,
    cells (``layers``), recomputation (``checkpoint_cells``) and the memory layout
    (``channels_last``) and the stem (``stem="imagenet"``: PC-DARTS's three stride-2 convs,
    224 -> 28 pixels). None keeps the space's supernet default."""
    from lightning_nas.spaces.darts import DartsSpace

    options: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    if channels is not None:
        options["channels"] = channels
    if partial_channels != 1:
        options["partial_channels"] = partial_channels
    if isinstance(space, DartsSpace):
        options.update(checkpoint_cells=checkpoint_cells, channels_last=channels_last)
        if layers is not None:
            options["layers"] = layers
        if stem != "cifar":
            options["stem"] = stem
    elif stem != "cifar":
        raise ValueError(f"stem applies to the DARTS space's supernet, not the {space.name!r} "
                         "space")
    elif layers is not None:
        raise ValueError(f"layers applies to the DARTS space's supernet; the {space.name!r} "
                         "space sets its depth itself (NB201: space.init_args.cells_per_stage)")
    return options


def supernet_meta(space: Any, options: dict[str, Any]) -> dict[str, Any]:
    """What a path strategy stores in ``checkpoint["lightning_nas"]["supernet_spec"]`` so
    :func:`load_supernet` can rebuild its supernet without the strategy."""
    return {"space": space_spec(space), "options": dict(options)}


def load_supernet(path: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(space, supernet in eval mode on the CPU, the checkpoint without its state_dict)``
    of a checkpoint of any one-shot strategy (SPOS, ENAS, DARTS, Once-for-All)."""
    from lightning_nas.checkpoints import CheckpointError, load_checkpoint

    checkpoint = load_checkpoint(path)
    meta = checkpoint.get("lightning_nas") or {}
    spec = meta.get("supernet_spec")
    if spec is not None:
        space = space_from_spec(spec["space"])
        supernet = space.supernet(**spec["options"])
    elif isinstance(meta.get("space"), dict) and isinstance(meta.get("supernet"), dict):
        from lightning_nas.spaces.mobilenet import MobileNetV3Space  # Once-for-All

        space = MobileNetV3Space(**meta["space"])
        supernet = space.supernet(**meta["supernet"])
    else:
        raise CheckpointError(f"{path} holds no supernet (written by {meta.get('strategy')!r}); "
                              "use a checkpoint of a one-shot strategy (SPOS, ENAS, DARTS, "
                              "Once-for-All) from `lightning-nas fit`")
    state = {k[len("supernet."):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith("supernet.")}
    supernet.load_state_dict(state)
    rest = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return space, supernet.eval(), rest
