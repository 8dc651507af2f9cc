"""Non-dominated sorting and hypervolume against hand counts, brute force and Monte Carlo."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lightning_nas.hardware import (
    crowding_distance,
    dominates,
    front_ranks,
    hypervolume,
    non_dominated_sort,
    pareto_front,
)


def brute_force_front(points, directions):
    """Independent O(N^2) definition: i is on the front iff no j dominates it."""
    sign = np.array([-1 if d == "max" else 1 for d in directions])
    q = np.asarray(points, dtype=float) * sign
    return [i for i in range(len(q)) if not any(
        np.all(q[j] <= q[i]) and np.any(q[j] < q[i]) for j in range(len(q)))]


def inclusion_exclusion_hv(points, reference):
    """Exact union volume of boxes [p, ref] (minimisation) by inclusion-exclusion (tiny N)."""
    pts = [np.asarray(p, float) for p in points if np.all(np.asarray(p) < reference)]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, k):
            corner = np.max(subset, axis=0)  # intersection of boxes: [max of corners, ref]
            total += (-1) ** (k + 1) * np.prod(np.asarray(reference) - corner)
    return total


def test_dominates_with_directions():
    assert dominates([0.9, 2.0], [0.8, 3.0], ["max", "min"])
    assert not dominates([0.9, 2.0], [0.9, 2.0], ["max", "min"])  # equal: no domination
    assert not dominates([0.9, 4.0], [0.8, 3.0], ["max", "min"])  # trade-off


def test_fronts_hand_example():
    # (accuracy max, latency ms min)
    pts = [[0.90, 10.0],  # 0 front
           [0.80, 5.0],   # 1 front
           [0.85, 12.0],  # 2 dominated by 0
           [0.70, 6.0],   # 3 dominated by 1
           [0.60, 20.0],  # 4 dominated by all of 0..3
           [0.90, 10.0]]  # 5 duplicate of 0: shares its front
    fronts = non_dominated_sort(pts, ["max", "min"])
    assert fronts == [[0, 1, 5], [2, 3], [4]]
    assert pareto_front(pts, ["max", "min"]) == [0, 1, 5]
    assert front_ranks(pts, ["max", "min"]).tolist() == [0, 0, 1, 1, 2, 0]


@pytest.mark.parametrize("m", [2, 3, 4])
def test_sort_matches_brute_force(m):
    rng = np.random.default_rng(m)
    pts = rng.integers(0, 5, size=(60, m)).astype(float)  # small ints: many ties/duplicates
    directions = ["max", "min", "min", "max"][:m]
    fronts = non_dominated_sort(pts, directions)
    assert sorted(i for f in fronts for i in f) == list(range(60))
    assert fronts[0] == brute_force_front(pts, directions)
    remaining = list(range(60))
    for front in fronts:  # each front is the first front of what is left
        sub = brute_force_front(pts[remaining], directions)
        assert front == [remaining[i] for i in sub]
        remaining = [i for i in remaining if i not in front]


def test_empty_and_errors():
    assert non_dominated_sort(np.zeros((0, 2)), ["max", "min"]) == []
    assert pareto_front([], ["max", "min"]) == []
    assert hypervolume(np.zeros((0, 2)), [0, 0], ["max", "min"]) == 0.0
    with pytest.raises(ValueError, match=r"non-finite.*point 1, objective 0"):
        pareto_front([[1.0, 2.0], [math.nan, 1.0]], ["max", "min"])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_front([[1.0, 2.0]], ["max", "minimise"])
    with pytest.raises(ValueError, match="2 directions for 3 objectives"):
        pareto_front([[1.0, 2.0, 3.0]], ["max", "min"])
    with pytest.raises(ValueError, match="reference"):
        hypervolume([[1.0, 2.0]], [0.0], ["max", "min"])
    with pytest.raises(ValueError, match="non-finite"):
        hypervolume([[1.0, 2.0]], [math.nan, 5.0], ["max", "min"])


def test_hypervolume_2d_hand_area():
    # minimise both, reference (4, 4): union of [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4]
    pts = [[1, 3], [2, 2], [3, 1]]
    assert hypervolume(pts, [4, 4], ["min", "min"]) == pytest.approx(3 + 2 + 1)
    # accuracy max with reference 0, latency min with reference 10 ms:
    # (0.9, 6) -> box 0.9 x 4; (0.5, 2) adds 0.5 x (6 - 2) -> 3.6 + 2.0
    pts = [[0.9, 6.0], [0.5, 2.0], [0.4, 8.0]]  # the last is dominated
    assert hypervolume(pts, [0.0, 10.0], ["max", "min"]) == pytest.approx(5.6)


def test_hypervolume_duplicates_and_points_outside_reference():
    base = hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4], ["min", "min"])
    with_extra = [[1, 3], [2, 2], [2, 2], [3, 1], [5, 0], [4, 1]]  # dup, beyond, on boundary
    assert hypervolume(with_extra, [4, 4], ["min", "min"]) == pytest.approx(base)


def test_hypervolume_3d_hand_volume():
    # two unit-corner boxes in [0,2]^3 to reference (2,2,2):
    # [0,2]x[1,2]x[1,2] volume 2 and [1,2]x[0,2]x[0,2] volume 4, overlap [1,2]x[1,2]x[1,2] = 1
    pts = [[0, 1, 1], [1, 0, 0]]
    assert hypervolume(pts, [2, 2, 2], ["min"] * 3) == pytest.approx(5.0)
    # one point: a box 0.5 x 0.2 x 0.9 above the reference 0 (all maximised)
    assert hypervolume([[0.5, 0.2, 0.9]], [0, 0, 0], ["max"] * 3) == pytest.approx(0.09)
    # a point worse than the reference (maximising, reference 1) adds nothing
    assert hypervolume([[0.5, 0.2, 0.9]], [1, 1, 1], ["max"] * 3) == 0.0


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(m):
    rng = np.random.default_rng(10 + m)
    pts = rng.random((9, m))
    ref = np.full(m, 1.1)
    assert hypervolume(pts, ref, ["min"] * m) == pytest.approx(
        inclusion_exclusion_hv(pts, ref), rel=1e-9)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_monte_carlo(m):
    rng = np.random.default_rng(100 + m)
    directions = ["max", "min", "max", "min"][:m]
    pts = rng.random((40, m))
    ref = np.array([0.0 if d == "max" else 1.0 for d in directions])
    exact = hypervolume(pts, ref, directions)
    samples = rng.random((200_000, m))  # uniform in the unit box, whose volume is 1
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    q, s = pts * sign, samples * sign
    covered = np.zeros(len(s), dtype=bool)
    for p in q:  # sample covered when some point weakly dominates it
        covered |= np.all(p <= s, axis=1)
    estimate = covered.mean()
    stderr = math.sqrt(estimate * (1 - estimate) / len(s))
    assert abs(exact - estimate) < 6 * stderr + 1e-9  # fixed seed: deterministic


def test_crowding_distance():
    pts = [[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]]
    d = crowding_distance(pts, ["min", "min"])
    assert math.isinf(d[0]) and math.isinf(d[3])
    # point 1: neighbours 0 and 2 -> (3-0)/4 + (4-1)/4 = 1.5; point 2: (4-1)/4 + (3-0)/4
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.5)
    assert np.all(np.isinf(crowding_distance([[1.0, 2.0], [2.0, 1.0]])))


def _fronts_by_definition(points, directions):
    """Fronts by repeatedly peeling the points no remaining point dominates (slow, plain)."""
    remaining, fronts = list(range(len(points))), []
    while remaining:
        front = [i for i in remaining
                 if not any(dominates(points[j], points[i], directions) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


@pytest.mark.parametrize("directions", [["max", "min"], ["min", "min"], ["max", "max"]])
def test_two_objective_sort_equals_the_definition_with_ties(directions):
    """The O(N log N) two-objective sweep against the definition, on integer grids (many
    ties and duplicate points) and on continuous values."""
    rng = np.random.default_rng(0)
    for case in range(200):
        n = int(rng.integers(1, 30))
        points = (rng.integers(0, 4, size=(n, 2)).astype(float) if case % 2
                  else rng.random((n, 2)))
        assert non_dominated_sort(points, directions) == _fronts_by_definition(
            points.tolist(), directions)


def test_two_objective_sort_of_the_whole_nb201_size_is_a_sweep():
    """15,625 points: the fronts partition the points and no point of a front is dominated
    by a point of the same or a later front (checked on a sample of pairs)."""
    rng = np.random.default_rng(1)
    points = rng.random((15_625, 2))
    fronts = non_dominated_sort(points, ["max", "min"])
    assert sorted(i for f in fronts for i in f) == list(range(15_625))
    rank = front_ranks(points, ["max", "min"])
    for _ in range(2000):
        i, j = rng.integers(0, 15_625, size=2)
        if dominates(points[i], points[j], ["max", "min"]):
            assert rank[i] < rank[j]
