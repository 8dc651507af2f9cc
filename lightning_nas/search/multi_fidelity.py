"""Multi-fidelity samplers: successive halving, Hyperband and BOHB over a training budget.

A multi-fidelity sampler asks for an architecture *and a budget* (``ask_trial() -> (arch,
fidelity)``; the fidelity is training epochs for
:class:`~lightning_nas.search.training.TrainingEvaluator`). The search loop passes the
fidelity to the evaluator (``evaluator(arch, fidelity=...)``), journals it with the record
(``"fidelity"``), and its best architecture is the best one *at the highest fidelity
evaluated so far* (HpBandSter's incumbent), not a lucky one-epoch score.

**Hyperband** (Li et al., JMLR 2018, Algorithm 1), budgets ``r = min_fidelity`` to
``R = max_fidelity``: ``s_max = floor(log_eta(R / r))``; brackets ``s = s_max, ..., 0``, then
again. Bracket ``s`` starts ``n = ceil((s_max + 1) / (s + 1) * eta^s)`` new architectures at
budget ``R * eta^-s`` and runs successive halving: when every result of a rung is in, the best
``floor(n_i / eta)`` go on to the next rung at ``eta`` times the budget, up to ``R``. The
sampler only asks for ``(arch, budget)``; whether a promotion retrains from scratch (as BOHB's
HpBandSter does) or continues the lower rung's run (``TrainingEvaluator(continue_training=
True)``, as ASHA and Ray Tune do) is the evaluator's choice, and every run is a journal record.
With ``R = 9, r = 1, eta = 3``: bracket 2 is 9 x 1 epoch, 3 x 3, 1 x 9 (27 epochs from
scratch, 9 + 6 + 6 = 21 continued); bracket 1 is 5 x 3, 1 x 9 (24, or 21); bracket 0 is 3 x 9
(27).

**Successive halving** (Jamieson & Talwalkar, AISTATS 2016, as Hyperband's inner loop):
only the most aggressive bracket ``s_max``, repeated.

**BOHB** (Falkner et al., ICML 2018, Algorithm 2): Hyperband whose new architectures come
from a TPE-style model instead of uniformly at random (a fraction ``random_fraction`` stays
random). The model is fitted on the results of the largest budget that has at least
``d + 2`` successful results (``d`` = the space's number of categorical decisions, BOHB's
``N_min = d + 1`` plus one so that good and bad sets both exist): the best
``max(N_min, ceil(top_fraction * N))`` results form the good set, the others the bad set
(at least ``N_min`` of them, so the sets overlap when results are few, as in BOHB). Every
decision is categorical, so each set's density is a product over decisions of an
Aitchison-Aitken kernel average (the kernel BOHB's statsmodels KDE uses for unordered
variables: weight ``1 - bw`` on a good point's option and ``bw / (K - 1)`` on each of the
other ``K - 1``), with one ``bandwidth`` for all decisions (>= ``min_bandwidth``) instead of
BOHB's per-dimension normal-reference rule. ``num_samples`` candidates are drawn from the good
density with the bandwidth widened by ``bandwidth_factor``, and the unseen one with the
largest ``l(x) / g(x)`` is asked.

**Failed and rejected candidates** take no slot: a new architecture whose result is
``None`` in a bracket's first rung is replaced by another new one (so a constraint that
rejects many does not empty the brackets); a promoted one that fails is simply not promoted
further. **Parallel trials**: a rung waits for all its results before promoting; when every
open bracket waits, the next bracket starts (HpBandSter runs brackets side by side the same
way), so an ask never blocks and the same seed with the same trials in flight gives the same
search. Results are told in ask order (the loop guarantees it), so a FIFO of pending asks
says which bracket and rung each result belongs to.

State: the open brackets, the pending asks and (BOHB) the successful results per budget are
part of ``state_dict`` (the observations grow with the search: about 30 bytes per result).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from lightning_nas.search.samplers import Sampler
from lightning_nas.spaces.base import Arch, SearchSpace


def hyperband_brackets(min_fidelity: float, max_fidelity: float, eta: float
                       ) -> list[dict[str, list[float] | list[int] | int]]:
    """Brackets ``s = s_max, ..., 0`` of Hyperband: ``{"s", "sizes", "fidelities"}`` per
    bracket (the architectures and the budget of each rung). Integer budgets when both
    ends are integers (training epochs)."""
    if not (min_fidelity > 0 and max_fidelity >= min_fidelity):
        raise ValueError(f"need 0 < min_fidelity <= max_fidelity, got {min_fidelity}, "
                         f"{max_fidelity}")
    if not eta > 1:
        raise ValueError(f"eta must be > 1 (the halving rate; Hyperband uses 3), got {eta}")
    s_max = int(math.floor(math.log(max_fidelity / min_fidelity, eta) + 1e-9))
    integer = float(min_fidelity).is_integer() and float(max_fidelity).is_integer()
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s - 1e-9))
        sizes, fidelities = [], []
        for i in range(s + 1):
            sizes.append(n if i == 0 else int(math.floor(sizes[-1] / eta + 1e-9)))
            r = max_fidelity * eta ** (i - s)
            fidelities.append(max(min_fidelity, round(r)) if integer else r)
        while sizes and sizes[-1] < 1:  # eta^s > n: rungs no architecture reaches
            sizes.pop()
            fidelities.pop()
        out.append({"s": s, "sizes": sizes, "fidelities": fidelities})
    return out


class Hyperband(Sampler):
    """Hyperband over a training budget (module docstring); new architectures uniformly at
    random (without repeats).

    Args:
        space: the space to propose from.
        min_fidelity: the smallest budget (e.g. 1 epoch).
        max_fidelity: the full budget (e.g. the epochs of a plain random search's trial).
        eta: the halving rate (3 in Hyperband and BOHB).
        seed, dedup: as for every sampler (``dedup`` applies to new architectures;
            promotions re-ask an architecture by design).
    """

    #: the search loop passes fidelities to the evaluator (it must accept ``fidelity=``)
    multi_fidelity = True
    #: which brackets run: "all" (Hyperband) or "most-aggressive" (successive halving)
    _brackets = "all"

    def __init__(self, space: SearchSpace, *, min_fidelity: float = 1, max_fidelity: float = 9,
                 eta: float = 3, seed: int = 0, dedup: bool = True):
        schedule = hyperband_brackets(min_fidelity, max_fidelity, eta)
        self.min_fidelity, self.max_fidelity, self.eta = min_fidelity, max_fidelity, eta
        self.schedule = schedule if self._brackets == "all" else schedule[:1]
        super().__init__(space, seed=seed, dedup=dedup)

    # -- brackets ------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.n_brackets = 0             # brackets started so far
        self.open: list[dict[str, Any]] = []
        # (bracket id, rung, index in the rung's entries) of every ask not yet told
        self.pending: deque[tuple[int, int, int]] = deque()

    def _start_bracket(self) -> dict[str, Any]:
        plan = self.schedule[self.n_brackets % len(self.schedule)]
        bracket = {"id": self.n_brackets, "s": plan["s"], "sizes": list(plan["sizes"]),
                   "fidelities": list(plan["fidelities"]), "rung": 0,
                   "new_left": plan["sizes"][0], "to_ask": [], "entries": [], "waiting": 0}
        self.n_brackets += 1
        self.open.append(bracket)
        return bracket

    def ask(self) -> Arch:
        return self.ask_trial()[0]

    def ask_trial(self) -> tuple[Arch, float]:
        """The next architecture and the budget to evaluate it at."""
        while True:
            for bracket in self.open:
                rung = bracket["rung"]
                if bracket["to_ask"]:  # a promotion
                    arch = Arch.from_dict(bracket["to_ask"].pop(0))
                    self.n_asked += 1
                elif rung == 0 and bracket["new_left"] > 0:  # a new architecture
                    arch = Sampler.ask(self)
                    bracket["new_left"] -= 1
                else:
                    continue
                bracket["entries"].append([arch.to_dict(), None])
                bracket["waiting"] += 1
                self.pending.append((bracket["id"], rung, len(bracket["entries"]) - 1))
                return arch, bracket["fidelities"][rung]
            self._start_bracket()  # every open bracket waits for results

    def _ask(self) -> Arch:
        return self._new_architecture()

    def _new_architecture(self) -> Arch:
        """A new architecture for a bracket's first rung (BOHB: from its model)."""
        return self._random_unseen()

    def _tell(self, arch: Arch, result: float | None) -> None:
        if not self.pending:
            raise RuntimeError(f"{type(self).__name__} was told a result it did not ask for "
                               f"({arch!r})")
        bracket_id, rung, index = self.pending.popleft()
        bracket = next((b for b in self.open if b["id"] == bracket_id), None)
        if bracket is None or bracket["rung"] != rung:
            raise RuntimeError(f"{type(self).__name__}: a result for bracket {bracket_id} rung "
                               f"{rung}, which is no longer open (results must be told in "
                               "ask order)")
        entry = bracket["entries"][index]
        if entry[0] != arch.to_dict():
            raise RuntimeError(f"{type(self).__name__} was told {arch!r} where it asked "
                               f"{Arch.from_dict(entry[0])!r} (results must be told in ask "
                               "order)")
        entry[1] = result
        bracket["waiting"] -= 1
        if result is not None:
            self._observe(arch, bracket["fidelities"][rung], result)
        elif rung == 0:
            bracket["new_left"] += 1  # replace a failed or rejected new architecture
        self._maybe_promote(bracket)

    def _observe(self, arch: Arch, fidelity: float, result: float) -> None:
        """A successful result at ``fidelity`` (BOHB keeps them for its model)."""

    def _maybe_promote(self, bracket: dict[str, Any]) -> None:
        if bracket["waiting"] or bracket["to_ask"] or (bracket["rung"] == 0
                                                       and bracket["new_left"]):
            return
        nxt = bracket["rung"] + 1
        ranked = sorted((i for i, (_, r) in enumerate(bracket["entries"]) if r is not None),
                        key=lambda i: (-bracket["entries"][i][1], i))  # best first, then order
        if nxt >= len(bracket["sizes"]) or not ranked:
            self.open.remove(bracket)  # the bracket is complete
            return
        keep = ranked[:bracket["sizes"][nxt]]
        bracket["to_ask"] = [bracket["entries"][i][0] for i in keep]
        bracket["entries"], bracket["rung"] = [], nxt

    # -- state ---------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"n_brackets": self.n_brackets, "open": [dict(b) for b in self.open],
                "pending": [list(p) for p in self.pending]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.n_brackets = int(state["n_brackets"])
        self.open = [dict(b) for b in state["open"]]
        self.pending = deque(tuple(p) for p in state["pending"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(space={self.space.name!r}, seed={self.seed}, "
                f"fidelity={self.min_fidelity}..{self.max_fidelity}, eta={self.eta})")


class SuccessiveHalving(Hyperband):
    """Successive halving: Hyperband's most aggressive bracket only, repeated (module
    docstring); e.g. ``min_fidelity=1, max_fidelity=9, eta=3``: 9 architectures x 1 epoch,
    the best 3 x 3 epochs, the best 1 x 9 epochs, then 9 new ones."""

    _brackets = "most-aggressive"


class BOHB(Hyperband):
    """BOHB: Hyperband with new architectures from a TPE-style model (module docstring).

    Args:
        random_fraction: share of new architectures drawn uniformly at random (BOHB: 1/3).
        top_fraction: share of a budget's results that form the good set (BOHB: 0.15).
        num_samples: candidates drawn from the good density per new architecture (64).
        bandwidth: the Aitchison-Aitken kernel's bandwidth, in (0, 1).
        min_bandwidth: lower bound of the bandwidth (BOHB: 1e-3).
        bandwidth_factor: widening of the bandwidth for drawing candidates (BOHB: 3).
        (the rest as :class:`Hyperband`)
    """

    def __init__(self, space: SearchSpace, *, min_fidelity: float = 1, max_fidelity: float = 9,
                 eta: float = 3, random_fraction: float = 1 / 3, top_fraction: float = 0.15,
                 num_samples: int = 64, bandwidth: float = 0.3, min_bandwidth: float = 1e-3,
                 bandwidth_factor: float = 3.0, seed: int = 0, dedup: bool = True):
        if not 0 <= random_fraction <= 1 or not 0 < top_fraction < 1:
            raise ValueError(f"need 0 <= random_fraction <= 1 and 0 < top_fraction < 1, got "
                             f"{random_fraction}, {top_fraction}")
        if num_samples < 1 or not 0 < min_bandwidth <= bandwidth < 1 or bandwidth_factor < 1:
            raise ValueError(f"need num_samples >= 1, 0 < min_bandwidth <= bandwidth < 1 and "
                             f"bandwidth_factor >= 1, got {num_samples}, {min_bandwidth}, "
                             f"{bandwidth}, {bandwidth_factor}")
        self.random_fraction, self.top_fraction = random_fraction, top_fraction
        self.num_samples, self.bandwidth = num_samples, max(bandwidth, min_bandwidth)
        self.bandwidth_factor = bandwidth_factor
        self.options = [len(opts) for _, opts in space.decisions()]
        super().__init__(space, min_fidelity=min_fidelity, max_fidelity=max_fidelity, eta=eta,
                         seed=seed, dedup=dedup)

    def _reset(self) -> None:
        super()._reset()
        self.observations: dict[float, list[tuple[list[int], float]]] = {}
        self.model_asks = 0  # new architectures that came from the model

    def _observe(self, arch: Arch, fidelity: float, result: float) -> None:
        self.observations.setdefault(fidelity, []).append((self.space.encode(arch), result))

    def _model_sets(self) -> tuple[list[list[int]], list[list[int]]] | None:
        """Good and bad encodings at the largest budget with enough results, or None."""
        n_min = len(self.options) + 1
        for fidelity in sorted(self.observations, reverse=True):
            results = self.observations[fidelity]
            if len(results) < n_min + 1:
                continue
            ranked = sorted(results, key=lambda e: -e[1])  # stable: ties keep tell order
            n_good = max(n_min, math.ceil(self.top_fraction * len(ranked)))
            n_bad = max(n_min, len(ranked) - n_good)
            return [e for e, _ in ranked[:n_good]], [e for e, _ in ranked[-n_bad:]]
        return None

    def _density(self, points: Sequence[Sequence[int]], x: Sequence[int], bw: float) -> float:
        """Product over decisions of the Aitchison-Aitken kernel average at ``x``."""
        density = 1.0
        for d, k in enumerate(self.options):
            if k == 1:
                continue
            same = sum(1 for p in points if p[d] == x[d]) / len(points)
            density *= same * (1 - bw) + (1 - same) * bw / (k - 1)
        return density

    def _new_architecture(self) -> Arch:
        sets = self._model_sets()
        if sets is None or self.rng.random() < self.random_fraction:
            return self._random_unseen()
        good, bad = sets
        wide = self.bandwidth * self.bandwidth_factor
        best, best_score = None, -math.inf
        for _ in range(self.num_samples):
            centre = good[self.rng.randrange(len(good))]
            x = []
            for d, k in enumerate(self.options):
                # the widened kernel around the centre: keep its option with probability
                # 1 - bw, else one of the other k - 1 (bw at most (k - 1) / k: uniform)
                if k == 1 or self.rng.random() >= min(wide, (k - 1) / k):
                    x.append(centre[d])
                else:
                    x.append(self.rng.choice([o for o in range(k) if o != centre[d]]))
            arch = self.space.decode(x)
            if self.dedup and arch.digest in self.seen:
                continue
            score = (self._density(good, x, self.bandwidth)
                     / max(self._density(bad, x, self.bandwidth), 1e-32))
            if score > best_score:
                best, best_score = arch, score
        if best is None:  # every candidate was seen before
            return self._random_unseen()
        self.model_asks += 1
        return best

    def _extra_state(self) -> dict[str, Any]:
        state = super()._extra_state()
        state["observations"] = [[f, [[list(e), r] for e, r in obs]]
                                 for f, obs in self.observations.items()]
        state["model_asks"] = self.model_asks
        return state

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.observations = {f: [(list(e), float(r)) for e, r in obs]
                             for f, obs in state["observations"]}
        self.model_asks = int(state["model_asks"])


__all__ = ["BOHB", "Hyperband", "SuccessiveHalving", "hyperband_brackets"]
