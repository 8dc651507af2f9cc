"""Static model costs: parameter count and FLOPs / MACs.

FLOPs are counted with PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode`,
which intercepts the aten operators of one forward pass. It counts the operators that
dominate network cost (``mm``/``addmm``/``bmm``, convolutions, scaled-dot-product
attention) with 2 FLOPs per multiply-accumulate; element-wise operators (bias add,
batch norm, activations, pooling) are *not* counted. MACs are therefore exactly
``FLOPs / 2``. Papers that quote "FLOPs" for mobile networks (MnasNet, Once-for-All) usually
mean multiply-adds, i.e. our ``macs``: compare like with like.

Shapes follow one convention across ``hardware/``: ``input_shape`` is the shape of ONE
sample without the batch dimension, e.g. ``(3, 32, 32)``; the batch size is separate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FlopCount", "count_parameters", "count_flops", "model_device", "make_input"]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of a whole batch.

    Attributes:
        flops: floating-point operations (2 per multiply-accumulate), whole batch.
        macs: multiply-accumulates, ``flops // 2``.
        batch_size: leading dimension of the input that was counted.
        by_operator: FLOPs per aten operator, e.g. ``{"aten.convolution": 27648}``.
        by_module: FLOPs per module path (``""`` is the whole model), summed over operators.
    """

    flops: int
    macs: int
    batch_size: int
    by_operator: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def mflops(self) -> float:
        """MFLOPs (1e6 FLOPs) of the whole batch."""
        return self.flops / 1e6

    @property
    def flops_per_sample(self) -> float:
        return self.flops / self.batch_size

    @property
    def macs_per_sample(self) -> float:
        return self.macs / self.batch_size


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (shared parameters counted once).

    Args:
        model: any module; works on the meta device too (no memory needed).
        trainable_only: count only parameters with ``requires_grad=True``.

    Returns:
        The number of scalar parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters needs an nn.Module, got {type(model).__name__}")
    # nn.Module.parameters() already de-duplicates shared (tied) parameters.
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a module with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def make_input(input_shape: Sequence[int], batch_size: int = 1, *,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               seed: int = 0) -> torch.Tensor:
    """A random normal input of shape ``(batch_size, *input_shape)``.

    Args:
        input_shape: shape of one sample without the batch dimension, e.g. ``(3, 32, 32)``.
        batch_size: leading dimension (>= 1).
        device: where the tensor lives.
        dtype: floating dtype of the tensor.
        seed: seed of a private generator, so the caller's RNG stream is not touched.
    """
    shape = _check_shape(input_shape)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device)
    if device.type == "meta":
        return torch.empty((batch_size, *shape), device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch_size, *shape), generator=gen, dtype=dtype).to(device)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(
            f"input_shape must be a sequence of ints (one sample, no batch dim), "
            f"got {input_shape!r}"
        ) from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(
            f"input_shape must be non-empty with positive sizes (one sample without the batch "
            f"dimension, e.g. (3, 32, 32)), got {tuple(input_shape)!r}"
        )
    return shape


def count_flops(model: nn.Module, inputs: torch.Tensor | Sequence[int] | tuple[Any, ...], *,
                batch_size: int = 1) -> FlopCount:
    """FLOPs and MACs of one forward pass, counted by ``FlopCounterMode``.

    The model runs once in eval mode under ``torch.no_grad()``; its training mode is restored
    afterwards. Models that return a tuple (e.g. ``(logits, aux_logits)``) are fine: only the
    operators executed are counted, whatever is returned. Meta-device models work with a
    shape (an empty meta input is made), which counts FLOPs without allocating weights.

    Args:
        model: the network.
        inputs: a tensor used as is (its first dimension is the batch), a tuple of tensors
            passed as positional arguments, or the shape of one sample without the batch
            dimension, e.g. ``(3, 32, 32)``, in which case a random input is made on the
            model's device.
        batch_size: batch dimension to prepend when ``inputs`` is a shape.

    Returns:
        A :class:`FlopCount` for the whole batch (see ``flops_per_sample``).

    Example:
        >>> count_flops(nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8)).macs  # 8*3*3*3 * 8*8
        13824
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_flops needs an nn.Module, got {type(model).__name__}")
    if isinstance(inputs, torch.Tensor):
        args: tuple[Any, ...] = (inputs,)
    elif isinstance(inputs, tuple) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        args = inputs
    else:
        args = (make_input(inputs, batch_size, device=model_device(model)),)
    batch = int(args[0].shape[0]) if args[0].dim() > 0 else 1

    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(*args)
    finally:
        model.train(was_training)

    counts = counter.get_flop_counts()  # {module path: {aten op: FLOPs}}, "Global" = total
    by_operator = {str(op): int(n) for op, n in counts.get("Global", {}).items()}
    root = type(model).__name__
    by_module: dict[str, int] = {}
    for name, ops in counts.items():
        if name == "Global":
            continue
        # FlopCounterMode names modules "<RootClass>.<child path>"; strip the root class name.
        path = "" if name == root else name[len(root) + 1:] if name.startswith(root + ".") else name
        by_module[path] = int(sum(ops.values()))
    total = int(counter.get_total_flops())
    return FlopCount(flops=total, macs=total // 2, batch_size=batch,
                     by_operator=by_operator, by_module=by_module)
