"""Latency budgets of a Once-for-All specialisation: the fastest subnet of a space and the
check that every budget can be met before any evaluation (used by ``lightning-nas search``
with ``budgets``; see :mod:`lightning_nas.search.cli`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lightning_nas.spaces.base import SearchSpace


def latency_source(hooks: Sequence[Any]) -> str:
    """Where the hooks' ``latency_ms`` comes from, in words (for messages and reports)."""
    from lightning_nas.hardware.costs import CostHook

    for hook in hooks:
        table = getattr(hook, "table", None)
        if table is not None and callable(getattr(table, "predict", None)):
            meta = dict(getattr(table, "metadata", {}) or {})
            return (f"the latency table {getattr(hook, 'path', '?')} (built on "
                    f"{meta.get('hardware') or meta.get('device', '?')}, device "
                    f"{meta.get('device', '?')}, batch {meta.get('batch_size', '?')}, "
                    f"{meta.get('num_threads') or 'default'} thread(s))")
        if isinstance(hook, CostHook) and hook.latency:
            kw = hook.latency_kwargs
            try:
                from lightning_nas.hardware.latency import device_name

                hardware = device_name(kw.get("device") or "cpu")
            except Exception as err:  # noqa: BLE001 - e.g. no CUDA here
                hardware = f"unknown hardware ({type(err).__name__})"
            return (f"{hardware} (measured by CostHook on device {kw.get('device')}, batch "
                    f"{hook.batch_size}, {kw.get('num_threads') or 'default'} thread(s))")
    return ", ".join(repr(h) for h in hooks) or "no metric hook"


def fastest_arch(space: SearchSpace) -> Any:
    """The subnet :func:`check_budgets` takes as the fastest of ``space``.

    Every elastic dimension of a Once-for-All space only adds work as it grows: more blocks
    per stage (depth), larger depthwise kernels, wider expansions and larger inputs all add
    multiply-accumulates and memory traffic, and nothing gets cheaper. So the subnet with the
    smallest choice everywhere (``space.smallest()``) at the lowest resolution has the fewest
    FLOPs and bytes of every subnet and, on any device, the lowest latency up to measurement
    noise; it is the lower end OFA's latency-constrained search starts from. (A per-layer
    table's noise could make another subnet a hair faster; a budget within that hair is
    let through and the search may still find a subnet under it.)
    """
    smallest = getattr(space, "smallest", None)
    if not callable(smallest):
        raise TypeError(f"budgets need a space with smallest() (the fastest subnet); the "
                        f"{space.name!r} space has none")
    resolutions = getattr(space, "resolutions", None)
    if resolutions:
        return smallest(min(resolutions))
    return smallest()


def check_budgets(space: SearchSpace, budgets: Sequence[float], hooks: Sequence[Any],
                  build_network: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Check that every latency budget can be met, before any evaluation.

    Runs the metric hooks on :func:`fastest_arch` (the network is built, with
    ``build_network`` or ``space.build``, only when a hook needs it).

    Args:
        space: the search space.
        budgets: latency budgets in ms per batch of the hooks' latency.
        hooks: the search's metric hooks; one must give ``latency_ms``.
        build_network: ``arch -> nn.Module`` for the hooks (the evaluator's ``network``).

    Returns:
        ``{"arch": fastest subnet string, "latency_ms": its latency, "source": where the
        latency comes from}``.

    Raises:
        ValueError: no hook gives ``latency_ms``, or a budget is below the fastest subnet's
            latency (the message names the budgets, the fastest subnet, its latency and the
            device or table).
    """
    arch = fastest_arch(space)
    needs_network = any(getattr(h, "needs_network", True) for h in hooks)
    network = (build_network or space.build)(arch) if needs_network else None
    metrics: dict[str, Any] = {}
    for hook in hooks:
        metrics.update(hook(arch, network))
    try:
        fastest = float(metrics["latency_ms"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            "budgets are latency budgets (ms) on the metric latency_ms, which no metric hook "
            f"gives (hooks {list(hooks)!r} give {sorted(metrics)}); add "
            "lightning_nas.hardware.LatencyTableHook (a per-layer table built on the target "
            "device) or lightning_nas.hardware.CostHook with latency: true to metric_hooks"
        ) from None
    source = latency_source(hooks)
    text = space.to_string(arch)
    impossible = [b for b in budgets if b < fastest]
    if impossible:
        names = ", ".join(f"{b:g} ms" for b in impossible)
        raise ValueError(
            f"latency budget(s) {names} cannot be met: the fastest subnet of the space, {text} "
            f"(smallest choice in every dimension, lowest resolution), takes {fastest:.4g} ms "
            f"per batch on {source}. Give budgets of at least {fastest:.4g} ms, or rebuild the "
            "table / measure on the intended device")
    return {"arch": text, "latency_ms": fastest, "source": source}


__all__ = ["check_budgets", "fastest_arch", "latency_source"]
