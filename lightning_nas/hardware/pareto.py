"""Pareto dominance, non-dominated sorting and exact hypervolume for any number of objectives.

Every function takes ``points`` as an ``(N, M)`` array-like (N candidates, M objectives) and
``directions``, one ``"max"`` or ``"min"`` per objective (e.g. maximise accuracy, minimise
latency). Internally everything is turned into minimisation by negating the ``"max"``
columns. Non-finite values (NaN, inf) are refused with an error that names the point and the
objective: a NaN would silently make a point incomparable to every other.

Ties: identical points do not dominate each other, so duplicates share a front.

References:
    Deb et al., "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC 2002
    (fast non-dominated sort, crowding distance, Sec. III-A/B).
    While et al., "A faster algorithm for calculating hypervolume", IEEE TEC 2006
    (HSO: hypervolume by slicing objectives), used here for 3+ objectives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["Direction", "dominates", "non_dominated_sort", "pareto_front", "front_ranks",
           "crowding_distance", "hypervolume", "to_minimisation"]

Direction = Literal["max", "min"]
_VALID = ("max", "min")


def _check_directions(directions: Sequence[str], m: int) -> np.ndarray:
    if isinstance(directions, str):
        directions = [directions]
    directions = list(directions)
    if len(directions) != m:
        raise ValueError(f"got {len(directions)} directions for {m} objectives; give one "
                         f"'max' or 'min' per objective")
    for i, d in enumerate(directions):
        if d not in _VALID:
            raise ValueError(f"direction {i} is {d!r}; each direction must be 'max' or 'min'")
    return np.array([-1.0 if d == "max" else 1.0 for d in directions])


def _check_finite(arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = f"point {idx[0]}, objective {idx[1]}" if arr.ndim == 2 else f"objective {idx[0]}"
        raise ValueError(f"{what} holds a non-finite value ({arr[tuple(idx)]}) at {where}; "
                         "drop or fix failed candidates before Pareto analysis")


def to_minimisation(points: Sequence[Sequence[float]] | np.ndarray,
                    directions: Sequence[str]) -> np.ndarray:
    """``(N, M)`` float array with the ``"max"`` columns negated (so smaller is better).

    Raises:
        ValueError: wrong shape, wrong directions or a non-finite value.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(directions) if not isinstance(directions, str) else 1)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D (N candidates, M objectives) array, got shape "
                         f"{arr.shape}")
    sign = _check_directions(directions, arr.shape[1])
    _check_finite(arr, "points")
    return arr * sign


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    q = to_minimisation([a, b], directions)
    return bool(np.all(q[0] <= q[1]) and np.any(q[0] < q[1]))


def non_dominated_sort(points: Sequence[Sequence[float]] | np.ndarray,
                       directions: Sequence[str]) -> list[list[int]]:
    """Fronts of non-dominated points, best first (NSGA-II fast non-dominated sort).

    Args:
        points: ``(N, M)`` objective values.
        directions: ``"max"`` or ``"min"`` per objective.

    Returns:
        A list of fronts, each a sorted list of point indices; front 0 is the Pareto front.
        Every index appears exactly once.
    """
    q = to_minimisation(points, directions)
    n = q.shape[0]
    if n == 0:
        return []
    if q.shape[1] == 2:
        return _non_dominated_sort_2d(q)
    dominated_by_count = np.zeros(n, dtype=np.int64)
    dominates_sets: list[np.ndarray] = []
    for i in range(n):  # one row at a time: O(N^2 M) time, O(N M) memory
        le = np.all(q[i] <= q, axis=1)
        lt = np.any(q[i] < q, axis=1)
        dom = np.flatnonzero(le & lt)  # points that i dominates
        dominates_sets.append(dom)
        dominated_by_count[dom] += 1
    fronts: list[list[int]] = []
    current = np.flatnonzero(dominated_by_count == 0)
    while current.size:
        fronts.append(sorted(int(i) for i in current))
        nxt = []
        for i in current:
            dominated_by_count[dominates_sets[i]] -= 1
            nxt.extend(j for j in dominates_sets[i] if dominated_by_count[j] == 0)
        current = np.array(sorted(set(nxt)), dtype=np.int64)
    return fronts


def _non_dominated_sort_2d(q: np.ndarray) -> list[list[int]]:
    """The fronts of two minimised objectives in O(N log N) (a sweep; Jensen 2003): in the
    order of the first objective (ties: the second), each point joins the first front whose
    latest point does not dominate it, found by binary search (the fronts' latest points
    dominate the new point for a prefix of the fronts). The generic sort above is O(N^2):
    18 s for the 15,625 NAS-Bench-201 cells."""
    order = np.lexsort((q[:, 1], q[:, 0]))
    fronts: list[list[int]] = []
    latest: list[tuple[float, float]] = []  # (q0, q1) of each front's latest point
    for i in order.tolist():
        x, y = float(q[i, 0]), float(q[i, 1])
        lo, hi = 0, len(fronts)
        while lo < hi:  # does front mid's latest point (x' <= x) dominate (x, y)?
            mid = (lo + hi) // 2
            lx, ly = latest[mid]
            if ly < y or (ly == y and lx < x):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(fronts):
            fronts.append([])
            latest.append((x, y))
        fronts[lo].append(i)
        latest[lo] = (x, y)
    return [sorted(front) for front in fronts]


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray,
                 directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (sorted); duplicates of a front point included."""
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else []


def front_ranks(points: Sequence[Sequence[float]] | np.ndarray,
                directions: Sequence[str]) -> np.ndarray:
    """Front index per point (0 = on the Pareto front), shape ``(N,)``."""
    fronts = non_dominated_sort(points, directions)
    ranks = np.zeros(sum(len(f) for f in fronts), dtype=np.int64)
    for r, front in enumerate(fronts):
        ranks[front] = r
    return ranks


def crowding_distance(points: Sequence[Sequence[float]] | np.ndarray,
                      directions: Sequence[str] | None = None) -> np.ndarray:
    """NSGA-II crowding distance of the points of ONE front (Deb et al. 2002, Sec. III-B).

    Boundary points of every objective get ``inf``; the others the sum over objectives of
    the normalised gap between their two neighbours. Larger means less crowded.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D array, got shape {arr.shape}")
    if directions is not None:
        _check_directions(directions, arr.shape[1])
    _check_finite(arr, "points")
    n, m = arr.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(arr[:, k], kind="stable")
        col = arr[order, k]
        dist[order[0]] = dist[order[-1]] = np.inf
        span = col[-1] - col[0]
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


# --- hypervolume ---------------------------------------------------------------------------

def _nondominated_min(q: np.ndarray) -> np.ndarray:
    """Unique rows of ``q`` (minimisation) that no other row weakly dominates."""
    q = np.unique(q, axis=0)
    keep = np.ones(len(q), dtype=bool)
    for i in range(len(q)):
        if keep[i]:
            # rows weakly dominated by q[i] (other than itself: rows are unique)
            dominated = np.all(q[i] <= q, axis=1)
            dominated[i] = False
            keep &= ~dominated
    return q[keep]


def _hv2d(q: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by 2-D minimisation points and bounded by ``ref`` (sweep over x)."""
    order = np.lexsort((q[:, 1], q[:, 0]))  # x ascending, then y ascending
    area, best_y = 0.0, ref[1]
    for x, y in q[order]:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)  # horizontal strip [x, ref_x] x [y, best_y]
            best_y = y
    return area


def _hv(q: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume (minimisation, every point strictly better than ``ref``)."""
    n, d = q.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - q[:, 0].min())
    if d == 2:
        return _hv2d(q, ref)
    # HSO slicing on the last objective: between consecutive z values the cross-section is
    # the (d-1)-D hypervolume of the points already passed (While et al. 2006).
    q = q[np.argsort(q[:, -1], kind="stable")]
    volume = 0.0
    front = np.empty((0, d - 1))
    for i in range(n):
        z_next = q[i + 1, -1] if i + 1 < n else ref[-1]
        p = q[i, :-1]
        if not np.any(np.all(front <= p, axis=1)):  # p adds to the cross-section
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
        depth = z_next - q[i, -1]
        if depth > 0:
            volume += _hv(front, ref[:-1]) * depth
    return volume


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float],
                directions: Sequence[str]) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly beat the reference in every objective add nothing. Exact for
    any number of objectives: a sweep for 2, HSO slicing for 3+ (fine for the few hundred
    front points of a search; the cost grows quickly with the number of objectives).

    Args:
        points: ``(N, M)`` objective values (all candidates; dominated ones are dropped).
        reference: ``M`` values, worse than the points of interest in every objective
            (e.g. accuracy 0 and the latency budget). Fix it across a search so values are
            comparable.
        directions: ``"max"`` or ``"min"`` per objective.

    Returns:
        The hypervolume in the product of the objectives' units (e.g. accuracy x ms).
    """
    q = to_minimisation(points, directions)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (q.shape[1],):
        raise ValueError(f"reference must have one value per objective ({q.shape[1]}), "
                         f"got shape {ref.shape}")
    _check_finite(ref, "reference")
    ref = ref * _check_directions(directions, q.shape[1])
    q = q[np.all(q < ref, axis=1)]
    if q.shape[0] == 0:
        return 0.0
    return float(_hv(_nondominated_min(q), ref))
