"""Helpers shared by the strategy LightningModules (functions, not a base class)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


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
