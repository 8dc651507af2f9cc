"""Scalar search objectives and hard cost constraints over a candidate's metrics.

Metrics are a plain dict with the project's standard keys:

====================  ===============================================================
``accuracy``          validation accuracy (fraction or %, be consistent in one search)
``latency_ms``        ms per batch, median of the measured runs (or a predictor's number)
``params``            trainable parameters (count, not millions)
``flops``             FLOPs of one forward pass (2 per multiply-accumulate)
``macs``              multiply-accumulates, ``flops / 2``
====================  ===============================================================

Objectives are callables ``metrics -> float`` to *maximise*, with a ``name``.
:class:`Constraints` rejects candidates before they are trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["get_metric", "AccuracyObjective", "MnasNetReward", "mnasnet_reward", "Constraints"]


def get_metric(metrics: Mapping[str, Any], key: str) -> float:
    """``float(metrics[key])`` with an error that names the key and the available ones."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    if key not in metrics:
        raise KeyError(
            f"metric {key!r} is missing; available metrics: {sorted(map(str, metrics)) or 'none'}"
        )
    try:
        return float(metrics[key])
    except (TypeError, ValueError):
        raise TypeError(f"metric {key!r} must be a number, got {metrics[key]!r}") from None


@dataclass(frozen=True)
class AccuracyObjective:
    """Plain accuracy (or any one metric) as the objective: ``metrics[key]``.

    Args:
        key: the metric to maximise.
    """

    key: str = "accuracy"

    @property
    def name(self) -> str:
        return self.key

    def __call__(self, metrics: Mapping[str, Any]) -> float:
        return get_metric(metrics, self.key)


def mnasnet_reward(accuracy: float, latency_ms: float, target_ms: float, *,
                   alpha: float = -0.07, beta: float = -0.07) -> float:
    """MnasNet multi-objective reward (Tan et al., CVPR 2019, Eq. 2).

    ``ACC(m) * (LAT(m) / T) ** w`` with ``w = alpha`` if ``LAT(m) <= T`` else ``beta``.

    The paper's soft constraint is ``alpha = beta = -0.07`` (a 2x latency change trades for
    about 5% relative accuracy: 2**-0.07 ~ 0.953); the hard constraint is ``alpha = 0,
    beta = -1`` (no reward for being faster than T, reward scaled by T/LAT above it).

    Args:
        accuracy: ACC(m), >= 0 (fraction or %; the reward scales with it).
        latency_ms: LAT(m) in ms, > 0.
        target_ms: target latency T in ms, > 0.
        alpha: exponent when the latency meets the target (<= 0 in the paper).
        beta: exponent when it misses the target.

    Returns:
        The reward (same unit as ``accuracy``).
    """
    accuracy, latency_ms, target_ms = float(accuracy), float(latency_ms), float(target_ms)
    if not (math.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"target latency T must be a finite number > 0 ms, got {target_ms!r}")
    if not (math.isfinite(latency_ms) and latency_ms > 0):
        raise ValueError(f"latency must be a finite number > 0 ms, got {latency_ms!r}")
    if not (math.isfinite(accuracy) and accuracy >= 0):
        raise ValueError(f"accuracy must be a finite number >= 0, got {accuracy!r}")
    w = alpha if latency_ms <= target_ms else beta  # Tan et al. 2019, Eq. 2
    return accuracy * (latency_ms / target_ms) ** w


@dataclass(frozen=True)
class MnasNetReward:
    """MnasNet reward as an objective over a metrics dict (Tan et al., CVPR 2019, Eq. 2).

    Use :meth:`soft` (alpha = beta = -0.07) or :meth:`hard` (alpha = 0, beta = -1) for the
    paper's two settings.

    Args:
        target_ms: target latency T in ms (> 0).
        alpha: exponent when ``latency <= T``.
        beta: exponent when ``latency > T``.
        accuracy_key: metric holding ACC(m).
        latency_key: metric holding LAT(m) in ms.
    """

    target_ms: float
    alpha: float = -0.07
    beta: float = -0.07
    accuracy_key: str = "accuracy"
    latency_key: str = "latency_ms"

    def __post_init__(self) -> None:
        t = self.target_ms
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"MnasNetReward target_ms (T) must be a finite number > 0 ms, "
                             f"got {t!r}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"MnasNetReward {name} must be a finite number, got {value!r}")
            if value > 0:
                raise ValueError(f"MnasNetReward {name}={value} > 0 would reward slower models; "
                                 "the paper uses alpha, beta <= 0")

    @classmethod
    def soft(cls, target_ms: float, **keys: str) -> MnasNetReward:
        """Soft constraint: alpha = beta = -0.07 (MnasNet's default)."""
        return cls(target_ms, alpha=-0.07, beta=-0.07, **keys)

    @classmethod
    def hard(cls, target_ms: float, **keys: str) -> MnasNetReward:
        """Hard constraint: alpha = 0, beta = -1."""
        return cls(target_ms, alpha=0.0, beta=-1.0, **keys)

    @property
    def name(self) -> str:
        return "mnasnet_reward"

    def __call__(self, metrics: Mapping[str, Any]) -> float:
        return mnasnet_reward(get_metric(metrics, self.accuracy_key),
                              get_metric(metrics, self.latency_key), self.target_ms,
                              alpha=self.alpha, beta=self.beta)


@dataclass(frozen=True)
class Constraints:
    """Hard limits on a candidate's costs, checked before it is trained.

    Not to be confused with :class:`lightning_nas.spaces.base.Constraints`, which limits
    the space itself (params, depth) at validation time; this one works on measured or
    predicted metrics and includes latency.

    Args:
        max_latency_ms: limit on ``metrics["latency_ms"]`` (ms per batch).
        max_params: limit on ``metrics["params"]`` (count).
        max_flops: limit on ``metrics["flops"]`` (FLOPs, 2 per MAC).

    Example:
        >>> Constraints(max_latency_ms=5.0).check({"latency_ms": 7.5})
        ['latency_ms = 7.5 > max_latency_ms = 5']
    """

    max_latency_ms: float | None = None
    max_params: float | None = None
    max_flops: float | None = None

    _KEYS = {"max_latency_ms": "latency_ms", "max_params": "params", "max_flops": "flops"}

    def __post_init__(self) -> None:
        for name in self._KEYS:
            value = getattr(self, name)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"Constraints {name} must be a finite number > 0 or None, "
                                 f"got {value!r}")

    @property
    def active(self) -> dict[str, float]:
        """``{metric key: limit}`` for the limits that are set."""
        return {key: getattr(self, name) for name, key in self._KEYS.items()
                if getattr(self, name) is not None}

    def check(self, metrics: Mapping[str, Any]) -> list[str]:
        """The violated limits as readable reasons; empty when the candidate is feasible.

        Only the metrics of limits that are set are needed.

        Raises:
            KeyError: a metric needed by a set limit is missing (names it and the available).
            ValueError: a needed metric is NaN.
        """
        reasons = []
        for name, key in self._KEYS.items():
            limit = getattr(self, name)
            if limit is None:
                continue
            value = get_metric(metrics, key)
            if math.isnan(value):
                raise ValueError(f"metric {key!r} is NaN; cannot check {name}")
            if value > limit:
                reasons.append(f"{key} = {value:g} > {name} = {limit:g}")
        return reasons

    def satisfied(self, metrics: Mapping[str, Any]) -> bool:
        """True when :meth:`check` finds no violation."""
        return not self.check(metrics)
